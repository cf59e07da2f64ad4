"""Box-aware training augmentations with the TF Object Detection API's names and defaults.

Every op has the signature ``op(image, boxes, labels, seed=None, **params)`` and returns
``(image, boxes, labels)``. Ops are plain TensorFlow (no numpy, no ``py_function``), so they
trace inside ``tf.data.Dataset.map`` and ``tf.function``.

Conventions
-----------
- ``image``: HxWx3 RGB. Ops take float32 in [0, 255] (uint8 is accepted and cast) and
  always return float32 in [0, 255]. Geometric ops may change H and W; the model's resize
  comes later in the input pipeline.
- ``boxes``: float32 (N, 4), normalised ``[ymin, xmin, ymax, xmax]``.
- ``labels``: (N,) label-map ids (int32). Whenever boxes are dropped the labels are dropped
  with the same ``tf.boolean_mask``, so ``len(labels) == len(boxes)`` always holds.
- ``seed``: optional shape-[2] integer tensor (or a Python int) for stateless random ops.
  With a seed the op is deterministic; with ``None`` a fresh seed is drawn from
  ``tf.random`` (reproducible under ``tf.random.set_seed`` like any stateful op).

Boxes that leave the image are clipped to [0, 1]; boxes left with zero area are dropped.
``random_crop_image`` additionally drops boxes with less than ``overlap_thresh`` of their
area inside the crop (the OD API's rule).

Why ``tf.image`` and not Keras preprocessing layers: ``keras.layers.RandomBrightness`` and
friends do run in ``tf.data`` with the TensorFlow backend, but they draw from their own
stateful ``SeedGenerator`` so their randomness cannot follow a per-element seed, their
factor conventions differ from the OD API's (e.g. contrast ``1 +- f`` rather than a
``[min_delta, max_delta]`` multiplier) and there is no saturation/hue layer with the OD API
ranges. Plain ``tf.image`` keeps all ops on one stateless RNG scheme with exact OD API
semantics.

Use :func:`build_augmenter` with a list of specs such as
``[{"name": "random_horizontal_flip"}, {"name": "random_crop_image", "area_range": [0.3, 1]}]``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tensorflow as tf

from urban_detection.detection.config import did_you_mean
from urban_detection.waymo.example import LABEL_MAP

__all__ = [
    "AUGMENTATIONS",
    "augmentation_preview",
    "build_augmenter",
    "op_parameters",
    "random_adjust_brightness",
    "random_adjust_contrast",
    "random_adjust_hue",
    "random_adjust_saturation",
    "random_black_patches",
    "random_crop_image",
    "random_horizontal_flip",
    "random_jitter_boxes",
    "random_pad_image",
    "random_rain_blur",
    "random_rgb_to_gray",
    "random_zoom_out",
    "ssd_random_crop_pad_fixed_aspect_ratio",
    "validate_augmentations",
]

_INT32_MAX = 2**31 - 1
# Luma weights used by the OD API's rgb_to_grayscale.
_GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
_SSD_CASES = 7

# --------------------------------------------------------------------------- helpers


def _as_float_image(image) -> tf.Tensor:
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.float32:
        image = tf.cast(image, tf.float32)
    return tf.ensure_shape(image, [None, None, 3])


def _as_boxes(boxes) -> tf.Tensor:
    boxes = tf.convert_to_tensor(boxes)
    if boxes.dtype != tf.float32:
        boxes = tf.cast(boxes, tf.float32)
    return tf.reshape(boxes, [-1, 4])


def _inputs(image, boxes, labels, seed):
    return _as_float_image(image), _as_boxes(boxes), tf.convert_to_tensor(labels), _seed(seed)


def _seed(seed) -> tf.Tensor:
    """A shape-[2] seed tensor for stateless ops (fresh from tf.random when None)."""
    if seed is None:
        return tf.random.uniform([2], minval=0, maxval=_INT32_MAX, dtype=tf.int32)
    if isinstance(seed, int):
        return tf.constant([seed, 0], dtype=tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.zeros_like(seed)])
    return tf.reshape(seed, [2])


def _sub(seed: tf.Tensor, k: int) -> tf.Tensor:
    """An independent seed for the k-th random draw of an op."""
    return tf.random.experimental.stateless_fold_in(seed, k)


def _uniform(seed, k, minval=0.0, maxval=1.0, shape=()):
    return tf.random.stateless_uniform(
        list(shape), seed=_sub(seed, k), minval=minval, maxval=maxval, dtype=tf.float32
    )


def _randint(seed, k, minval, maxval):
    """Scalar int32 uniform in [minval, maxval) (maxval must exceed minval)."""
    return tf.random.stateless_uniform(
        [], seed=_sub(seed, k), minval=minval, maxval=maxval, dtype=tf.int32
    )


def _coin(seed, k, probability: float) -> tf.Tensor:
    """True with the given probability (never for 0, always for 1)."""
    return _uniform(seed, k) < float(probability)


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


def _image_hw(image):
    shape = tf.shape(image)
    return shape[0], shape[1]


def _pad_image(image, boxes, target_h, target_w, offset_y, offset_x, pad_color):
    """Place ``image`` at (offset_y, offset_x) on a target_h x target_w canvas of pad_color."""
    h, w = _image_hw(image)
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


def _pair(value, name: str) -> tuple[float, float]:
    values = tuple(float(v) for v in value)
    if len(values) != 2:
        raise ValueError(f"{name} must have two values, got {value!r}")
    return values


# --------------------------------------------------------------------------- geometric ops


def random_horizontal_flip(image, boxes, labels, seed=None, probability: float = 0.5):
    """Mirror left-right with ``probability``: xmin' = 1 - xmax, xmax' = 1 - xmin."""
    image, boxes, labels, seed = _inputs(image, boxes, labels, seed)

    def flip():
        ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
        flipped = tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=1)
        return tf.reverse(image, axis=[1]), flipped

    image, boxes = tf.cond(_coin(seed, 0, probability), flip, lambda: (image, boxes))
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
    image, boxes, labels, seed = _inputs(image, boxes, labels, seed)
    aspect_ratio_range = _pair(aspect_ratio_range, "aspect_ratio_range")
    area_range = _pair(area_range, "area_range")

    def crop():
        begin, size, window = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image),
            bounding_boxes=tf.clip_by_value(boxes, 0.0, 1.0)[tf.newaxis],
            seed=_sub(seed, 1),
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
        _uniform(seed, 0) > float(random_coef), crop, lambda: (image, boxes, labels)
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
    image, boxes, labels, seed = _inputs(image, boxes, labels, seed)
    h, w = _image_hw(image)
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
            lambda: _randint(seed, k, min_size[axis], max_size[axis]),
            lambda: max_size[axis],
        )

    target_h, target_w = draw_size(0, 0), draw_size(1, 1)

    def draw_offset(extra, k):
        if center_pad:
            return extra // 2
        return tf.cond(extra > 0, lambda: _randint(seed, k, 0, extra), lambda: tf.constant(0))

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
    image, boxes, labels, seed = _inputs(image, boxes, labels, seed)
    lo, hi = _pair(scale_range, "scale_range")
    if lo < 1.0 or hi < lo:
        raise ValueError(f"scale_range must satisfy 1 <= min <= max, got {scale_range!r}")

    def zoom_out():
        h, w = _image_hw(image)
        scale = _uniform(seed, 1, lo, hi) if hi > lo else tf.constant(lo)
        target_h = tf.maximum(h, tf.cast(tf.round(scale * tf.cast(h, tf.float32)), tf.int32))
        target_w = tf.maximum(w, tf.cast(tf.round(scale * tf.cast(w, tf.float32)), tf.int32))
        offset_y = _randint(seed, 2, 0, target_h - h + 1)
        offset_x = _randint(seed, 3, 0, target_w - w + 1)
        colour = _mean_colour(image, pad_color)
        return _pad_image(image, boxes, target_h, target_w, offset_y, offset_x, colour)

    image, boxes = tf.cond(_coin(seed, 0, probability), zoom_out, lambda: (image, boxes))
    return image, boxes, labels


def _random_pad_to_aspect_ratio(image, boxes, seed, aspect_ratio, min_ratio, max_ratio):
    """OD API random_pad_to_aspect_ratio: zero-pad bottom/right to ``aspect_ratio`` (w/h),
    scaled by a random factor bounded by min/max padded size ratios of the input."""
    h, w = _image_hw(image)
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
    scale = min_scale + (max_scale - min_scale) * _uniform(seed, 0)
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
    image, boxes, labels, seed = _inputs(image, boxes, labels, seed)
    cases = _ssd_cases(min_object_covered, aspect_ratio_range, area_range, overlap_thresh,
                       random_coef)
    crop_seed = _sub(seed, 1)

    def make_branch(case):
        return lambda: random_crop_image(image, boxes, labels, seed=crop_seed, **case)

    index = _randint(seed, 0, 0, len(cases))
    image, boxes, labels = tf.switch_case(index, [make_branch(c) for c in cases])
    image, boxes = _random_pad_to_aspect_ratio(
        image,
        boxes,
        _sub(seed, 2),
        aspect_ratio,
        _pair(min_padded_size_ratio, "min_padded_size_ratio"),
        _pair(max_padded_size_ratio, "max_padded_size_ratio"),
    )
    return image, boxes, labels


def _ssd_cases(min_object_covered, aspect_ratio_range, area_range, overlap_thresh,
               random_coef) -> list[dict[str, Any]]:
    def per_case(value, name, is_range):
        if is_range:
            nested = isinstance(value, Sequence) and value and isinstance(value[0], Sequence)
            return [_pair(v, name) for v in value] if nested else [_pair(value, name)]
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
    image, boxes, labels, seed = _inputs(image, boxes, labels, seed)
    bounds = {"default": (-ratio, ratio), "expand": (0.0, ratio), "shrink": (-ratio, 0.0)}
    if jitter_mode not in bounds:
        raise ValueError(f"jitter_mode must be one of {sorted(bounds)}, got {jitter_mode!r}")
    lo, hi = bounds[jitter_mode]
    n = tf.shape(boxes)[0]
    r = tf.random.stateless_uniform(
        tf.stack([n, 4]), seed=_sub(seed, 0), minval=float(lo), maxval=float(hi)
    )
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    sizes = tf.stack([height, width, height, width], axis=1)
    direction = tf.constant([-1.0, -1.0, 1.0, 1.0])  # positive r moves edges outwards
    boxes = boxes + direction * sizes * r
    boxes, labels = _clip_and_drop_empty(boxes, labels)
    return image, boxes, labels


# --------------------------------------------------------------------------- photometric ops


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
    image, boxes, labels, seed = _inputs(image, boxes, labels, seed)
    n = int(max_black_patches)
    if n <= 0:
        return image, boxes, labels
    h, w = _image_hw(image)
    fh, fw = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    ratio = float(size_to_image_ratio)
    side = tf.cast(tf.minimum(fh, fw) * ratio, tf.int32)
    on = _uniform(seed, 0, shape=[n]) < float(probability)
    y0 = tf.cast(_uniform(seed, 1, 0.0, 1.0 - ratio, shape=[n]) * fh, tf.int32)
    x0 = tf.cast(_uniform(seed, 2, 0.0, 1.0 - ratio, shape=[n]) * fw, tf.int32)
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
    image, boxes, labels, seed = _inputs(image, boxes, labels, seed)

    def gray():
        luma = tf.tensordot(image, tf.constant(_GRAY_WEIGHTS), axes=[[2], [0]])[..., None]
        return tf.clip_by_value(tf.tile(luma, [1, 1, 3]), 0.0, 255.0)

    image = tf.cond(_coin(seed, 0, probability), gray, lambda: image)
    return image, boxes, labels


def random_adjust_brightness(image, boxes, labels, seed=None, max_delta: float = 0.2):
    """Add a delta uniform in [-max_delta, max_delta] (fraction of 255), clip to [0, 255]."""
    image, boxes, labels, seed = _inputs(image, boxes, labels, seed)
    delta = _uniform(seed, 0, -float(max_delta), float(max_delta))
    image = tf.clip_by_value(image + delta * 255.0, 0.0, 255.0)
    return image, boxes, labels


def random_adjust_contrast(
    image, boxes, labels, seed=None, min_delta: float = 0.8, max_delta: float = 1.25
):
    """Scale each channel's deviation from its mean by a factor in [min_delta, max_delta]."""
    image, boxes, labels, seed = _inputs(image, boxes, labels, seed)
    factor = _uniform(seed, 0, float(min_delta), float(max_delta))
    image = tf.clip_by_value(tf.image.adjust_contrast(image, factor), 0.0, 255.0)
    return image, boxes, labels


def random_adjust_saturation(
    image, boxes, labels, seed=None, min_delta: float = 0.8, max_delta: float = 1.25
):
    """Multiply saturation (HSV) by a factor in [min_delta, max_delta]."""
    image, boxes, labels, seed = _inputs(image, boxes, labels, seed)
    factor = _uniform(seed, 0, float(min_delta), float(max_delta))
    image = tf.image.adjust_saturation(image / 255.0, factor) * 255.0
    return tf.clip_by_value(image, 0.0, 255.0), boxes, labels


def random_adjust_hue(image, boxes, labels, seed=None, max_delta: float = 0.02):
    """Rotate hue by a delta uniform in [-max_delta, max_delta] (fraction of the circle)."""
    image, boxes, labels, seed = _inputs(image, boxes, labels, seed)
    delta = _uniform(seed, 0, -float(max_delta), float(max_delta))
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
    image, boxes, labels, seed = _inputs(image, boxes, labels, seed)
    length = max(3, int(streak_length)) | 1  # odd, so the kernel has a centre
    angle_lo, angle_hi = _pair(angle_range, "angle_range")

    def rain():
        h, w = _image_hw(image)
        fh, fw = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
        scale = tf.minimum(1.0, float(max_grid_height) / fh)
        gh = tf.maximum(1, tf.cast(tf.round(fh * scale), tf.int32))
        gw = tf.maximum(1, tf.cast(tf.round(fw * scale), tf.int32))
        grid = tf.stack([gh, gw])
        drops = tf.cast(
            tf.random.stateless_uniform(grid, seed=_sub(seed, 1)) < float(density), tf.float32
        )
        drops *= tf.random.stateless_uniform(grid, seed=_sub(seed, 2), minval=0.5, maxval=1.0)
        angle = _uniform(seed, 3, angle_lo, angle_hi) * (math.pi / 180.0)
        streaks = tf.nn.conv2d(
            drops[None, :, :, None], _streak_kernel(length, angle), 1, "SAME"
        )
        streaks = tf.image.resize(streaks, tf.stack([h, w]), method="bilinear")[0]
        alpha = tf.clip_by_value(streaks, 0.0, 1.0) * float(intensity)
        out = image * (1.0 - alpha) + 210.0 * alpha
        if blur_sigma > 0:
            out = _gaussian_blur(out, float(blur_sigma))
        return tf.clip_by_value(out, 0.0, 255.0)

    image = tf.cond(_coin(seed, 0, probability), rain, lambda: image)
    return image, boxes, labels


# --------------------------------------------------------------------------- registry

AUGMENTATIONS: dict[str, Callable] = {
    "random_horizontal_flip": random_horizontal_flip,
    "random_crop_image": random_crop_image,
    "ssd_random_crop_pad_fixed_aspect_ratio": ssd_random_crop_pad_fixed_aspect_ratio,
    "random_pad_image": random_pad_image,
    "random_black_patches": random_black_patches,
    "random_rgb_to_gray": random_rgb_to_gray,
    "random_adjust_brightness": random_adjust_brightness,
    "random_adjust_contrast": random_adjust_contrast,
    "random_adjust_saturation": random_adjust_saturation,
    "random_adjust_hue": random_adjust_hue,
    "random_jitter_boxes": random_jitter_boxes,
    "random_zoom_out": random_zoom_out,
    "random_rain_blur": random_rain_blur,
}

_FIXED_ARGS = ("image", "boxes", "labels", "seed")


def op_parameters(name: str) -> dict[str, Any]:
    """The tunable parameters of a registered op and their defaults."""
    fn = _lookup(name)
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.name not in _FIXED_ARGS
    }


def _lookup(name) -> Callable:
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}{did_you_mean(name, AUGMENTATIONS)} "
                         f"(known: {', '.join(AUGMENTATIONS)})")
    return AUGMENTATIONS[name]


def _parse_spec(index: int, spec) -> tuple[str, dict[str, Any]]:
    """``(name, params)`` of one spec; ``ValueError`` naming its path ``augmentations[i].<key>``."""
    at = f"augmentations[{index}]"
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise ValueError(f"{at} must be a mapping like {{'name': ..., **params}}, got {type(spec).__name__}")
    if "name" not in spec:
        raise ValueError(f"{at} has no 'name' (got keys {sorted(spec)})")
    name = spec["name"]
    try:
        known = op_parameters(name)
    except ValueError as exc:
        raise ValueError(f"{at}.name: {exc}") from None
    params = {k: v for k, v in spec.items() if k != "name"}
    for key in params:
        if key not in known:
            raise ValueError(
                f"{at}.{key}: unknown parameter {key!r} for augmentation {name!r}"
                f"{did_you_mean(key, known)} (known: {', '.join(known) or 'none'})"
            )
    for key in ("probability", "random_coef"):
        value = params.get(key)
        if isinstance(value, int | float) and not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{at}.{key}: augmentation {name!r}: {key} must be in [0, 1], got {value!r}")
    if name == "ssd_random_crop_pad_fixed_aspect_ratio":
        merged = {**known, **params}
        try:
            _ssd_cases(*(merged[k] for k in ("min_object_covered", "aspect_ratio_range",
                                             "area_range", "overlap_thresh", "random_coef")))
        except ValueError as exc:
            raise ValueError(f"{at}: augmentation {name!r}: {exc}") from None
    return name, params


def validate_augmentations(specs: Sequence[Mapping[str, Any]] | None) -> None:
    """Check augmentation specs (names and parameter names) without building anything.

    Raises ``ValueError`` naming the unknown augmentation or parameter and the known ones.
    """
    for i, spec in enumerate(specs or []):
        _parse_spec(i, spec)


def build_augmenter(specs: Sequence[Mapping[str, Any]] | None) -> Callable:
    """Compose ops from specs ``[{"name": <op>, **params}, ...]`` applied in order.

    Returns ``augment(image, boxes, labels, seed=None) -> (image, boxes, labels)`` with a
    float32 [0, 255] image. ``seed`` (shape-[2] ints) makes the whole chain deterministic
    (each op gets a seed folded from it); without it every call draws fresh randomness.
    Raises ``ValueError`` for unknown names or parameters.
    """
    parsed = [_parse_spec(i, spec) for i, spec in enumerate(specs or [])]
    steps = [(AUGMENTATIONS[name], params) for name, params in parsed]

    def augment(image, boxes, labels, seed=None):
        image = _as_float_image(image)
        boxes = _as_boxes(boxes)
        labels = tf.convert_to_tensor(labels)
        base = None if seed is None else _seed(seed)
        for i, (fn, params) in enumerate(steps):
            op_seed = None if base is None else _sub(base, i)
            image, boxes, labels = fn(image, boxes, labels, seed=op_seed, **params)
        return image, boxes, labels

    augment.specs = [{"name": name, **params} for name, params in parsed]
    return augment


# --------------------------------------------------------------------------- preview

_PREVIEW_COLOURS = {1: "red", 2: "green", 4: "blue"}


def augmentation_preview(images, boxes, labels, augmenter: Callable, n: int = 8, seed: int = 0):
    """A grid of ``n`` augmented frames with boxes in class colours (vehicle red,
    pedestrian green, cyclist blue, other ids yellow).

    ``images``/``boxes``/``labels`` are sequences (one entry per frame) that are cycled
    through; frame ``i`` uses seed ``[seed, i]`` when the augmenter takes a ``seed``.
    Returns a ``matplotlib.figure.Figure`` with exactly ``n`` axes (not saved).
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(images) == 0:
        raise ValueError("augmentation_preview needs at least one image")
    try:
        takes_seed = "seed" in inspect.signature(augmenter).parameters
    except (TypeError, ValueError):
        takes_seed = False
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.2 * cols, 2.4 * rows), layout="constrained")
    for i in range(n):
        j = i % len(images)
        kwargs = {"seed": tf.constant([seed, i], tf.int32)} if takes_seed else {}
        image, frame_boxes, frame_labels = augmenter(
            images[j], tf.reshape(tf.cast(boxes[j], tf.float32), [-1, 4]),
            tf.cast(labels[j], tf.int32), **kwargs
        )
        image = tf.cast(tf.clip_by_value(tf.cast(image, tf.float32), 0, 255), tf.uint8).numpy()
        h, w = image.shape[:2]
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(image)
        for (y0, x0, y1, x1), label in zip(
            frame_boxes.numpy().tolist(), frame_labels.numpy().tolist(), strict=True
        ):
            ax.add_patch(
                Rectangle(
                    (x0 * w, y0 * h), (x1 - x0) * w, (y1 - y0) * h, fill=False, linewidth=1.2,
                    edgecolor=_PREVIEW_COLOURS.get(int(label), "yellow"),
                )
            )
        names = sorted({LABEL_MAP.get(int(v), str(v)) for v in frame_labels.numpy().tolist()})
        ax.set_title(f"#{i} ({len(frame_labels)} boxes: {', '.join(names) or '-'})", fontsize=8)
        ax.set_axis_off()
    return fig
