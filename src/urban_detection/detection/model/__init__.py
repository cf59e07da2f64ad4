"""KerasHub RetinaNet detectors for vehicles, pedestrians and cyclists.

The parts, one concept each:

* :mod:`.conventions`: label ids, class indices, box format, input scale;
* :mod:`.archs`: the architectures (:data:`ARCHS`) and :func:`arch_config`;
* :mod:`.backbone`, :mod:`.nms`, :mod:`.detector`: the custom Keras classes
  :class:`DetectorBackbone`, :class:`MultiClassNMS`, :class:`RetinaNetDetector`;
* :mod:`.build`: :func:`build_detector` and its parts;
* :mod:`.weights`: initial weights from the project's own model files and checkpoints;
* :mod:`.postprocess`: model output to per-image detections (:func:`detect`).

Importing this package registers the Keras classes (package ``urban_detection``), so
``mlflow.keras.load_model(...)`` and ``keras.saving.load_model(...)`` work after
``import urban_detection.detection.model``.
"""
from .archs import ARCHS, RESNET50_ENCODER, arch_config
from .backbone import DetectorBackbone
from .build import build_detector, build_image_encoder, count_params, set_l2_regularization
from .conventions import (
    BOX_FORMAT,
    CLASS_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INDEX_TO_LABEL,
    KERAS_PACKAGE,
    LABEL_TO_INDEX,
    indices_to_label_ids,
    label_ids_to_indices,
)
from .detector import RetinaNetDetector
from .nms import MultiClassNMS
from .postprocess import detect, postprocess_detections, split_detections
from .weights import assign_matching, checkpoint_key, checkpoint_weights, is_model_file, load_initial_weights

__all__ = [
    "ARCHS",
    "assign_matching",
    "BOX_FORMAT",
    "CLASS_NAMES",
    "DetectorBackbone",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INDEX_TO_LABEL",
    "KERAS_PACKAGE",
    "LABEL_TO_INDEX",
    "MultiClassNMS",
    "RESNET50_ENCODER",
    "RetinaNetDetector",
    "arch_config",
    "build_detector",
    "build_image_encoder",
    "checkpoint_key",
    "checkpoint_weights",
    "count_params",
    "detect",
    "indices_to_label_ids",
    "is_model_file",
    "label_ids_to_indices",
    "load_initial_weights",
    "postprocess_detections",
    "set_l2_regularization",
    "split_detections",
]
