"""Photometric augmentation ops (gray, brightness, contrast, saturation, hue, black patches, rain): boxes unchanged."""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

from urban_detection.detection.augment.seeds import coin, sub_seed, uniform
from urban_detection.detection.augment.tensors import image_hw, op_inputs, pair

# Luma weights used by the OD API's rgb_to_grayscale.
_GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def random_black_patches(
    image,
    boxes,
    labels,
    seed=None,
    max_black_patches: int = 10,
    probability: float = 0.5,
    size_to_image_ratio: float = 0.1,
):
    """Up to ``max_black_patches`` black squares, each added with ``probability``.

    Square side = ``size_to_image_ratio * min(height, width)``; top-left corner uniform in
    ``[0, 1 - size_to_image_ratio)`` of each side (OD API). Boxes are unchanged.
    """
    image, boxes, labels, seed = op_inputs(image, boxes, labels, seed)
    n = int(max_black_patches)
    if n <= 0:
        return image, boxes, labels
    h, w = image_hw(image)
    fh, fw = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    ratio = float(size_to_image_ratio)
    side = tf.cast(tf.minimum(fh, fw) * ratio, tf.int32)
    on = uniform(seed, 0, shape=[n]) < float(probability)
    y0 = tf.cast(uniform(seed, 1, 0.0, 1.0 - ratio, shape=[n]) * fh, tf.int32)
    x0 = tf.cast(uniform(seed, 2, 0.0, 1.0 - ratio, shape=[n]) * fw, tf.int32)
    rows, cols = tf.range(h), tf.range(w)
    # (n, H) and (n, W) memberships; their product marks each patch, summed over patches.
    in_rows = (rows[None] >= y0[:, None]) & (rows[None] < (y0 + side)[:, None]) & on[:, None]
    in_cols = (cols[None] >= x0[:, None]) & (cols[None] < (x0 + side)[:, None])
    covered = tf.matmul(tf.cast(in_rows, tf.float32), tf.cast(in_cols, tf.float32),
                        transpose_a=True) > 0.0
    image = tf.where(covered[..., None], tf.zeros_like(image), image)
    return image, boxes, labels


def random_rgb_to_gray(image, boxes, labels, seed=None, probability: float = 0.1):
    """With ``probability``, replace the image by its luma (kept as 3 equal channels)."""
    image, boxes, labels, seed = op_inputs(image, boxes, labels, seed)

    def gray():
        luma = tf.tensordot(image, tf.constant(_GRAY_WEIGHTS), axes=[[2], [0]])[..., None]
        return tf.clip_by_value(tf.tile(luma, [1, 1, 3]), 0.0, 255.0)

    image = tf.cond(coin(seed, 0, probability), gray, lambda: image)
    return image, boxes, labels


def random_adjust_brightness(image, boxes, labels, seed=None, max_delta: float = 0.2):
    """Add a delta uniform in [-max_delta, max_delta] (fraction of 255), clip to [0, 255]."""
    image, boxes, labels, seed = op_inputs(image, boxes, labels, seed)
    delta = uniform(seed, 0, -float(max_delta), float(max_delta))
    image = tf.clip_by_value(image + delta * 255.0, 0.0, 255.0)
    return image, boxes, labels


def random_adjust_contrast(
    image, boxes, labels, seed=None, min_delta: float = 0.8, max_delta: float = 1.25
):
    """Scale each channel's deviation from its mean by a factor in [min_delta, max_delta]."""
    image, boxes, labels, seed = op_inputs(image, boxes, labels, seed)
    factor = uniform(seed, 0, float(min_delta), float(max_delta))
    image = tf.clip_by_value(tf.image.adjust_contrast(image, factor), 0.0, 255.0)
    return image, boxes, labels


def random_adjust_saturation(
    image, boxes, labels, seed=None, min_delta: float = 0.8, max_delta: float = 1.25
):
    """Multiply saturation (HSV) by a factor in [min_delta, max_delta]."""
    image, boxes, labels, seed = op_inputs(image, boxes, labels, seed)
    factor = uniform(seed, 0, float(min_delta), float(max_delta))
    image = tf.image.adjust_saturation(image / 255.0, factor) * 255.0
    return tf.clip_by_value(image, 0.0, 255.0), boxes, labels


def random_adjust_hue(image, boxes, labels, seed=None, max_delta: float = 0.02):
    """Rotate hue by a delta uniform in [-max_delta, max_delta] (fraction of the circle)."""
    image, boxes, labels, seed = op_inputs(image, boxes, labels, seed)
    delta = uniform(seed, 0, -float(max_delta), float(max_delta))
    image = tf.image.adjust_hue(image / 255.0, delta) * 255.0
    return tf.clip_by_value(image, 0.0, 255.0), boxes, labels


def _gaussian_blur(image, sigma: float):
    radius = max(1, int(math.ceil(2.0 * sigma)))
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    g = tf.exp(-0.5 * tf.square(x / sigma))
    g = g / tf.reduce_sum(g)
    channels = 3
    ky = tf.tile(tf.reshape(g, [-1, 1, 1, 1]), [1, 1, channels, 1])
    kx = tf.tile(tf.reshape(g, [1, -1, 1, 1]), [1, 1, channels, 1])
    padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]],
                    mode="SYMMETRIC")
    out = tf.nn.depthwise_conv2d(padded, ky, [1, 1, 1, 1], "VALID")
    out = tf.nn.depthwise_conv2d(out, kx, [1, 1, 1, 1], "VALID")
    return out[0]


def _streak_kernel(length: int, angle_rad) -> tf.Tensor:
    """A length x length kernel holding an anti-aliased line through the centre, tilted
    ``angle_rad`` from the vertical."""
    half = length // 2
    c = tf.range(-half, half + 1, dtype=tf.float32)
    yy, xx = tf.meshgrid(c, c, indexing="ij")
    cos, sin = tf.cos(angle_rad), tf.sin(angle_rad)
    along = yy * cos + xx * sin
    across = -yy * sin + xx * cos
    line = tf.nn.relu(1.0 - tf.abs(across)) * tf.cast(tf.abs(along) <= half, tf.float32)
    return line[:, :, None, None]


def random_rain_blur(
    image,
    boxes,
    labels,
    seed=None,
    probability: float = 0.3,
    density: float = 0.004,
    streak_length: int = 13,
    angle_range: Sequence[float] = (-15.0, 15.0),
    intensity: float = 0.5,
    blur_sigma: float = 0.8,
    max_grid_height: int = 256,
):
    """With ``probability``, draw rain streaks over the image and blur it slightly.

    Drops (a ``density`` fraction of the pixels of a rain grid at most ``max_grid_height``
    rows tall) are smeared into streaks ``streak_length`` grid pixels long, tilted by an
    angle (degrees from vertical) uniform in ``angle_range``, resized to the image and
    blended towards light grey with opacity up to ``intensity``; then a Gaussian blur of
    ``blur_sigma`` pixels (0 disables it). Boxes are unchanged.
    """
    image, boxes, labels, seed = op_inputs(image, boxes, labels, seed)
    length = max(3, int(streak_length)) | 1  # odd, so the kernel has a centre
    angle_lo, angle_hi = pair(angle_range, "angle_range")

    def rain():
        h, w = image_hw(image)
        fh, fw = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
        scale = tf.minimum(1.0, float(max_grid_height) / fh)
        gh = tf.maximum(1, tf.cast(tf.round(fh * scale), tf.int32))
        gw = tf.maximum(1, tf.cast(tf.round(fw * scale), tf.int32))
        grid = tf.stack([gh, gw])
        drops = tf.cast(
            tf.random.stateless_uniform(grid, seed=sub_seed(seed, 1)) < float(density), tf.float32
        )
        drops *= tf.random.stateless_uniform(grid, seed=sub_seed(seed, 2), minval=0.5, maxval=1.0)
        angle = uniform(seed, 3, angle_lo, angle_hi) * (math.pi / 180.0)
        streaks = tf.nn.conv2d(
            drops[None, :, :, None], _streak_kernel(length, angle), 1, "SAME"
        )
        streaks = tf.image.resize(streaks, tf.stack([h, w]), method="bilinear")[0]
        alpha = tf.clip_by_value(streaks, 0.0, 1.0) * float(intensity)
        out = image * (1.0 - alpha) + 210.0 * alpha
        if blur_sigma > 0:
            out = _gaussian_blur(out, float(blur_sigma))
        return tf.clip_by_value(out, 0.0, 255.0)

    image = tf.cond(coin(seed, 0, probability), rain, lambda: image)
    return image, boxes, labels
