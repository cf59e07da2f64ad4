"""What a trained model was made from, and whether a stored model is the one the current run makes.

A model's fingerprint combines (1) the config fingerprint: every setting of the resolved
experiment config that decides the exported weights, including how the exported checkpoint
is chosen (``train.best_metric``, ``val_coco_frames``, ``checkpoint_every``, and ``val_batches``
when a validation loss chooses); operational settings such as how often to log are left out,
see :data:`OPERATIONAL_KEYS`, (2) the data fingerprint: the train split's trip names and frame
image hashes (:func:`urban_detection.waymo.trips.data_fingerprint`), (3) the selection
fingerprint: the same of the val split, whose frames choose the exported checkpoint, and (4) the
parent model's fingerprint for a fine-tuned experiment. Checkpoints live in a folder per
fingerprint, so a changed config, changed data or a changed selection never resumes, reuses or
reports an old model.

:func:`model_provenance` computes the record from the trips and the split manifest (the train
node stores it with the model); :func:`check_provenance` raises :class:`StaleModelError` naming
what changed when a stored or exported model does not match it (evaluate and render)::

    check_provenance(trained, config, trips, split_manifest)                          # evaluate
    check_provenance(StoredModel.of_export(export.info), config, trips, split_manifest, exported=True)
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from urban_detection.waymo.trips import Trips, data_fingerprint

# Settings that do not change the weights a run exports (val_batches does when a loss chooses the checkpoint).
OPERATIONAL_KEYS = {
    "train": ("log_every", "keep_checkpoints", "val_batches", "log_checkpoints", "log_keras_model"),
}
# Settings that choose which checkpoint is exported (named as such when they change).
SELECTION_SETTINGS = ("train.best_metric", "train.val_coco_frames", "train.checkpoint_every", "train.val_batches")
# What a stored model must share with the current run (and its parent's fingerprint, when the parent is known).
CHECKED = ("config_fingerprint", "data_fingerprint", "selection_fingerprint")
SHORT = 12


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def operational_keys(cfg: Mapping) -> dict[str, tuple[str, ...]]:
    """:data:`OPERATIONAL_KEYS` of ``cfg``: without ``train.val_batches`` when a validation loss
    chooses the exported checkpoint (the loss batches then decide it)."""
    from urban_detection.detection.best_metric import selects_by_loss

    train = cfg.get("train")
    if isinstance(train, Mapping) and selects_by_loss(train.get("best_metric")):
        return {**OPERATIONAL_KEYS, "train": tuple(k for k in OPERATIONAL_KEYS["train"] if k != "val_batches")}
    return OPERATIONAL_KEYS


def weight_relevant_config(cfg: Mapping) -> dict:
    """The config without its name and operational settings."""
    out = copy.deepcopy(dict(cfg))
    out.pop("name", None)
    for section, keys in operational_keys(cfg).items():
        for key in keys:
            (out.get(section) or {}).pop(key, None)
    return out


def config_fingerprint(cfg: Mapping) -> str:
    return hashlib.sha256(_canonical(weight_relevant_config(cfg)).encode()).hexdigest()


def model_fingerprint(config_sha: str, data_sha: str, parent_sha: str | None = None,
                      selection_sha: str | None = None) -> str:
    """One hex digest for config + data (+ parent model) + selection frames."""
    return hashlib.sha256(f"{config_sha}|{data_sha}|{parent_sha or ''}|{selection_sha or ''}".encode()).hexdigest()


def provenance(cfg: Mapping, data: Mapping, parent: Mapping | None = None, selection: Mapping | None = None) -> dict:
    """The provenance record stored with a model: fingerprints plus what they summarise.

    ``data`` and ``selection``: :func:`~urban_detection.waymo.trips.data_fingerprint` of the train
    and of the val split; ``parent``: the parent model's provenance (fine-tuning)."""
    config_sha = config_fingerprint(cfg)
    parent_sha = (parent or {}).get("fingerprint")
    selection = selection or {}
    return {
        "fingerprint": model_fingerprint(config_sha, data["sha"], parent_sha, selection.get("sha")),
        "config_fingerprint": config_sha,
        "data_fingerprint": data["sha"],
        "selection_fingerprint": selection.get("sha"),
        "parent_fingerprint": parent_sha,
        "train_trips": data.get("trips"),
        "train_frames": data.get("frames"),
        "val_trips": selection.get("trips"),
        "val_frames": selection.get("frames"),
    }


def model_provenance(cfg: Mapping, trips: Trips, split_manifest: pd.DataFrame, parent: Mapping | None = None) -> dict:
    """:func:`provenance` of a model of ``cfg`` trained on the train split and chosen on the val split."""
    return provenance(cfg, data_fingerprint(trips, split_manifest, "train"), parent,
                      data_fingerprint(trips, split_manifest, "val"))


def short(fingerprint: str | None) -> str:
    return (fingerprint or "")[:SHORT]


def config_differences(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every weight-relevant setting that differs (nested keys dotted)."""
    old, new = weight_relevant_config(old) if not prefix else old, weight_relevant_config(new) if not prefix else new
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_differences(a, b, path + ".")
        elif _canonical(a) != _canonical(b):
            out.append(f"{path}: {a!r} -> {b!r}")
    return out


def _config_reasons(stored_cfg: Mapping | None, expected_cfg: Mapping | None) -> list[str]:
    """"the checkpoint selection changed (...)" and/or "the config changed (...)", with the settings."""
    diff = config_differences(stored_cfg, expected_cfg) if stored_cfg and expected_cfg else []
    chosen = [d for d in diff if d.split(":", 1)[0] in SELECTION_SETTINGS]
    other = [d for d in diff if d not in chosen]
    reasons = [f"the checkpoint selection changed ({'; '.join(chosen)})"] if chosen else []
    if other or not chosen:
        reasons.append("the config changed" + (f" ({'; '.join(other[:5])})" if other else ""))
    return reasons


def explain_mismatch(stored: Mapping, expected: Mapping, stored_cfg: Mapping | None = None,
                     expected_cfg: Mapping | None = None) -> str:
    """A sentence naming what changed between a stored model's provenance and the current one."""
    reasons = []
    if stored.get("config_fingerprint") != expected.get("config_fingerprint"):
        reasons += _config_reasons(stored_cfg, expected_cfg)
    if stored.get("data_fingerprint") != expected.get("data_fingerprint"):
        reasons.append(f"the training data changed ({stored.get('train_trips')} trips / {stored.get('train_frames')} "
                       f"frames then, {expected.get('train_trips')} / {expected.get('train_frames')} now)")
    if stored.get("selection_fingerprint") != expected.get("selection_fingerprint"):
        reasons.append(f"the selection frames changed (val trips: {stored.get('val_trips')} trips / "
                       f"{stored.get('val_frames')} frames then, {expected.get('val_trips')} / "
                       f"{expected.get('val_frames')} now)")
    if stored.get("parent_fingerprint") != expected.get("parent_fingerprint"):
        reasons.append("the parent model changed")
    return ", ".join(reasons) or "the fingerprints differ"


# --------------------------------------------------------------------------- is a stored model current?


class StaleModelError(RuntimeError):
    """The stored model was not trained on the current config and data."""


@dataclass(frozen=True)
class StoredModel:
    """What :func:`check_provenance` reads of a model (a :class:`~.trained.TrainedDetector` has it all)."""

    name: str
    step: int | None
    fingerprint: str | None
    provenance: Mapping
    config: Mapping

    @classmethod
    def of_export(cls, info: Mapping) -> StoredModel:
        """The model an export was made of, from its ``export_info.json`` (``experiment``, ``step``,
        ``fingerprint``, ``provenance``, ``config``; an export of an older version lacks the last two)."""
        return cls(str(info.get("experiment")), info.get("step"), info.get("fingerprint"),
                   info.get("provenance") or {}, info.get("config") or {})


def check_provenance(model: Any, config: dict, trips: Trips, split_manifest: pd.DataFrame,
                     parent: dict | None = None, *, exported: bool = False) -> None:
    """Raise :class:`StaleModelError` naming what changed when ``model`` (a trained detector or a
    :class:`StoredModel`) does not come from ``config``, the current train split and val (selection)
    split (arch and image size are part of the config). ``parent``: the parent model's provenance, checked
    too when given. ``exported``: ``model`` is an export (render)."""
    stored = model.provenance or {}
    expected = model_provenance(config, trips, split_manifest,
                                parent if parent is not None else {"fingerprint": stored.get("parent_fingerprint")})
    if stored and all(stored.get(k) == expected.get(k) for k in (*CHECKED, "parent_fingerprint")):
        return
    reason = (explain_mismatch(stored, expected, model.config, config) if stored
              else "it records no provenance (made by an older version)")
    kind, fix, pipelines = (("exported", "Train and export it first", "--pipelines=train,evaluate") if exported
                            else ("stored", "Train it first", "--pipeline=train"))
    together = "train, evaluate and render pipelines" if exported else "train and evaluate pipelines"
    raise StaleModelError(
        f"the {kind} {model.name} model ({short(model.fingerprint)}, step {model.step}) does not match the current "
        f"run: {reason}. {fix}: kedro run {pipelines} --params \"train.experiments={model.name}\" (or run the "
        f"{together} together)"
    )
