"""What a trained model was made from: fingerprints of its resolved config and training data.

A model's fingerprint combines (1) the config fingerprint: every setting of the resolved
experiment config that changes the trained weights (operational settings such as how
often to log are left out, see :data:`OPERATIONAL_KEYS`), (2) the data fingerprint:
the train split's trip names and frame image hashes (:func:`urban_detection.waymo.trips.data_fingerprint`)
and (3) the parent model's fingerprint for a fine-tuned experiment. Checkpoints live in a
folder per fingerprint, so a changed config or changed data never resumes, reuses or
reports an old model.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Mapping

# Settings that do not change the weights a run produces.
OPERATIONAL_KEYS = {
    "train": ("log_every", "keep_checkpoints", "val_batches", "val_coco_frames", "log_checkpoints",
              "log_keras_model", "best_metric", "checkpoint_every"),
}
SHORT = 12


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def weight_relevant_config(cfg: Mapping) -> dict:
    """The config without its name and operational settings."""
    out = copy.deepcopy(dict(cfg))
    out.pop("name", None)
    for section, keys in OPERATIONAL_KEYS.items():
        for key in keys:
            (out.get(section) or {}).pop(key, None)
    return out


def config_fingerprint(cfg: Mapping) -> str:
    return hashlib.sha256(_canonical(weight_relevant_config(cfg)).encode()).hexdigest()


def model_fingerprint(config_sha: str, data_sha: str, parent_sha: str | None = None) -> str:
    """One hex digest for config + data (+ parent model)."""
    return hashlib.sha256(f"{config_sha}|{data_sha}|{parent_sha or ''}".encode()).hexdigest()


def provenance(cfg: Mapping, data: Mapping, parent: Mapping | None = None) -> dict:
    """The provenance record stored with a model: fingerprints plus what they summarise."""
    config_sha = config_fingerprint(cfg)
    parent_sha = (parent or {}).get("fingerprint")
    return {
        "fingerprint": model_fingerprint(config_sha, data["sha"], parent_sha),
        "config_fingerprint": config_sha,
        "data_fingerprint": data["sha"],
        "parent_fingerprint": parent_sha,
        "train_trips": data.get("trips"),
        "train_frames": data.get("frames"),
    }


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


def explain_mismatch(stored: Mapping, expected: Mapping, stored_cfg: Mapping | None = None,
                     expected_cfg: Mapping | None = None) -> str:
    """A sentence naming what changed between a stored model's provenance and the current one."""
    reasons = []
    if stored.get("config_fingerprint") != expected.get("config_fingerprint"):
        diff = config_differences(stored_cfg or {}, expected_cfg or {}) if stored_cfg and expected_cfg else []
        reasons.append("the config changed" + (f" ({'; '.join(diff[:5])})" if diff else ""))
    if stored.get("data_fingerprint") != expected.get("data_fingerprint"):
        reasons.append(f"the training data changed ({stored.get('train_trips')} trips / {stored.get('train_frames')} "
                       f"frames then, {expected.get('train_trips')} / {expected.get('train_frames')} now)")
    if stored.get("parent_fingerprint") != expected.get("parent_fingerprint"):
        reasons.append("the parent model changed")
    return ", ".join(reasons) or "the fingerprints differ"
