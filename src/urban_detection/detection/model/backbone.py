"""The detector's backbone: a ResNet image encoder, ImageNet input normalisation and an FPN."""
from __future__ import annotations

import keras
import keras_hub
import numpy as np
from keras_hub.src.models.feature_pyramid_backbone import FeaturePyramidBackbone
from keras_hub.src.models.retinanet.feature_pyramid import FeaturePyramid
from keras_hub.src.utils.keras_utils import standardize_data_format

from urban_detection.detection.model.conventions import IMAGENET_MEAN, IMAGENET_STD, KERAS_PACKAGE


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class DetectorBackbone(keras_hub.models.RetinaNetBackbone):
    """``RetinaNetBackbone`` with ImageNet input normalisation and a configurable FPN width.

    Takes float RGB in ``[0, 255]``; outputs the FPN levels ``P{min_level}`` to
    ``P{max_level}`` with ``fpn_filters`` channels. Weights of the image encoder
    keep the layer structure of ``image_encoder`` so presets load into it.
    """

    def __init__(
        self,
        image_encoder,
        min_level,
        max_level,
        use_p5,
        fpn_filters=256,
        use_fpn_batch_norm=False,
        pixel_mean=IMAGENET_MEAN,
        pixel_std=IMAGENET_STD,
        image_shape=(None, None, 3),
        data_format=None,
        dtype=None,
        **kwargs,
    ):
        if min_level > max_level:
            raise ValueError(f"min_level ({min_level}) must be <= max_level ({max_level})")
        levels = sorted(int(k[1:]) for k in image_encoder.pyramid_outputs)
        top = min(max(levels), max_level)
        if any(f"P{lvl}" not in image_encoder.pyramid_outputs for lvl in range(min_level, top + 1)):
            raise ValueError(f"image encoder has levels {levels}, needs P{min_level}..P{top}")
        mean = np.asarray(pixel_mean, np.float32)
        std = np.asarray(pixel_std, np.float32)
        feature_extractor = keras.Model(
            inputs=image_encoder.inputs,
            outputs={f"P{lvl}": image_encoder.pyramid_outputs[f"P{lvl}"] for lvl in range(min_level, top + 1)},
            name="backbone",
        )
        normalize = keras.layers.Rescaling(
            scale=(1.0 / (255.0 * std)).tolist(), offset=(-mean / std).tolist(), dtype=dtype, name="normalize"
        )
        feature_pyramid = FeaturePyramid(
            min_level=min_level,
            max_level=max_level,
            use_p5=use_p5,
            num_filters=fpn_filters,
            use_batch_norm=use_fpn_batch_norm,
            # KerasHub 0.32 derives the BatchNorm axis from the raw argument: pass it explicitly.
            data_format=standardize_data_format(data_format),
            dtype=dtype,
            name="fpn",
        )
        image_input = keras.layers.Input(image_shape, name="inputs")
        outputs = feature_pyramid(feature_extractor(normalize(image_input)))
        # ... and it passes batch_norm_epsilon (0.001) as the momentum; use the backbone's 0.9.
        for norm in [*feature_pyramid.lateral_batch_norm_layers.values(), *feature_pyramid.output_batch_norms.values()]:
            norm.momentum = 0.9
        # Skip RetinaNetBackbone.__init__ (it fixes the FPN width at 256).
        FeaturePyramidBackbone.__init__(self, inputs=image_input, outputs=outputs, dtype=dtype, **kwargs)
        self.min_level = min_level
        self.max_level = max_level
        self.use_p5 = use_p5
        self.fpn_filters = fpn_filters
        self.use_fpn_batch_norm = use_fpn_batch_norm
        self.pixel_mean = tuple(float(v) for v in mean)
        self.pixel_std = tuple(float(v) for v in std)
        self.image_encoder = image_encoder
        self.feature_pyramid = feature_pyramid
        self.image_shape = image_shape
        self.pyramid_outputs = outputs

    def get_config(self):
        config = super().get_config()
        config.update(fpn_filters=self.fpn_filters, pixel_mean=list(self.pixel_mean), pixel_std=list(self.pixel_std))
        return config
