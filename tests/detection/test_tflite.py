"""TFLite float16 and int8 models of a detector answer like the Keras model (same post-processing)."""
from __future__ import annotations

import numpy as np
import pytest

from urban_detection.detection.detections import predict_images
from urban_detection.detection.model import build_detector
from urban_detection.detection.tflite import TFLiteDetector, convert_tflite, latency_ms


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(0)
    # GroupNorm heads, as the default experiment's (fast_cpu)
    m = build_detector("retinanet_resnet18_fpn_small", image_size=64, fpn_filters=16, head_filters=32, head_convs=1,
                       head_norm=True)
    for w in m.weights:  # confident, varied scores instead of the prior's 0.01 everywhere
        if "bias" in w.path and "class" in w.path:
            w.assign(np.random.default_rng(0).normal(1.0, 2.0, w.shape).astype(np.float32))
    return m


def images(n=3, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("mode,tolerance", [("float16", 1e-3), ("int8", 0.05)])
def test_tflite_detections_follow_the_keras_model(model, mode, tolerance):
    calibration = [im[:64, :64] for im in images(8, seed=2)]
    content = convert_tflite(model, 64, mode, calibration)
    detector = TFLiteDetector(content, model, 64, mode)
    assert repr(detector).startswith(f"TFLiteDetector({mode}: ")
    ours = predict_images(model, images(), image_size=64, score_threshold=0.5)
    theirs = predict_images(detector, images(), score_threshold=0.5)
    assert sum(len(d) for d in ours) > 10
    for a, b in zip(ours, theirs):
        top = min(len(a), len(b), 5)
        assert abs(len(a) - len(b)) <= max(2, len(a) // 5)
        np.testing.assert_allclose(a.scores[:top], b.scores[:top], atol=tolerance)
    assert latency_ms(detector, 64, repeats=3) > 0


def test_int8_needs_calibration_frames_and_modes_are_checked(model):
    with pytest.raises(ValueError, match="int8 conversion needs calibration images"):
        convert_tflite(model, 64, "int8", [])
    with pytest.raises(ValueError, match="unknown TFLite mode 'int4'"):
        convert_tflite(model, 64, "int4")


def test_int8_is_smaller_than_float16(model):
    calibration = [im[:64, :64] for im in images(4, seed=3)]
    sizes = {mode: len(convert_tflite(model, 64, mode, calibration)) for mode in ("float16", "int8")}
    assert sizes["int8"] < 0.7 * sizes["float16"], sizes
