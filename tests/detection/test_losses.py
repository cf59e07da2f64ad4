"""detection/losses.py: the batch losses, with the padding after the last real box cut before matching."""
import numpy as np
import pytest
import tensorflow as tf

from urban_detection.detection.losses import compile_detector, detection_losses
from urban_detection.detection.model import build_detector

SIZE, SLOTS = 128, 100


@pytest.fixture(scope="module")
def detector():
    tf.keras.utils.set_random_seed(0)
    model = build_detector("retinanet_resnet18_fpn_small", image_size=SIZE)
    compile_detector(model, tf.keras.optimizers.SGD(0.0))
    return model


def batch(boxes_per_frame):
    """Targets padded to SLOTS as the input pipeline pads them (real boxes first, then -1)."""
    rng = np.random.default_rng(len(boxes_per_frame) + sum(boxes_per_frame))
    boxes = np.full((len(boxes_per_frame), SLOTS, 4), -1.0, np.float32)
    labels = np.full((len(boxes_per_frame), SLOTS), -1, np.int32)
    for i, k in enumerate(boxes_per_frame):
        y, x = rng.uniform(0, SIZE - 40, (2, k))
        h, w = rng.uniform(4, 40, (2, k))
        boxes[i, :k] = np.stack([y, x, y + h, x + w], axis=1)
        labels[i, :k] = rng.integers(0, 3, k)
    images = tf.constant(rng.uniform(0, 255, (len(boxes_per_frame), SIZE, SIZE, 3)), tf.float32)
    return images, {"boxes": tf.constant(boxes), "labels": tf.constant(labels)}


@pytest.mark.parametrize("boxes_per_frame", [[3, 0, 7], [0, 0], [SLOTS, 2], [4]])
def test_cutting_the_padding_gives_the_same_losses(detector, boxes_per_frame):
    images, targets = batch(boxes_per_frame)
    outputs = detector(images, training=False)
    trimmed = tf.function(lambda i, t, o: detection_losses(detector, i, t, o))(images, targets, outputs)
    padded = detection_losses(detector, images, targets, outputs, trim_padding=False)
    np.testing.assert_allclose(np.array(trimmed), np.array(padded), rtol=1e-6)  # graph vs eager: 1 ulp at most
    assert np.isfinite(np.array(trimmed)).all()
    if sum(boxes_per_frame):
        assert float(trimmed[1]) > 0  # real boxes were matched: a box loss


def test_xla_keeps_the_static_padding(detector):
    images, targets = batch([2, 5])
    outputs = detector(images, training=False)
    compiled = tf.function(lambda i, t, o: detection_losses(detector, i, t, o, trim_padding=False), jit_compile=True)
    np.testing.assert_allclose(np.array(compiled(images, targets, outputs)),
                               np.array(detection_losses(detector, images, targets, outputs)), rtol=1e-5)
