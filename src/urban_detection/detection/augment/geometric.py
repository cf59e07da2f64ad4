"""Geometric augmentation ops (flip, crop, pad, zoom-out, SSD crop-pad, box jitter): boxes follow the pixels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from urban_detection.detection.augment.seeds import coin, randint, sub_seed, uniform
from urban_detection.detection.augment.tensors import image_hw, op_inputs, pair

_SSD_CASES = 7


def _clip_and_drop_empty(boxes, labels):
    """Clip boxes to the unit square and drop those left with zero area (and their labels)."""
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return tf.boolean_mask(boxes, keep), tf.boolean_mask(labels, keep)


def _to_window(boxes, window):
    """Express boxes in the frame of ``window`` ([ymin, xmin, ymax, xmax], same frame)."""
    wy0, wx0, wy1, wx1 = tf.unstack(window)
    h, w = wy1 - wy0, wx1 - wx0
    return (boxes - tf.stack([wy0, wx0, wy0, wx0])) / tf.stack([h, w, h, w])


def _pad_image(image, boxes, target_h, target_w, offset_y, offset_x, pad_color):
    """Place ``image`` at (offset_y, offset_x) on a target_h x target_w canvas of pad_color."""
    h, w = image_hw(image)
    paddings = [
        [offset_y, target_h - h - offset_y],
        [offset_x, target_w - w - offset_x],
        [0, 0],
    ]
    padded = tf.pad(image, paddings)
    if pad_color is not None:
        inside = tf.pad(tf.ones_like(image[..., :1]), paddings)
        padded += (1.0 - inside) * tf.reshape(pad_color, [1, 1, -1])
    fh, fw = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    th, tw = tf.cast(target_h, tf.float32), tf.cast(target_w, tf.float32)
    oy, ox = tf.cast(offset_y, tf.float32), tf.cast(offset_x, tf.float32)
    new_boxes = (boxes * tf.stack([fh, fw, fh, fw]) + tf.stack([oy, ox, oy, ox])) / tf.stack(
        [th, tw, th, tw]
    )
    return padded, new_boxes


def _mean_colour(image, pad_color):
    if pad_color is None:
        return tf.reduce_mean(image, axis=[0, 1])
    return tf.constant(pad_color, dtype=tf.float32, shape=[3])


def random_horizontal_flip(image, boxes, labels, seed=None, probability: float = 0.5):
    """Mirror left-right with ``probability``: xmin' = 1 - xmax, xmax' = 1 - xmin."""
    image, boxes, labels, seed = op_inputs(image, boxes, labels, seed)

    def flip():
        ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
        flipped = tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=1)
        return tf.reverse(image, axis=[1]), flipped

    image, boxes = tf.cond(coin(seed, 0, probability), flip, lambda: (image, boxes))
    return image, boxes, labels


def _crop_to_window(boxes, labels, window, overlap_thresh, clip_boxes):
    """OD API box rule for crops: keep boxes overlapping the window with
    intersection / box area >= overlap_thresh, move them into the window frame."""
    wy0, wx0, wy1, wx1 = tf.unstack(window)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
    not_outside = (ymin < wy1) & (ymax > wy0) & (xmin < wx1) & (xmax > wx0)
    inter_h = tf.maximum(0.0, tf.minimum(ymax, wy1) - tf.maximum(ymin, wy0))
    inter_w = tf.maximum(0.0, tf.minimum(xmax, wx1) - tf.maximum(xmin, wx0))
    area = (ymax - ymin) * (xmax - xmin)
    ioa = tf.math.divide_no_nan(inter_h * inter_w, area)
    keep = not_outside & (ioa >= float(overlap_thresh))
    boxes = _to_window(tf.boolean_mask(boxes, keep), window)
    labels = tf.boolean_mask(labels, keep)
    if clip_boxes:
        boxes, labels = _clip_and_drop_empty(boxes, labels)
    return boxes, labels


def random_crop_image(
    image,
    boxes,
    labels,
    seed=None,
    min_object_covered: float = 1.0,
    aspect_ratio_range: Sequence[float] = (0.75, 1.33),
    area_range: Sequence[float] = (0.1, 1.0),
    overlap_thresh: float = 0.3,
    clip_boxes: bool = True,
    random_coef: float = 0.0,
):
    """Random crop as in the OD API (``tf.image.sample_distorted_bounding_box``, 100 tries).

    The crop covers at least ``min_object_covered`` of at least one box, has a pixel
    aspect ratio (w/h) in ``aspect_ratio_range`` and ``area_range`` of the image area; if no
    crop is found the whole image is kept. Boxes with less than ``overlap_thresh`` of their
    area inside the crop are dropped with their labels; the rest are clipped when
    ``clip_boxes``. With probability ``random_coef`` the input is returned unchanged.
    """
    image, boxes, labels, seed = op_inputs(image, boxes, labels, seed)
    aspect_ratio_range = pair(aspect_ratio_range, "aspect_ratio_range")
    area_range = pair(area_range, "area_range")

    def crop():
        begin, size, window = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image),
            bounding_boxes=tf.clip_by_value(boxes, 0.0, 1.0)[tf.newaxis],
            seed=sub_seed(seed, 1),
            min_object_covered=float(min_object_covered),
            aspect_ratio_range=list(aspect_ratio_range),
            area_range=list(area_range),
            max_attempts=100,
            use_image_if_no_bounding_boxes=True,
        )
        new_image = tf.slice(image, begin, size)
        new_image.set_shape([None, None, 3])
        new_boxes, new_labels = _crop_to_window(
            boxes, labels, tf.reshape(window, [4]), overlap_thresh, clip_boxes
        )
        return new_image, new_boxes, new_labels

    if random_coef <= 0.0:
        return crop()
    return tf.cond(
        uniform(seed, 0) > float(random_coef), crop, lambda: (image, boxes, labels)
    )


def random_pad_image(
    image,
    boxes,
    labels,
    seed=None,
    min_image_size: Sequence[int] | None = None,
    max_image_size: Sequence[int] | None = None,
    pad_color: Sequence[float] | None = None,
    center_pad: bool = False,
):
    """Pad to a random canvas between ``min_image_size`` and ``max_image_size`` ([h, w] px).

    OD API semantics: sizes default to the image size and twice the image size and are
    never below the image size; height and width are drawn independently (so the aspect
    ratio changes, see :func:`random_zoom_out` for the shape-preserving variant); the image
    lands at a random offset (centred when ``center_pad``) and the padding takes
    ``pad_color`` (default: the image's mean colour). Boxes follow the pixels.
    """
    image, boxes, labels, seed = op_inputs(image, boxes, labels, seed)
    h, w = image_hw(image)
    hw = tf.stack([h, w])
    if max_image_size is None:
        max_size = hw * 2
    else:
        max_size = tf.maximum(tf.constant([int(v) for v in max_image_size], tf.int32), hw)
    if min_image_size is None:
        min_size = hw
    else:
        min_size = tf.maximum(tf.constant([int(v) for v in min_image_size], tf.int32), hw)

    def draw_size(axis, k):
        return tf.cond(
            max_size[axis] > min_size[axis],
            lambda: randint(seed, k, min_size[axis], max_size[axis]),
            lambda: max_size[axis],
        )

    target_h, target_w = draw_size(0, 0), draw_size(1, 1)

    def draw_offset(extra, k):
        if center_pad:
            return extra // 2
        return tf.cond(extra > 0, lambda: randint(seed, k, 0, extra), lambda: tf.constant(0))

    offset_y, offset_x = draw_offset(target_h - h, 2), draw_offset(target_w - w, 3)
    colour = _mean_colour(image, pad_color)
    image, boxes = _pad_image(image, boxes, target_h, target_w, offset_y, offset_x, colour)
    return image, boxes, labels


def random_zoom_out(
    image,
    boxes,
    labels,
    seed=None,
    scale_range: Sequence[float] = (1.0, 2.0),
    probability: float = 0.5,
    pad_color: Sequence[float] | None = None,
):
    """Shape-preserving zoom-out: with ``probability``, place the image on a canvas
    ``s`` times its size (``s`` uniform in ``scale_range``, same ``s`` for height and
    width, so a later resize to a fixed size does not distort the objects) at a random
    offset, padded with ``pad_color`` (default: the image's mean colour)."""
    image, boxes, labels, seed = op_inputs(image, boxes, labels, seed)
    lo, hi = pair(scale_range, "scale_range")
    if lo < 1.0 or hi < lo:
        raise ValueError(f"scale_range must satisfy 1 <= min <= max, got {scale_range!r}")

    def zoom_out():
        h, w = image_hw(image)
        scale = uniform(seed, 1, lo, hi) if hi > lo else tf.constant(lo)
        target_h = tf.maximum(h, tf.cast(tf.round(scale * tf.cast(h, tf.float32)), tf.int32))
        target_w = tf.maximum(w, tf.cast(tf.round(scale * tf.cast(w, tf.float32)), tf.int32))
        offset_y = randint(seed, 2, 0, target_h - h + 1)
        offset_x = randint(seed, 3, 0, target_w - w + 1)
        colour = _mean_colour(image, pad_color)
        return _pad_image(image, boxes, target_h, target_w, offset_y, offset_x, colour)

    image, boxes = tf.cond(coin(seed, 0, probability), zoom_out, lambda: (image, boxes))
    return image, boxes, labels


def _random_pad_to_aspect_ratio(image, boxes, seed, aspect_ratio, min_ratio, max_ratio):
    """OD API random_pad_to_aspect_ratio: zero-pad bottom/right to ``aspect_ratio`` (w/h),
    scaled by a random factor bounded by min/max padded size ratios of the input."""
    h, w = image_hw(image)
    fh, fw = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    ratio = float(aspect_ratio)
    target_h = tf.where(fw / fh <= ratio, fh, fw / ratio)
    target_w = tf.where(fw / fh >= ratio, fw, fh * ratio)
    min_h = tf.maximum(min_ratio[0] * fh, target_h)
    min_w = tf.maximum(min_ratio[1] * fw, target_w)
    max_h = tf.maximum(max_ratio[0] * fh, target_h)
    max_w = tf.maximum(max_ratio[1] * fw, target_w)
    max_scale = tf.minimum(max_h / target_h, max_w / target_w)
    min_scale = tf.minimum(max_scale, tf.maximum(min_h / target_h, min_w / target_w))
    scale = min_scale + (max_scale - min_scale) * uniform(seed, 0)
    new_h = tf.maximum(h, tf.cast(tf.round(scale * target_h), tf.int32))
    new_w = tf.maximum(w, tf.cast(tf.round(scale * target_w), tf.int32))
    return _pad_image(image, boxes, new_h, new_w, 0, 0, None)


def ssd_random_crop_pad_fixed_aspect_ratio(
    image,
    boxes,
    labels,
    seed=None,
    min_object_covered: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
    aspect_ratio: float = 1.0,
    aspect_ratio_range: Sequence[Sequence[float]] = ((0.5, 2.0),) * _SSD_CASES,
    area_range: Sequence[Sequence[float]] = ((0.1, 1.0),) * _SSD_CASES,
    overlap_thresh: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
    random_coef: Sequence[float] = (0.15,) * _SSD_CASES,
    min_padded_size_ratio: Sequence[float] = (1.0, 1.0),
    max_padded_size_ratio: Sequence[float] = (2.0, 2.0),
    clip_boxes: bool = True,
):
    """SSD multi-case crop, then zero-pad to a fixed aspect ratio (OD API defaults).

    One of the crop cases is picked uniformly; each case is a :func:`random_crop_image` with
    its own ``min_object_covered``, ``aspect_ratio_range``, ``area_range``,
    ``overlap_thresh`` and ``random_coef`` (chance of keeping the uncropped image). The
    result is then padded with zeros at the bottom/right to ``aspect_ratio`` (w/h), to a
    random size between ``min_padded_size_ratio`` and ``max_padded_size_ratio`` of the
    cropped image. Pass a scalar for a per-case parameter to use it in every case.
    """
    image, boxes, labels, seed = op_inputs(image, boxes, labels, seed)
    cases = ssd_cases(min_object_covered, aspect_ratio_range, area_range, overlap_thresh,
                       random_coef)
    crop_seed = sub_seed(seed, 1)

    def make_branch(case):
        return lambda: random_crop_image(image, boxes, labels, seed=crop_seed, **case)

    index = randint(seed, 0, 0, len(cases))
    image, boxes, labels = tf.switch_case(index, [make_branch(c) for c in cases])
    image, boxes = _random_pad_to_aspect_ratio(
        image,
        boxes,
        sub_seed(seed, 2),
        aspect_ratio,
        pair(min_padded_size_ratio, "min_padded_size_ratio"),
        pair(max_padded_size_ratio, "max_padded_size_ratio"),
    )
    return image, boxes, labels


def ssd_cases(min_object_covered, aspect_ratio_range, area_range, overlap_thresh,
               random_coef) -> list[dict[str, Any]]:
    def per_case(value, name, is_range):
        if is_range:
            nested = isinstance(value, Sequence) and value and isinstance(value[0], Sequence)
            return [pair(v, name) for v in value] if nested else [pair(value, name)]
        if isinstance(value, Sequence):
            return [float(v) for v in value]
        return [float(value)]

    columns = {
        "min_object_covered": per_case(min_object_covered, "min_object_covered", False),
        "aspect_ratio_range": per_case(aspect_ratio_range, "aspect_ratio_range", True),
        "area_range": per_case(area_range, "area_range", True),
        "overlap_thresh": per_case(overlap_thresh, "overlap_thresh", False),
        "random_coef": per_case(random_coef, "random_coef", False),
    }
    n = max(len(v) for v in columns.values())
    for name, values in columns.items():
        if len(values) == 1:
            columns[name] = values * n
        elif len(values) != n:
            lengths = {k: len(v) for k, v in columns.items()}
            raise ValueError(
                f"ssd_random_crop_pad_fixed_aspect_ratio: per-case parameters need the same "
                f"number of cases (or a single value), got {lengths}"
            )
    return [{name: values[i] for name, values in columns.items()} for i in range(n)]


def random_jitter_boxes(
    image, boxes, labels, seed=None, ratio: float = 0.05, jitter_mode: str = "default"
):
    """Move each box edge by up to ``ratio`` of the box height/width (OD API).

    ``jitter_mode``: ``default`` (edges move in or out), ``expand`` (only out) or ``shrink``
    (only in). Boxes are clipped to the image; boxes left empty are dropped.
    """
    image, boxes, labels, seed = op_inputs(image, boxes, labels, seed)
    bounds = {"default": (-ratio, ratio), "expand": (0.0, ratio), "shrink": (-ratio, 0.0)}
    if jitter_mode not in bounds:
        raise ValueError(f"jitter_mode must be one of {sorted(bounds)}, got {jitter_mode!r}")
    lo, hi = bounds[jitter_mode]
    n = tf.shape(boxes)[0]
    r = tf.random.stateless_uniform(
        tf.stack([n, 4]), seed=sub_seed(seed, 0), minval=float(lo), maxval=float(hi)
    )
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    sizes = tf.stack([height, width, height, width], axis=1)
    direction = tf.constant([-1.0, -1.0, 1.0, 1.0])  # positive r moves edges outwards
    boxes = boxes + direction * sizes * r
    boxes, labels = _clip_and_drop_empty(boxes, labels)
    return image, boxes, labels
