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

Modules: ``geometric`` and ``photometric`` (the ops), ``seeds`` and ``tensors`` (what the ops
share), ``spec`` (the registry :data:`AUGMENTATIONS`, checking and composing specs) and
``preview`` (a figure of augmented frames).

Use :func:`build_augmenter` with a list of specs such as
``[{"name": "random_horizontal_flip"}, {"name": "random_crop_image", "area_range": [0.3, 1]}]``.
"""

from urban_detection.detection.augment.geometric import (
    random_crop_image,
    random_horizontal_flip,
    random_jitter_boxes,
    random_pad_image,
    random_zoom_out,
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
from urban_detection.detection.augment.preview import augmentation_preview
from urban_detection.detection.augment.spec import (
    AUGMENTATIONS,
    build_augmenter,
    op_parameters,
    validate_augmentations,
)

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
