"""One detector API: a trained detector and its export answer ``predict`` alike, on uint8 images of any size."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from urban_detection.detection.detections import Detections
from urban_detection.detection.export import ExportedDetector, export_model
from urban_detection.detection.model import build_detector
from urban_detection.detection.trained import TrainedDetector, load_trained, save_trained

CONFIG = {"name": "tiny", "model": {"arch": "retinanet_resnet18_fpn_small", "image_size": 64,
                                    "overrides": {"fpn_filters": 16, "head_filters": 16, "head_convs": 1}}}


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    """A small random detector (biased so that it finds boxes), saved, loaded back and exported."""
    import keras

    keras.utils.set_random_seed(0)
    model = build_detector("retinanet_resnet18_fpn_small", image_size=64, **CONFIG["model"]["overrides"])
    for w in model.weights:  # confident, varied scores instead of the prior's 0.01 everywhere
        if "bias" in w.path and "class" in w.path:
            w.assign(np.random.default_rng(0).normal(1.0, 2.0, w.shape).astype(np.float32))
    folder = tmp_path_factory.mktemp("trained")
    save_trained(TrainedDetector(model=model, config=CONFIG, provenance={"fingerprint": "f" * 16}, step=3),
                 folder / "model")
    trained = load_trained(folder / "model")
    paths = export_model(trained.model, folder / "export", image_size=64)
    return trained, ExportedDetector(paths["saved_model"])


def images():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(96, 128, 3), (64, 64, 3), (96, 128, 3),
                                                                      (50, 70, 3)]]


def test_the_trained_detector_and_its_export_agree_on_images_of_any_size(detectors):
    trained, export = detectors
    ours = trained.predict(images(), score_threshold=0.2)
    theirs = export.predict(images(), score_threshold=0.2)
    assert len(ours) == len(theirs) == 4 and sum(len(d) for d in ours) > 10
    for a, b in zip(ours, theirs):
        assert isinstance(a, Detections) and len(a) == len(b)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert set(a.labels.tolist()) <= {1, 2, 4} and (a.boxes >= 0).all() and (a.boxes <= 1).all()
        assert (a.scores >= 0.2).all() and (np.diff(a.scores) <= 0).all()  # best first
    single = trained.predict(images()[1], score_threshold=0.2)  # one image in, one result out
    np.testing.assert_allclose(single.scores, ours[1].scores, atol=1e-6)


def test_the_default_threshold_is_the_render_threshold_and_float_images_are_refused(detectors):
    import yaml

    from urban_detection.detection.detections import DEFAULT_SCORE_THRESHOLD
    from kedro_project import REPO

    render = yaml.safe_load((REPO / "conf/base/parameters_render.yml").read_text())["render"]
    assert DEFAULT_SCORE_THRESHOLD == render["score_threshold"]
    trained, export = detectors
    assert all((d.scores >= DEFAULT_SCORE_THRESHOLD).all() for d in trained.predict(images()))
    with pytest.raises(TypeError, match="uint8 RGB images .* do not divide by 255"):
        trained.predict(images()[0].astype(np.float32) / 255.0)
    with pytest.raises(ValueError, match=r"expected an HxWx3 RGB image, got shape \(64, 64\)"):
        export.predict([np.zeros((64, 64), np.uint8)])


def test_loading_a_trained_model_never_logs_a_random_initialisation(detectors, tmp_path, caplog):
    trained, export = detectors
    save_trained(trained, tmp_path / "again")
    with caplog.at_level(logging.INFO):
        again = load_trained(tmp_path / "again")
    assert "random initialisation" not in caplog.text and "weights.weights.h5" in caplog.text
    assert repr(again).startswith("TrainedDetector(tiny: retinanet_resnet18_fpn_small at 64 px, step 3")
    assert repr(export).startswith("ExportedDetector(SavedModel ") and "saved_model" in repr(export)
    export.info = {"experiment": "tiny", "arch": "a", "image_size": 64, "step": 3, "fingerprint": "f" * 16}
    assert repr(export).startswith("ExportedDetector(tiny: a at 64 px, step 3, fingerprint ffffffffffff")
    del export.info
    found = again.predict(images()[0], score_threshold=0.2)
    assert repr(found).startswith(f"Detections({len(found)}: ")


def test_detections_convert_to_pixels_and_keep_what_passes_the_threshold():
    det = Detections.from_record({"boxes": [[0.1, 0.2, 0.5, 0.6], [0, 0, 1, 1]], "labels": [1, 4],
                                  "scores": [0.9, 0.1]}, score_threshold=0.3)
    assert len(det) == 1 and det.names == ["vehicle"]
    np.testing.assert_allclose(det.pixel_boxes(100, 200), [[40, 10, 120, 50]])
