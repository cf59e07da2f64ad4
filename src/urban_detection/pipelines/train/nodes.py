"""Nodes of the train pipeline.

``resolve_configs`` validates every selected experiment before any training starts.
``make_train_node(name)`` builds the node of one experiment's namespace: it trains
(resuming from the latest checkpoint when there is one), writes checkpoints to
``data/06_models/<name>/checkpoints`` and logs everything to the experiment's MLflow
child run. Unselected experiments pass their folder through untouched.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import pandas as pd

from urban_detection.detection.config import resolve_experiments
from urban_detection.pipelines.common import load_partition

log = logging.getLogger(__name__)


def resolve_configs(train_params: dict) -> dict[str, dict]:
    """One complete, validated config per selected experiment (saved as YAML files)."""
    configs = resolve_experiments(train_params)
    log.info("experiments to train: %s", ", ".join(configs))
    return configs


def split_paths(split_manifest: pd.DataFrame, frame_index: pd.DataFrame, split: str) -> list[str]:
    """The trip TFRecords of one split."""
    trips = set(split_manifest.loc[split_manifest.split == split, "trip"])
    paths = sorted(frame_index.loc[frame_index.trip.isin(trips), "path"].unique())
    if not paths:
        raise ValueError(f"split {split!r} has no trip TFRecord")
    return paths



def make_train_node(name: str) -> Callable:
    """The training node of experiment ``name`` (a named function, for ``kedro viz``)."""

    def train_experiment(configs: dict, split_manifest: pd.DataFrame, frame_index: pd.DataFrame,
                         paths: dict, parent_result: dict | None = None) -> dict:
        from urban_detection.training import latest_checkpoint, run_experiment

        model_dir = Path(paths["models"]) / name
        result = {"experiment": name, "model_dir": str(model_dir),
                  "checkpoint_dir": str(model_dir / "checkpoints"), "selected": name in configs}
        if name not in configs:
            log.info("experiment %s not selected in train.experiments: skipped", name)
            return result
        cfg = load_partition(configs[name])
        initial_weights = None
        if cfg.get("parent"):
            parent = parent_result or {}
            # The parent's final weights file holds every variable (BatchNorm statistics included).
            weights = parent.get("weights") or str(Path(parent.get("model_dir", "")) / "final.weights.h5")
            initial_weights = weights if Path(weights).is_file() else latest_checkpoint(parent.get("checkpoint_dir"))
            if initial_weights is None:
                raise ValueError(
                    f"experiment {name!r} fine-tunes from {cfg['parent']!r}, which has no trained weights in "
                    f"{parent.get('model_dir')}; add {cfg['parent']!r} to train.experiments or train it first"
                )
        result.update(run_experiment(
            cfg,
            train_paths=split_paths(split_manifest, frame_index, "train"),
            val_paths=split_paths(split_manifest, frame_index, "val"),
            model_dir=model_dir,
            reporting_dir=Path(paths["reporting"]) / name,
            initial_weights=initial_weights,
        ))
        return result

    train_experiment.__name__ = f"train_{name}"
    train_experiment.__qualname__ = train_experiment.__name__
    return train_experiment
