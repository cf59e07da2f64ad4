"""Initial weights from a model file or checkpoint of the same arch (fine-tuning), and checkpoint keys.

Preset weights (KerasHub presets) are loaded by :mod:`urban_detection.detection.pretrained`;
this module loads whole models written by the project itself.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import keras
import tensorflow as tf

from urban_detection.detection import pretrained
from urban_detection.detection.model.detector import RetinaNetDetector

log = logging.getLogger(__name__)


def is_model_file(weights) -> bool:
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


def checkpoint_key(path: str) -> str:
    """The key of the variable at Keras ``path`` in a ``tf.train.Checkpoint(weights=checkpoint_weights(model))``."""
    escaped = path.replace(".", "..").replace("/", ".S")  # tf.train.Checkpoint's escaping of names
    return f"weights/{escaped}/.ATTRIBUTES/VARIABLE_VALUE"


def load_initial_weights(model: keras.Model, path: str | os.PathLike) -> str:
    """Initialise ``model`` from another experiment of the same arch (fine-tuning).

    ``path`` may be a ``.weights.h5`` file, a ``.keras`` file, a checkpoint
    directory written by :func:`~urban_detection.detection.train.train` (its newest checkpoint is used)
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
                assign_matching(model, other, path)
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
    missing = [p for p in weights if checkpoint_key(p) not in shapes]
    wrong = [f"{p} {shapes[checkpoint_key(p)]} vs {list(v.shape)}" for p, v in weights.items()
             if checkpoint_key(p) in shapes and list(shapes[checkpoint_key(p)]) != list(v.shape)]
    if missing or wrong:
        raise ValueError(f"checkpoint {prefix} does not fit model {model.name}: {len(missing)} variable(s) missing "
                         f"{missing[:3]}, {len(wrong)} of another shape {wrong[:3]}")
    for p, variable in weights.items():
        variable.assign(reader.get_tensor(checkpoint_key(p)))
    _report_whole_model(model, prefix, "checkpoint")
    return prefix


def _report_whole_model(model, source: str, source_type: str) -> None:
    """Set ``model.init_report``: every variable loaded from ``source`` (detectors of this module only)."""
    if isinstance(model, RetinaNetDetector):
        pretrained.set_init_report(model, pretrained.init_report(model, source, pretrained.COMPONENTS, source_type))
    else:
        log.info("loaded %d weights of %s from %s %s", len(model.weights), model.name, source_type, source)


def assign_matching(model, other, source):
    if len(model.weights) != len(other.weights):
        raise ValueError(f"{source} has {len(other.weights)} weights, model has {len(model.weights)}")
    for dst, src in zip(model.weights, other.weights):
        if tuple(dst.shape) != tuple(src.shape):
            raise ValueError(f"{source}: {src.path} has shape {tuple(src.shape)}, model expects {tuple(dst.shape)}")
        dst.assign(src)
