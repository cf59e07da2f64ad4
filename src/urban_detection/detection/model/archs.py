"""The detector architectures (:data:`ARCHS`) and their resolved configuration (:func:`arch_config`).

Three architectures are provided:

``retinanet_resnet50_fpn_coco``
    The layout of KerasHub's ``retinanet_resnet50_fpn_coco`` preset (torchvision's
    COCO RetinaNet-50 v1), so that preset loads into it (:mod:`urban_detection.detection.pretrained`):
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
    in its FPN and heads, so :class:`~.backbone.DetectorBackbone` and
    :class:`~.detector.RetinaNetDetector` subclass the KerasHub classes to make those
    widths configurable.

    Measured on the project's 2-core AMD EPYC (batch 8, train step only):
    43 img/s at 256 px, 28 img/s at 320 px in float32 (53 / 33 img/s with
    ``mixed_bfloat16``); a full run with the input pipeline and augmentation
    makes ~22 img/s at 320 px. Its training recipe is the ``fast_cpu``
    experiment's (``conf/base/parameters_train.yml``), which also sets
    ``head_norm``, ``positive_threshold`` and ``negative_threshold`` here
    through ``model.overrides``. From scratch, momentum SGD at 0.02 diverged
    (box loss blew up at step ~75).

The networks are built by :func:`~.build.build_detector`.
"""
from __future__ import annotations

import copy
from typing import Any

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

# Shared by every architecture: anchor matching (every box gets an anchor) and the outputs' post-processing.
MATCHING_AND_OUTPUT = dict(
    force_match=True,
    prior_probability=0.01,
    nms_iou=0.6,
    score_threshold=1e-8,
    max_detections=100,
    pre_nms_top_k=1000,
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
        **MATCHING_AND_OUTPUT,
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
        **MATCHING_AND_OUTPUT,
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
        **MATCHING_AND_OUTPUT,
        l2=0.0,
        default_image_size=320,
    ),
}
ARCHS["retinanet_small"] = ARCHS["retinanet_resnet18_fpn_small"]  # short alias


HEAD_NORM_GROUPS = 32  # KerasHub's prediction heads normalise with GroupNormalization(groups=32)


def arch_config(arch: str, **overrides) -> dict[str, Any]:
    """The resolved configuration of ``arch`` with ``overrides`` applied (unknown keys and a width the
    heads' GroupNorm cannot split, ``head_norm`` with ``head_filters`` not a multiple of 32, raise)."""
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
    if cfg["head_norm"] and int(cfg["head_filters"]) % HEAD_NORM_GROUPS:
        raise ValueError(f"head_norm needs head_filters to be a multiple of {HEAD_NORM_GROUPS} (the heads' "
                         f"GroupNorm groups), got {cfg['head_filters']}: set model.overrides.head_filters to "
                         f"{max(HEAD_NORM_GROUPS, int(cfg['head_filters']) // HEAD_NORM_GROUPS * HEAD_NORM_GROUPS)} "
                         f"or head_norm to false")
    return cfg
