"""KerasHub RetinaNet detectors for vehicles, pedestrians and cyclists.

Three architectures are provided (see :data:`ARCHS`):

``retinanet_resnet50_fpn_coco``
    The layout of KerasHub's ``retinanet_resnet50_fpn_coco`` preset (torchvision's
    COCO RetinaNet-50 v1), so that preset loads into it (:mod:`.pretrained`):
    ResNet-50 backbone, FPN P3 to P7 with 256 channels and no normalisation, P6
    from the FPN's P5 output (``use_p5=False``), P7 from relu(P6), shared 4-conv
    256-channel heads without normalisation, anchors of size 4 x stride with 3
    scales per octave and aspect ratios 0.5/1/2, ``center_xywh`` box deltas with
    unit variance, ImageNet mean/std input normalisation. Training and
    post-processing settings (matcher, NMS, L2, focal prior) are the Object
    Detection API's, as for ``retinanet_resnet50_fpn``: the preset fixes the
    network, the seed experiments fix how it is trained.

``retinanet_resnet50_fpn``
    The configuration of the Object Detection API's *SSD ResNet50 V1 FPN 640x640*
    (RetinaNet-50): ResNet-50 v1 backbone, FPN P3 to P7 with 256 channels, shared
    4-conv 256-channel heads, anchors of size 4 x stride with aspect ratios
    0.5/1/2 and 2 scales per octave, sigmoid focal loss (alpha 0.25, gamma 2),
    classification prior 0.01, per-class NMS with IoU 0.6, score threshold 1e-8
    and at most 100 detections.

``retinanet_resnet18_fpn_small`` (alias ``retinanet_small``)
    A small variant for fast training on a CPU (1.4 M parameters): a
    ResNet-18-like basic-block backbone with one block per stage and widths
    64/96/128/192, a 64-channel FPN on P3 to P6, 64-channel heads with two convs,
    anchors of size 2 x stride (16 to 181 px) with aspect ratios (h/w) 0.5, 1, 2
    and 4 and 2 scales per octave, 320 px input. KerasHub hard-codes 256 channels
    in its FPN and heads, so :class:`DetectorBackbone` and
    :class:`RetinaNetDetector` subclass the KerasHub classes to make those
    widths configurable.

    Measured on the project's 2-core AMD EPYC (batch 8, train step only):
    43 img/s at 256 px, 28 img/s at 320 px in float32 (53 / 33 img/s with
    ``mixed_bfloat16``); a full run with the input pipeline and augmentation
    makes ~22 img/s at 320 px. Recipe that reached COCO AP50 0.69-0.71 (mAP
    0.36-0.40) on held-out synthetic trips in 600 steps (~4 min): ~1000 frames
    from ~50 trips, Adam with cosine decay from 1e-3 (30 warm-up steps from
    1e-4), ``global_clipnorm`` 10, flip + brightness + contrast augmentation.
    From scratch, momentum SGD at 0.02 diverged (box loss blew up at step ~75).

Conventions at this module's boundary
-------------------------------------
* The model takes float32 RGB images in ``[0, 255]`` of shape ``[B, S, S, 3]``;
  ImageNet normalisation happens inside the backbone, so exported models and
  :mod:`.data` never normalise.
* Inside the model boxes are **pixel** ``yxyx`` (:data:`BOX_FORMAT`) in the input
  frame and classes are contiguous indices ``0..num_classes-1``. The project's
  label ids (1 vehicle, 2 pedestrian, 4 cyclist) are converted with
  :data:`LABEL_TO_INDEX` / :data:`INDEX_TO_LABEL`; :func:`postprocess_detections`
  returns normalised ``[ymin, xmin, ymax, xmax]`` boxes and label ids.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras_hub.src.models.feature_pyramid_backbone import FeaturePyramidBackbone
from keras_hub.src.models.object_detector import ObjectDetector
from keras_hub.src.models.retinanet.feature_pyramid import FeaturePyramid
from keras_hub.src.models.retinanet.prediction_head import PredictionHead
from keras_hub.src.models.retinanet.retinanet_label_encoder import RetinaNetLabelEncoder
from keras_hub.src.utils.keras_utils import standardize_data_format
from keras_hub.src.utils.tensor_utils import assert_bounding_box_support

from urban_detection.detection import pretrained

log = logging.getLogger(__name__)

LABEL_TO_INDEX: dict[int, int] = {1: 0, 2: 1, 4: 2}
INDEX_TO_LABEL: dict[int, int] = {v: k for k, v in LABEL_TO_INDEX.items()}
CLASS_NAMES: tuple[str, ...] = ("vehicle", "pedestrian", "cyclist")
BOX_FORMAT = "yxyx"  # pixel coordinates of the model input
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PACKAGE = "urban_detection"

# ResNet-50 as KerasHub's resnet_50_imagenet preset configures it (both ResNet-50 archs use it).
RESNET50_ENCODER: dict[str, Any] = dict(
    input_conv_filters=[64],
    input_conv_kernel_sizes=[7],
    stackwise_num_filters=[64, 128, 256, 512],
    stackwise_num_blocks=[3, 4, 6, 3],
    stackwise_num_strides=[1, 2, 2, 2],
    block_type="bottleneck_block",
    use_pre_activation=False,
)

# Everything a caller may override through ``build_detector(**overrides)``.
ARCHS: dict[str, dict[str, Any]] = {
    "retinanet_resnet50_fpn_coco": dict(
        encoder=dict(RESNET50_ENCODER),  # the image_encoder of the preset's config.json
        min_level=3,
        max_level=7,
        use_p5=False,  # as the preset: P6 from the FPN's P5 output (torchvision LastLevelP6P7(256, 256))
        fpn_filters=256,
        fpn_batch_norm=False,
        head_filters=256,
        head_convs=4,
        head_norm=False,
        anchor_size=4.0,  # the preset's AnchorGenerator: 4 x stride, 3 scales, h/w 0.5, 1, 2
        num_scales=3,
        aspect_ratios=[0.5, 1.0, 2.0],
        positive_threshold=0.5,  # from here on the OD API's training settings, as retinanet_resnet50_fpn
        negative_threshold=0.5,
        force_match=True,
        prior_probability=0.01,
        nms_iou=0.6,
        score_threshold=1e-8,
        max_detections=100,
        pre_nms_top_k=1000,
        l2=0.0002,
        default_image_size=640,
    ),
    "retinanet_resnet50_fpn": dict(
        encoder=dict(RESNET50_ENCODER),
        min_level=3,
        max_level=7,
        use_p5=False,  # KerasHub: False = P6 from the FPN's P5 output (as the OD API), True = from C5
        fpn_filters=256,
        fpn_batch_norm=True,
        head_filters=256,
        head_convs=4,
        head_norm=True,  # GroupNorm (the OD API uses BatchNorm in its shared tower)
        anchor_size=4.0,
        num_scales=2,
        aspect_ratios=[0.5, 1.0, 2.0],
        positive_threshold=0.5,  # OD API argmax matcher: matched 0.5, unmatched 0.5
        negative_threshold=0.5,
        force_match=True,
        prior_probability=0.01,
        nms_iou=0.6,
        score_threshold=1e-8,
        max_detections=100,
        pre_nms_top_k=1000,
        l2=0.0002,  # keras L2(l) = l * sum(w^2), i.e. the OD API's l2_regularizer(0.0004)
        default_image_size=640,
    ),
    "retinanet_resnet18_fpn_small": dict(
        encoder=dict(
            input_conv_filters=[64],
            input_conv_kernel_sizes=[3],
            stackwise_num_filters=[64, 96, 128, 192],
            stackwise_num_blocks=[1, 1, 1, 1],
            stackwise_num_strides=[1, 2, 2, 2],
            block_type="basic_block",
            use_pre_activation=False,
        ),
        min_level=3,
        max_level=6,
        use_p5=False,
        fpn_filters=64,
        fpn_batch_norm=True,
        head_filters=64,
        head_convs=2,
        head_norm=False,
        # Smaller anchors (16 to 181 px over P3-P6) and a tall 4:1 shape: objects in street scenes
        # stretched to a square input are small and pedestrians become thin (h/w ~ 4).
        anchor_size=2.0,
        num_scales=2,
        aspect_ratios=[0.5, 1.0, 2.0, 4.0],  # height / width in KerasHub's AnchorGenerator
        positive_threshold=0.5,
        negative_threshold=0.4,
        force_match=True,
        prior_probability=0.01,
        nms_iou=0.6,
        score_threshold=1e-8,
        max_detections=100,
        pre_nms_top_k=1000,
        l2=0.0,
        default_image_size=320,
    ),
}
ARCHS["retinanet_small"] = ARCHS["retinanet_resnet18_fpn_small"]  # short alias


def label_ids_to_indices(labels):
    """Map label ids (1, 2, 4) to model indices (0, 1, 2); unknown ids give -1. numpy or tf."""
    if tf.is_tensor(labels):
        table = tf.constant([LABEL_TO_INDEX.get(i, -1) for i in range(max(LABEL_TO_INDEX) + 1)], tf.int32)
        labels = tf.cast(labels, tf.int32)
        ok = (labels >= 0) & (labels <= max(LABEL_TO_INDEX))
        return tf.where(ok, tf.gather(table, tf.clip_by_value(labels, 0, max(LABEL_TO_INDEX))), -1)
    labels = np.asarray(labels)
    return np.asarray([LABEL_TO_INDEX.get(int(i), -1) for i in labels.reshape(-1)], np.int32).reshape(labels.shape)


def indices_to_label_ids(indices):
    """Map model indices (0, 1, 2) back to label ids (1, 2, 4); negatives stay -1. numpy or tf."""
    table = [INDEX_TO_LABEL[i] for i in range(len(INDEX_TO_LABEL))]
    if tf.is_tensor(indices):
        idx = tf.cast(indices, tf.int32)
        ok = (idx >= 0) & (idx < len(table))
        return tf.where(ok, tf.gather(tf.constant(table, tf.int32), tf.clip_by_value(idx, 0, len(table) - 1)), -1)
    idx = np.asarray(indices, np.int64)
    out = np.full(idx.shape, -1, np.int32)
    ok = (idx >= 0) & (idx < len(table))
    out[ok] = np.asarray(table, np.int32)[idx[ok]]
    return out


# --------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package=_PACKAGE)
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


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MultiClassNMS(keras.layers.Layer):
    """Per-class NMS as the OD API's ``batch_multiclass_non_max_suppression``.

    Same call signature and outputs as ``keras_hub.layers.NonMaxSuppression``
    (``boxes``, ``confidence``, ``labels``, ``num_detections``; invalid slots are
    -1), but suppression is done per class (KerasHub's is class-agnostic), boxes
    are clipped to the image and the top ``pre_nms_top_k`` scores per class are
    kept before NMS. TensorFlow backend only (uses ``tf.image``).
    """

    def __init__(
        self,
        bounding_box_format=BOX_FORMAT,
        from_logits=True,
        iou_threshold=0.6,
        confidence_threshold=1e-8,
        max_detections=100,
        max_detections_per_class=100,
        pre_nms_top_k=1000,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if bounding_box_format not in ("yxyx", "rel_yxyx"):
            raise ValueError(f"MultiClassNMS supports yxyx/rel_yxyx boxes, got {bounding_box_format!r}")
        self.bounding_box_format = bounding_box_format
        self.from_logits = from_logits
        self.iou_threshold = iou_threshold
        self.confidence_threshold = confidence_threshold
        self.max_detections = max_detections
        self.max_detections_per_class = max_detections_per_class
        self.pre_nms_top_k = pre_nms_top_k
        self.built = True

    def call(self, box_prediction, class_prediction, images=None):
        boxes = tf.cast(box_prediction, tf.float32)
        scores = tf.cast(class_prediction, tf.float32)
        if self.from_logits:
            scores = tf.sigmoid(scores)
        if self.bounding_box_format == "yxyx" and images is not None:
            shape = tf.cast(tf.shape(images)[1:3], tf.float32)
            limit = tf.concat([shape, shape], 0)
        else:
            limit = tf.ones([4], tf.float32)
        boxes = tf.clip_by_value(boxes, 0.0, limit) / limit  # NMS in [0, 1] units
        num_anchors = tf.shape(scores)[1]
        k = tf.minimum(self.pre_nms_top_k, num_anchors)
        # [B, C, k] best anchors per class, then boxes [B, C*k, 1, 4] and scores [B, C*k, C].
        top_scores, top_idx = tf.math.top_k(tf.transpose(scores, [0, 2, 1]), k=k, sorted=False)
        num_classes = tf.shape(scores)[2]
        top_boxes = tf.gather(boxes, top_idx, batch_dims=1)  # [B, C, k, 4]
        onehot = tf.one_hot(tf.range(num_classes), num_classes)  # [C, C]
        cand_scores = top_scores[..., None] * onehot[None, :, None, :]  # [B, C, k, C]
        batch = tf.shape(scores)[0]
        cand_boxes = tf.reshape(top_boxes, [batch, -1, 1, 4])
        cand_scores = tf.reshape(cand_scores, [batch, -1, num_classes])
        nmsed_boxes, nmsed_scores, nmsed_classes, valid = tf.image.combined_non_max_suppression(
            cand_boxes,
            cand_scores,
            max_output_size_per_class=self.max_detections_per_class,
            max_total_size=self.max_detections,
            iou_threshold=self.iou_threshold,
            score_threshold=self.confidence_threshold,
            pad_per_class=False,
            clip_boxes=False,
        )
        nmsed_boxes = nmsed_boxes * limit
        mask = tf.range(self.max_detections)[None, :] < valid[:, None]
        return {
            "boxes": tf.where(mask[..., None], nmsed_boxes, -1.0),
            "confidence": tf.where(mask, nmsed_scores, -1.0),
            "labels": tf.where(mask, tf.cast(nmsed_classes, tf.int32), -1),
            "num_detections": valid,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            bounding_box_format=self.bounding_box_format,
            from_logits=self.from_logits,
            iou_threshold=self.iou_threshold,
            confidence_threshold=self.confidence_threshold,
            max_detections=self.max_detections,
            max_detections_per_class=self.max_detections_per_class,
            pre_nms_top_k=self.pre_nms_top_k,
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RetinaNetDetector(keras_hub.models.RetinaNetObjectDetector):
    """``RetinaNetObjectDetector`` with configurable head width and a correct prior.

    Differences from the KerasHub class (whose ``__init__`` is replaced, the rest
    -- losses, decoding, serialisation -- is inherited):

    * ``head_filters`` sets the width of the shared heads (KerasHub: fixed 256);
    * the prior-probability bias ``-log((1 - p) / p)`` goes to the
      *classification* logits, as in the RetinaNet paper (KerasHub 0.32 puts it
      on the box-regression head and leaves the class logits at 0, which gives
      a huge initial focal loss);
    * head kernels start from N(0, ``head_kernel_stddev``) (0.01 as in the paper);
    * anchor generator, label encoder and decoder compute in float32 even under a
      mixed-precision policy.
    """

    def __init__(
        self,
        backbone,
        num_classes,
        bounding_box_format=BOX_FORMAT,
        anchor_generator=None,
        label_encoder=None,
        use_prediction_head_norm=False,
        classification_head_prior_probability=0.01,
        pre_logits_num_conv_layers=4,
        head_filters=256,
        head_kernel_stddev=0.01,
        preprocessor=None,
        activation=None,
        dtype=None,
        prediction_decoder=None,
        **kwargs,
    ):
        assert_bounding_box_support(self.__class__.__name__)
        image_input = keras.layers.Input(backbone.image_shape, name="images")
        head_dtype = dtype or backbone.dtype_policy
        anchor_generator = anchor_generator or keras_hub.layers.AnchorGenerator(
            bounding_box_format,
            min_level=backbone.min_level,
            max_level=backbone.max_level,
            num_scales=3,
            aspect_ratios=[0.5, 1.0, 2.0],
            anchor_size=4,
            dtype="float32",
        )
        label_encoder = label_encoder or RetinaNetLabelEncoder(
            anchor_generator, bounding_box_format=bounding_box_format, encoding_format="center_xywh", dtype="float32"
        )
        init = keras.initializers.RandomNormal(stddev=head_kernel_stddev)

        def head(outputs_per_anchor, name, bias):
            return PredictionHead(
                output_filters=anchor_generator.num_base_anchors * outputs_per_anchor,
                num_conv_layers=pre_logits_num_conv_layers,
                num_filters=head_filters,
                use_group_norm=use_prediction_head_norm,
                kernel_initializer=init,
                # The logits layer takes ``prior_probability``; ``bias`` only picks which head.
                use_prior_probability=bias,
                prior_probability=classification_head_prior_probability,
                dtype=head_dtype,
                name=name,
            )

        box_head = head(4, "box_head", bias=False)
        classification_head = head(num_classes, "classification_head", bias=True)

        feature_map = backbone(image_input)
        class_predictions, box_predictions = [], []
        for level in feature_map:
            box_predictions.append(
                keras.layers.Reshape((-1, 4), name=f"box_pred_{level}")(box_head(feature_map[level]))
            )
            class_predictions.append(
                keras.layers.Reshape((-1, num_classes), name=f"cls_pred_{level}")(
                    classification_head(feature_map[level])
                )
            )
        outputs = {
            "bbox_regression": keras.layers.Concatenate(axis=1, name="bbox_regression")(box_predictions),
            "cls_logits": keras.layers.Concatenate(axis=1, name="cls_logits")(class_predictions),
        }
        kwargs.setdefault("compile", False)
        ObjectDetector.__init__(self, inputs=image_input, outputs=outputs, **kwargs)

        self.bounding_box_format = bounding_box_format
        self.use_prediction_head_norm = use_prediction_head_norm
        self.num_classes = num_classes
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.activation = activation
        self.pre_logits_num_conv_layers = pre_logits_num_conv_layers
        self.head_filters = head_filters
        self.head_kernel_stddev = head_kernel_stddev
        self.classification_head_prior_probability = classification_head_prior_probability
        self.box_head = box_head
        self.classification_head = classification_head
        self.anchor_generator = anchor_generator
        self.label_encoder = label_encoder
        self._prediction_decoder = prediction_decoder or MultiClassNMS(bounding_box_format=bounding_box_format)



    def decode_predictions(self, predictions, data):
        # KerasHub unpacks ``data`` as ``(images, labels)``; predict_on_batch passes ``(images,)``.
        images = data[0] if isinstance(data, (list, tuple)) else data
        # Under a mixed policy the heads output float16/bfloat16; anchors and decoding are float32.
        predictions = {k: keras.ops.cast(v, "float32") for k, v in predictions.items()}
        return super().decode_predictions(predictions, keras.ops.cast(images, "float32"))

    def get_config(self):
        config = super().get_config()
        config.update(
            head_filters=self.head_filters,
            head_kernel_stddev=self.head_kernel_stddev,
            classification_head_prior_probability=self.classification_head_prior_probability,
        )
        return config


# --------------------------------------------------------------------------- building


def arch_config(arch: str, **overrides) -> dict[str, Any]:
    """The resolved configuration of ``arch`` with ``overrides`` applied (unknown keys raise)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown detector arch {arch!r}; choose one of {sorted(ARCHS)}")
    cfg = copy.deepcopy(ARCHS[arch])
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"unknown override(s) {sorted(unknown)} for {arch}; allowed: {sorted(cfg)}")
    for key, value in overrides.items():
        if key == "encoder" and isinstance(value, dict):
            cfg["encoder"].update(value)
        else:
            cfg[key] = value
    return cfg


def build_image_encoder(cfg: dict[str, Any], weights: str | None = None):
    """The ResNet image encoder of an arch config: random, or with the image encoder of a preset.

    ``weights``: a KerasHub preset name or local preset directory (see :mod:`.pretrained`).
    """
    encoder = keras_hub.models.ResNetBackbone(**cfg["encoder"])
    if weights is not None:
        source = pretrained.load_preset(weights)
        parts = pretrained.preset_components(source)
        pretrained.copy_component(parts["image_encoder"], encoder.weights, "image_encoder", str(weights))
    return encoder


def _is_model_file(weights) -> bool:
    """Whether ``weights`` is a whole-model file or checkpoint (``False``: ``None`` or a preset).

    A path that does not exist raises ``FileNotFoundError``; a bare name is a preset name.
    """
    if weights is None:
        return False
    text = str(weights)
    if Path(text).exists():
        return not _is_preset_dir(text)
    if tf.io.gfile.exists(text + ".index"):  # a tf.train checkpoint prefix
        return True
    if "://" not in text and ("/" in text or os.sep in text or text.endswith((".h5", ".keras"))):
        raise FileNotFoundError(f"initial weights {text} not found (no file, checkpoint or preset directory)")
    return False


def build_detector(
    arch: str,
    image_size: int | None = None,
    num_classes: int = 3,
    weights: str | None = None,
    **overrides,
) -> keras_hub.models.RetinaNetObjectDetector:
    """Build a RetinaNet detector (a ``keras_hub.models.RetinaNetObjectDetector`` subclass).

    ``weights``: ``None`` (random init), a KerasHub preset name (needs the network,
    raises ``RuntimeError`` offline) or local preset directory (a detector preset
    gives everything but the classification head's last layer, a backbone preset
    the backbone, see :mod:`.pretrained`), or a ``.weights.h5`` file / tf.train
    checkpoint of the same arch (whole model, see :func:`load_initial_weights`).
    What was loaded and what initialised is in ``model.init_report`` (a dict:
    ``source``, ``loaded``, ``initialised``, ``by_component``, ...), also
    logged. ``overrides`` replace keys of :data:`ARCHS` (e.g. ``head_convs=1``,
    ``max_level=5``). ``image_size`` fixes the square input size (``None``: the arch's ``default_image_size``; ``0``:
    any size). Build under a distribution strategy scope and after
    :func:`~.train.configure_precision` when needed.
    """
    cfg = arch_config(arch, **overrides)
    image_size = cfg["default_image_size"] if image_size is None else image_size
    is_model_file = _is_model_file(weights)
    # a preset is read first: a missing one fails before the model is built
    source = None if weights is None or is_model_file else pretrained.load_preset(weights)
    encoder = build_image_encoder(cfg)
    shape = (image_size, image_size, 3) if image_size else (None, None, 3)  # 0: any size
    backbone = DetectorBackbone(
        encoder,
        min_level=cfg["min_level"],
        max_level=cfg["max_level"],
        use_p5=cfg["use_p5"],
        fpn_filters=cfg["fpn_filters"],
        use_fpn_batch_norm=cfg["fpn_batch_norm"],
        image_shape=shape,
    )
    anchors = keras_hub.layers.AnchorGenerator(
        BOX_FORMAT,
        min_level=cfg["min_level"],
        max_level=cfg["max_level"],
        num_scales=cfg["num_scales"],
        aspect_ratios=list(cfg["aspect_ratios"]),
        anchor_size=cfg["anchor_size"],
        dtype="float32",
    )
    encoder_layer = RetinaNetLabelEncoder(
        anchors,
        bounding_box_format=BOX_FORMAT,
        encoding_format="center_xywh",
        positive_threshold=cfg["positive_threshold"],
        negative_threshold=cfg["negative_threshold"],
        box_matcher_force_match_for_each_col=cfg["force_match"],
        dtype="float32",
    )
    decoder = MultiClassNMS(
        bounding_box_format=BOX_FORMAT,
        from_logits=True,
        iou_threshold=cfg["nms_iou"],
        confidence_threshold=cfg["score_threshold"],
        max_detections=cfg["max_detections"],
        max_detections_per_class=cfg["max_detections"],
        pre_nms_top_k=cfg["pre_nms_top_k"],
    )
    model = RetinaNetDetector(
        backbone=backbone,
        num_classes=num_classes,
        bounding_box_format=BOX_FORMAT,
        anchor_generator=anchors,
        label_encoder=encoder_layer,
        use_prediction_head_norm=cfg["head_norm"],
        classification_head_prior_probability=cfg["prior_probability"],
        pre_logits_num_conv_layers=cfg["head_convs"],
        head_filters=cfg["head_filters"],
        prediction_decoder=decoder,
        name=arch,
    )
    set_l2_regularization(model, cfg["l2"])
    if weights is None:
        pretrained.set_init_report(model, pretrained.init_report(model))
    elif is_model_file:
        load_initial_weights(model, weights)
    else:
        pretrained.transfer(model, source, str(weights))
    return model


def set_l2_regularization(model: keras.Model, l2: float) -> int:
    """Put an L2 penalty ``l2 * sum(w^2)`` on every conv/dense kernel; returns how many kernels."""
    count = 0
    reg = keras.regularizers.L2(l2) if l2 else None
    for variable in model.trainable_weights:
        if variable.path.endswith("kernel"):
            variable.regularizer = reg
            count += 1
    return count


def _is_preset_dir(path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "config.json").exists() and not (p / "checkpoint").exists()


def checkpoint_weights(model: keras.Model) -> dict[str, tf.Variable]:
    """Every model variable keyed by its Keras path, for ``tf.train.Checkpoint(weights=...)``.

    ``tf.train.Checkpoint(model=model)`` is not enough with Keras 3: layers that
    KerasHub keeps in dicts or lists (the FPN's convs, the heads' towers) are not
    in TensorFlow's object graph and would silently be left out.
    """
    paths = [v.path for v in model.weights]
    if len(set(paths)) != len(paths):
        paths = [f"{i:04d}:{p}" for i, p in enumerate(paths)]
    return {p: v.value for p, v in zip(paths, model.weights)}


def _checkpoint_key(path: str) -> str:
    escaped = path.replace(".", "..").replace("/", ".S")  # tf.train.Checkpoint's escaping of names
    return f"weights/{escaped}/.ATTRIBUTES/VARIABLE_VALUE"


def load_initial_weights(model: keras.Model, path: str | os.PathLike) -> str:
    """Initialise ``model`` from another experiment of the same arch (fine-tuning).

    ``path`` may be a ``.weights.h5`` file, a ``.keras`` file, a checkpoint
    directory written by :func:`~.train.train` (its newest checkpoint is used)
    or a checkpoint prefix. Only model variables are loaded (not the optimizer
    or step). Returns what was loaded; raises ``FileNotFoundError`` or
    ``ValueError`` (naming the first variables that do not fit) otherwise.
    """
    path = str(path)
    if path.endswith(".weights.h5") or path.endswith(".keras"):
        if not Path(path).is_file():
            raise FileNotFoundError(f"initial weights {path} not found")
        try:
            if path.endswith(".keras"):
                other = keras.saving.load_model(path, compile=False)
                _assign_matching(model, other, path)
            else:
                model.load_weights(path)
        except (ValueError, KeyError) as err:
            raise ValueError(f"weights in {path} do not fit model {model.name}: {err}") from err
        _report_whole_model(model, path, "keras file" if path.endswith(".keras") else "weights file")
        return path
    prefix = tf.train.latest_checkpoint(path) if Path(path).is_dir() else path
    if prefix is None or not tf.io.gfile.glob(prefix + ".index"):
        raise FileNotFoundError(f"no tf.train checkpoint found at {path}")
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    weights = checkpoint_weights(model)
    missing = [p for p in weights if _checkpoint_key(p) not in shapes]
    wrong = [f"{p} {shapes[_checkpoint_key(p)]} vs {list(v.shape)}" for p, v in weights.items()
             if _checkpoint_key(p) in shapes and list(shapes[_checkpoint_key(p)]) != list(v.shape)]
    if missing or wrong:
        raise ValueError(f"checkpoint {prefix} does not fit model {model.name}: {len(missing)} variable(s) missing "
                         f"{missing[:3]}, {len(wrong)} of another shape {wrong[:3]}")
    for p, variable in weights.items():
        variable.assign(reader.get_tensor(_checkpoint_key(p)))
    _report_whole_model(model, prefix, "checkpoint")
    return prefix


def _report_whole_model(model, source: str, source_type: str) -> None:
    """Set ``model.init_report``: every variable loaded from ``source`` (detectors of this module only)."""
    if isinstance(model, RetinaNetDetector):
        pretrained.set_init_report(model, pretrained.init_report(model, source, pretrained.COMPONENTS, source_type))
    else:
        log.info("loaded %d weights of %s from %s %s", len(model.weights), model.name, source_type, source)


def _assign_matching(model, other, source):
    if len(model.weights) != len(other.weights):
        raise ValueError(f"{source} has {len(other.weights)} weights, model has {len(model.weights)}")
    for dst, src in zip(model.weights, other.weights):
        if tuple(dst.shape) != tuple(src.shape):
            raise ValueError(f"{source}: {src.path} has shape {tuple(src.shape)}, model expects {tuple(dst.shape)}")
        dst.assign(src)


# --------------------------------------------------------------------------- inference


def split_detections(boxes, scores, label_ids, num_detections) -> list[dict[str, np.ndarray]]:
    """Padded batch arrays (normalised yxyx ``boxes``, ``scores``, ``label_ids``) to per-image
    records ``{"boxes", "scores", "labels"}`` holding the first ``num_detections`` of each
    image, sorted by score, boxes clipped to [0, 1]."""
    boxes = np.asarray(boxes, np.float32)
    scores = np.asarray(scores, np.float32)
    label_ids = np.asarray(label_ids)
    num = np.asarray(num_detections).reshape(-1)
    out = []
    for i in range(boxes.shape[0]):
        n = int(num[i])
        order = np.argsort(-scores[i, :n], kind="stable")
        out.append(
            {
                "boxes": np.clip(boxes[i, :n][order], 0.0, 1.0).astype(np.float32),
                "scores": scores[i, :n][order].astype(np.float32),
                "labels": label_ids[i, :n][order].astype(np.int32),
            }
        )
    return out


def postprocess_detections(predictions: dict, image_size: int | tuple[int, int]) -> list[dict[str, np.ndarray]]:
    """Turn decoded model output into per-image numpy dicts in project conventions.

    ``predictions`` is what ``model.predict_on_batch``/``model.predict`` returns
    (``boxes`` pixel yxyx, ``confidence``, ``labels`` indices, ``num_detections``).
    Each result has ``boxes`` (N, 4) normalised ``[ymin, xmin, ymax, xmax]``,
    ``scores`` (N,) and ``labels`` (N,) label ids (1, 2, 4), sorted by score.
    """
    h, w = (image_size, image_size) if np.isscalar(image_size) else image_size
    scale = np.asarray([h, w, h, w], np.float32)
    return split_detections(np.asarray(predictions["boxes"], np.float32) / scale, predictions["confidence"],
                            indices_to_label_ids(np.asarray(predictions["labels"])), predictions["num_detections"])


def detect(model, images) -> list[dict[str, np.ndarray]]:
    """Run ``model`` on a batch of ``[B, S, S, 3]`` images (uint8 or float in [0, 255])."""
    images = tf.cast(images, tf.float32)
    preds = model.predict_on_batch(images)
    return postprocess_detections(preds, tuple(images.shape[1:3]))


def count_params(model: keras.Model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))
