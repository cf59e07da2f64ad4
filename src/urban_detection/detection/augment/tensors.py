"""The tensors an augmentation op takes: coercing image, boxes, labels and seed, and reading sizes."""

from __future__ import annotations

import tensorflow as tf

from urban_detection.detection.augment.seeds import as_seed


def as_float_image(image) -> tf.Tensor:
    """An HxWx3 float32 image (uint8 is cast, values kept)."""
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.float32:
        image = tf.cast(image, tf.float32)
    return tf.ensure_shape(image, [None, None, 3])


def as_boxes(boxes) -> tf.Tensor:
    """Float32 boxes of shape (N, 4)."""
    boxes = tf.convert_to_tensor(boxes)
    if boxes.dtype != tf.float32:
        boxes = tf.cast(boxes, tf.float32)
    return tf.reshape(boxes, [-1, 4])


def op_inputs(image, boxes, labels, seed):
    """An op's arguments as ``(image, boxes, labels, seed)`` tensors (see :func:`as_seed`)."""
    return as_float_image(image), as_boxes(boxes), tf.convert_to_tensor(labels), as_seed(seed)


def image_hw(image):
    """Height and width of an HxWxC image (scalar int32 tensors)."""
    shape = tf.shape(image)
    return shape[0], shape[1]


def pair(value, name: str) -> tuple[float, float]:
    """``value`` as two floats; ``ValueError`` naming ``name`` otherwise."""
    values = tuple(float(v) for v in value)
    if len(values) != 2:
        raise ValueError(f"{name} must have two values, got {value!r}")
    return values
