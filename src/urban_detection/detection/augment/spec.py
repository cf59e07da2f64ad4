"""Augmentation specs: the registry of ops by name, checking specs and composing them into an augmenter."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tensorflow as tf

from urban_detection.detection.augment.geometric import (
    random_crop_image,
    random_horizontal_flip,
    random_jitter_boxes,
    random_pad_image,
    random_zoom_out,
    ssd_cases,
    ssd_random_crop_pad_fixed_aspect_ratio,
)
from urban_detection.detection.augment.photometric import (
    random_adjust_brightness,
    random_adjust_contrast,
    random_adjust_hue,
    random_adjust_saturation,
    random_black_patches,
    random_rain_blur,
    random_rgb_to_gray,
)
from urban_detection.detection.augment.seeds import as_seed, sub_seed
from urban_detection.detection.augment.tensors import as_boxes, as_float_image
from urban_detection.detection.suggest import did_you_mean

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

# Ops that give the same result (up to interpolation) before or after the model's resize: a flip and
# per-image colour changes. A chain of only these lets the input pipeline resize (and cache) each frame
# at the model's size before augmenting it (:func:`~urban_detection.detection.data.make_dataset`).
SIZE_INVARIANT = frozenset({
    "random_horizontal_flip", "random_rgb_to_gray", "random_adjust_brightness", "random_adjust_contrast",
    "random_adjust_saturation", "random_adjust_hue",
})


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
            ssd_cases(*(merged[k] for k in ("min_object_covered", "aspect_ratio_range",
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
    The function's ``specs`` are the parsed specs; ``size_invariant`` is True when every op is in
    :data:`SIZE_INVARIANT` (the input pipeline may then augment frames already resized).
    Raises ``ValueError`` for unknown names or parameters.
    """
    parsed = [_parse_spec(i, spec) for i, spec in enumerate(specs or [])]
    steps = [(AUGMENTATIONS[name], params) for name, params in parsed]

    def augment(image, boxes, labels, seed=None):
        image = as_float_image(image)
        boxes = as_boxes(boxes)
        labels = tf.convert_to_tensor(labels)
        base = None if seed is None else as_seed(seed)
        for i, (fn, params) in enumerate(steps):
            op_seed = None if base is None else sub_seed(base, i)
            image, boxes, labels = fn(image, boxes, labels, seed=op_seed, **params)
        return image, boxes, labels

    augment.specs = [{"name": name, **params} for name, params in parsed]
    augment.size_invariant = all(name in SIZE_INVARIANT for name, _ in parsed)
    return augment
