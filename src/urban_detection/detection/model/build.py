"""Building detectors from an arch of :data:`~.archs.ARCHS`: parts, regularisation, initial weights."""
from __future__ import annotations

import threading
from typing import Any

import keras
import keras_hub
import numpy as np
from keras_hub.src.models.retinanet.retinanet_label_encoder import RetinaNetLabelEncoder

from urban_detection.detection import pretrained
from urban_detection.detection.model.archs import arch_config
from urban_detection.detection.model.backbone import DetectorBackbone
from urban_detection.detection.model.conventions import BOX_FORMAT
from urban_detection.detection.model.detector import RetinaNetDetector
from urban_detection.detection.model.nms import MultiClassNMS
from urban_detection.detection.model.weights import is_model_file, load_initial_weights

# Keras builds a functional subclass by rewriting ``__bases__`` of its classes
# (``keras.src.models.model.inject_functional_model_class``), on every instance.
# Two threads doing it at once (Kedro's ThreadRunner loading two models) break
# the class hierarchy for a moment: "super(type, obj): obj must be an instance
# or subtype of type", "a __bases__ item causes an inheritance cycle". So the
# models of this package are built one at a time per process.
_BUILD_LOCK = threading.RLock()


def build_image_encoder(cfg: dict[str, Any], weights: str | None = None):
    """The ResNet image encoder of an arch config: random, or with the image encoder of a preset.

    ``weights``: a KerasHub preset name or local preset directory (see
    :mod:`urban_detection.detection.pretrained`).
    """
    with _BUILD_LOCK:
        encoder = keras_hub.models.ResNetBackbone(**cfg["encoder"])
        if weights is not None:
            source = pretrained.load_preset(weights)  # builds the preset's model
            parts = pretrained.preset_components(source)
            pretrained.copy_component(parts["image_encoder"], encoder.weights, "image_encoder", str(weights))
    return encoder


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
    the backbone, see :mod:`urban_detection.detection.pretrained`), or a ``.weights.h5`` file / tf.train
    checkpoint of the same arch (whole model, see :func:`~.weights.load_initial_weights`).
    What was loaded and what initialised is in ``model.init_report`` (a dict:
    ``source``, ``loaded``, ``initialised``, ``by_component``, ...), also
    logged. ``overrides`` replace keys of :data:`~.archs.ARCHS` (e.g. ``head_convs=1``,
    ``max_level=5``). ``image_size`` fixes the square input size (``None``: the arch's ``default_image_size``; ``0``:
    any size). Build under a distribution strategy scope and after
    :func:`~urban_detection.detection.precision.configure_precision` when needed.
    Thread-safe: builds of concurrent threads take turns.
    """
    with _BUILD_LOCK:
        return _build_detector(arch, image_size, num_classes, weights, **overrides)


def _build_detector(arch, image_size, num_classes, weights, **overrides):
    cfg = arch_config(arch, **overrides)
    image_size = cfg["default_image_size"] if image_size is None else image_size
    model_file = is_model_file(weights)
    # a preset is read first: a missing one fails before the model is built
    source = None if weights is None or model_file else pretrained.load_preset(weights)
    backbone = _backbone(cfg, image_size)
    anchors = _anchor_generator(cfg)
    model = RetinaNetDetector(
        backbone=backbone,
        num_classes=num_classes,
        bounding_box_format=BOX_FORMAT,
        anchor_generator=anchors,
        label_encoder=_label_encoder(cfg, anchors),
        use_prediction_head_norm=cfg["head_norm"],
        classification_head_prior_probability=cfg["prior_probability"],
        pre_logits_num_conv_layers=cfg["head_convs"],
        head_filters=cfg["head_filters"],
        prediction_decoder=_prediction_decoder(cfg),
        name=arch,
    )
    set_l2_regularization(model, cfg["l2"])
    if weights is None:
        pretrained.set_init_report(model, pretrained.init_report(model))
    elif model_file:
        load_initial_weights(model, weights)
    else:
        pretrained.transfer(model, source, str(weights))
    return model


def _backbone(cfg: dict[str, Any], image_size: int) -> DetectorBackbone:
    """A random backbone of ``cfg`` for square ``image_size`` inputs (``0``: any size)."""
    encoder = build_image_encoder(cfg)
    shape = (image_size, image_size, 3) if image_size else (None, None, 3)  # 0: any size
    return DetectorBackbone(
        encoder,
        min_level=cfg["min_level"],
        max_level=cfg["max_level"],
        use_p5=cfg["use_p5"],
        fpn_filters=cfg["fpn_filters"],
        use_fpn_batch_norm=cfg["fpn_batch_norm"],
        image_shape=shape,
    )


def _anchor_generator(cfg: dict[str, Any]):
    return keras_hub.layers.AnchorGenerator(
        BOX_FORMAT,
        min_level=cfg["min_level"],
        max_level=cfg["max_level"],
        num_scales=cfg["num_scales"],
        aspect_ratios=list(cfg["aspect_ratios"]),
        anchor_size=cfg["anchor_size"],
        dtype="float32",
    )


def _label_encoder(cfg: dict[str, Any], anchors) -> RetinaNetLabelEncoder:
    return RetinaNetLabelEncoder(
        anchors,
        bounding_box_format=BOX_FORMAT,
        encoding_format="center_xywh",
        positive_threshold=cfg["positive_threshold"],
        negative_threshold=cfg["negative_threshold"],
        box_matcher_force_match_for_each_col=cfg["force_match"],
        dtype="float32",
    )


def _prediction_decoder(cfg: dict[str, Any]) -> MultiClassNMS:
    return MultiClassNMS(
        bounding_box_format=BOX_FORMAT,
        from_logits=True,
        iou_threshold=cfg["nms_iou"],
        confidence_threshold=cfg["score_threshold"],
        max_detections=cfg["max_detections"],
        max_detections_per_class=cfg["max_detections"],
        pre_nms_top_k=cfg["pre_nms_top_k"],
    )


def set_l2_regularization(model: keras.Model, l2: float) -> int:
    """Put an L2 penalty ``l2 * sum(w^2)`` on every conv/dense kernel; returns how many kernels."""
    count = 0
    reg = keras.regularizers.L2(l2) if l2 else None
    for variable in model.trainable_weights:
        if variable.path.endswith("kernel"):
            variable.regularizer = reg
            count += 1
    return count


def count_params(model: keras.Model) -> int:
    """The number of trainable parameters of ``model``."""
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))
