"""Initial weights from a KerasHub preset, like the Object Detection API's fine-tune from a detector.

A preset is a KerasHub preset name (downloaded from Kaggle: needs the network) or a
local directory written by ``save_to_preset``. What it holds decides what is copied
into the project's detector (:class:`~.model.RetinaNetDetector`):

* a detector task (``task.json`` names an ``ObjectDetector``, e.g.
  ``retinanet_resnet50_fpn_coco``): image encoder, FPN, box head and the conv tower
  of the classification head; the classification head's last layer stays *new*
  (the project's classes, kernel N(0, 0.01), bias ``-log((1 - p) / p)``);
* a RetinaNet backbone (``RetinaNetBackbone``): image encoder and FPN -- what the TF2
  Object Detection API's ``fine_tune_checkpoint_type: detection`` restores (e.g.
  ``keras_hub.models.Backbone.from_preset("retinanet_resnet50_fpn_coco").save_to_preset(dir)``);
* an image encoder (e.g. ``ResNetBackbone`` ``resnet_50_imagenet``): the image encoder.

Everything else keeps its fresh initialisation. Each model variable is counted as
loaded or initialised in a report (:func:`init_report`, stored as
``model.init_report`` and logged); a preset variable that does not fit (another
name or shape) raises ``ValueError`` naming it, so nothing is skipped silently.
No Kedro imports.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import keras
import keras_hub
from keras_hub.src.models.feature_pyramid_backbone import FeaturePyramidBackbone
from keras_hub.src.models.object_detector import ObjectDetector
from keras_hub.src.utils.preset_utils import check_config_class, check_file_exists, load_json

log = logging.getLogger(__name__)

# The parts of a RetinaNet detector, in the order they are reported.
COMPONENTS = ("image_encoder", "fpn", "box_head", "class_tower", "class_logits")
_NAMES = {
    "image_encoder": "image encoder",
    "fpn": "FPN",
    "box_head": "box head",
    "class_tower": "classification head's conv tower",
    "class_logits": "classification head's last layer",
}


def offline_message(preset: str, err: Exception) -> str:
    """The error text for a preset name that cannot be downloaded (no network at run time)."""
    return (
        f"could not load the KerasHub preset {preset!r}: it needs the network (Kaggle hub) and the run is "
        "offline. Download it once where the network is available, e.g. "
        f"keras_hub.models.RetinaNetObjectDetector.from_preset({preset!r}).save_to_preset('<dir>') for a detector "
        f"or keras_hub.models.Backbone.from_preset({preset!r}).save_to_preset('<dir>') for a backbone, and pass "
        f"that local directory as weights. ({type(err).__name__}: {err})"
    )


def _detector_task_class(preset: str) -> type | None:
    """The ``ObjectDetector`` class named by the preset's ``task.json``, or ``None`` (no detector task)."""
    if not check_file_exists(preset, "task.json"):
        return None
    task_cls = check_config_class(load_json(preset, "task.json"))
    return task_cls if issubclass(task_cls, ObjectDetector) else None


def load_preset(preset: str) -> keras.Model:
    """The preset as a float32 KerasHub object: its detector task if it has one, else its backbone.

    A local directory is read as is; a name goes to the hub and raises ``RuntimeError``
    with :func:`offline_message` when that fails.
    """
    preset = str(preset)
    if Path(preset).is_dir():
        try:
            task_cls = _detector_task_class(preset)
            if task_cls is not None:
                return task_cls.from_preset(preset, dtype="float32")
            return keras_hub.models.Backbone.from_preset(preset, dtype="float32")
        except Exception as err:  # noqa: BLE001 - turn any loader failure into one message
            raise RuntimeError(f"could not load the KerasHub preset directory {preset}: {err}") from err
    try:
        backbone = keras_hub.models.Backbone.from_preset(preset, dtype="float32")
    except Exception as err:  # noqa: BLE001
        raise RuntimeError(offline_message(preset, err)) from err
    task_cls = _detector_task_class(preset)  # the files are in the hub's cache by now
    return backbone if task_cls is None else task_cls.from_preset(preset, dtype="float32")


def _head_parts(head) -> tuple[list, list]:
    """A ``PredictionHead``'s variables split into its conv tower and its last (logits) layer."""
    last = {id(v) for v in head.prediction_layer.weights}
    return [v for v in head.weights if id(v) not in last], list(head.prediction_layer.weights)


def model_components(model) -> dict[str, list]:
    """Every variable of a RetinaNet detector, by component; raises if one belongs to none."""
    class_tower, class_logits = _head_parts(model.classification_head)
    parts = {
        "image_encoder": list(model.backbone.image_encoder.weights),
        "fpn": list(model.backbone.feature_pyramid.weights),
        "box_head": list(model.box_head.weights),
        "class_tower": class_tower,
        "class_logits": class_logits,
    }
    covered = {id(v) for vs in parts.values() for v in vs}
    stray = [v.path for v in model.weights if id(v) not in covered]
    if stray or len(covered) != len(model.weights):
        raise ValueError(f"model {model.name} has variables outside {COMPONENTS}: {stray[:5]}")
    return parts


def preset_components(source) -> dict[str, list]:
    """The variables a preset object holds, by component (only the components it has)."""
    backbone = source.backbone if isinstance(source, ObjectDetector) else source
    parts: dict[str, list] = {}
    if hasattr(backbone, "image_encoder") and hasattr(backbone, "feature_pyramid"):
        parts["image_encoder"] = list(backbone.image_encoder.weights)
        parts["fpn"] = list(backbone.feature_pyramid.weights)
    elif isinstance(backbone, FeaturePyramidBackbone) and backbone.pyramid_outputs:
        parts["image_encoder"] = list(backbone.weights)
    else:
        raise ValueError(f"a {type(backbone).__name__} preset has no image encoder with pyramid outputs (P2..P5)")
    if isinstance(source, ObjectDetector):
        if not (hasattr(source, "box_head") and hasattr(source, "classification_head")):
            raise ValueError(f"a {type(source).__name__} preset is not a RetinaNet detector (no box/class heads)")
        parts["box_head"] = list(source.box_head.weights)
        parts["class_tower"], parts["class_logits"] = _head_parts(source.classification_head)
    return parts


def _by_name(variables, where: str) -> dict[str, Any]:
    """Variables keyed by ``<layer>/<variable>``, the part of the path both models share."""
    named = {"/".join(v.path.split("/")[-2:]): v for v in variables}
    if len(named) != len(variables):
        raise ValueError(f"{where}: variable names are not unique, cannot match them by name")
    return named


def copy_component(source_vars, model_vars, component: str, source_name: str) -> int:
    """Assign each preset variable to the model variable of the same name; returns how many.

    Raises ``ValueError`` naming the variables when names or shapes differ.
    """
    what = _NAMES[component]
    src = _by_name(source_vars, f"preset {source_name} ({what})")
    dst = _by_name(model_vars, f"model ({what})")
    missing, extra = sorted(set(dst) - set(src)), sorted(set(src) - set(dst))
    if missing or extra:
        raise ValueError(
            f"preset {source_name} does not match the {what} of this model: {len(missing)} variable(s) missing "
            f"from the preset {missing[:5]}, {len(extra)} not in the model {extra[:5]}"
        )
    wrong = [f"{k} {tuple(src[k].shape)} vs {tuple(v.shape)}" for k, v in dst.items()
             if tuple(src[k].shape) != tuple(v.shape)]
    if wrong:
        raise ValueError(
            f"preset {source_name} does not match the {what} of this model: {len(wrong)} variable(s) of "
            f"another shape (preset vs model), first {wrong[:5]}"
        )
    for key, variable in dst.items():
        variable.assign(src[key].numpy())
    return len(dst)


def check_box_coding(source, model, source_name: str) -> None:
    """Raise unless the preset's anchors and box encoding equal the model's (the box head depends on them)."""
    def settings(m):
        ag, le = m.anchor_generator, m.label_encoder
        return {
            "min_level": int(ag.min_level),
            "max_level": int(ag.max_level),
            "num_scales": int(ag.num_scales),
            "aspect_ratios": [float(r) for r in ag.aspect_ratios],
            "anchor_size": float(ag.anchor_size),
            "encoding_format": le.encoding_format,
            "box_variance": [float(b) for b in le.box_variance],
        }

    got, want = settings(source), settings(model)
    diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    if diff:
        raise ValueError(f"preset {source_name} encodes boxes differently from this model (preset, model): {diff}")


def init_report(model, source: str | None = None, loaded: tuple[str, ...] = (), source_type: str | None = None,
                **extra) -> dict[str, Any]:
    """Counts of loaded and freshly initialised variables (and parameters) of ``model``, by component."""
    by_component = {}
    for component, variables in model_components(model).items():
        n = len(variables)
        by_component[component] = {
            "loaded": n if component in loaded else 0,
            "initialised": 0 if component in loaded else n,
            "params": int(sum(math.prod(v.shape) for v in variables)),
        }
    report = {
        "source": source,
        "source_type": source_type,
        "loaded": sum(c["loaded"] for c in by_component.values()),
        "initialised": sum(c["initialised"] for c in by_component.values()),
        "loaded_params": sum(c["params"] for c in by_component.values() if c["loaded"]),
        "initialised_params": sum(c["params"] for c in by_component.values() if c["initialised"]),
        "by_component": by_component,
    }
    report.update(extra)
    return report


def describe(report: dict[str, Any]) -> str:
    """One log line for an :func:`init_report`."""
    parts = report["by_component"]
    loaded = ", ".join(f"{k} {v['loaded']}" for k, v in parts.items() if v["loaded"])
    initialised = ", ".join(f"{k} {v['initialised']}" for k, v in parts.items() if v["initialised"])
    return (f"initial weights from {report['source'] or 'random initialisation'}"
            f"{' (' + report['source_type'] + ')' if report['source_type'] else ''}: "
            f"loaded {report['loaded']} variables ({report['loaded_params']:,} parameters) [{loaded or '-'}], "
            f"initialised {report['initialised']} ({report['initialised_params']:,} parameters) [{initialised or '-'}]")


def set_init_report(model, report: dict[str, Any]) -> dict[str, Any]:
    """Store ``report`` as ``model.init_report`` (a plain dict, outside Keras' tracking) and log it."""
    object.__setattr__(model, "init_report", report)
    log.info("%s: %s", model.name, describe(report))
    return report


def transfer(model, source, source_name: str) -> dict[str, Any]:
    """Copy what the preset object ``source`` (from :func:`load_preset`) holds into ``model``.

    Returns (and stores as ``model.init_report``) the report. The classification
    head's last layer is never copied (the preset's classes are not the project's),
    whatever its shape.
    """
    parts = preset_components(source)
    targets = model_components(model)
    if "box_head" in parts:
        check_box_coding(source, model, source_name)
    loaded = []
    for component in COMPONENTS:
        if component in parts and component != "class_logits":
            copy_component(parts[component], targets[component], component, source_name)
            loaded.append(component)
    extra = {"num_classes": int(model.num_classes)}
    if isinstance(source, ObjectDetector):
        extra["source_num_classes"] = int(source.num_classes)
    return set_init_report(model, init_report(model, source_name, tuple(loaded), type(source).__name__, **extra))
