"""Nodes of the train pipeline.

``resolve_configs`` validates every selected experiment before any training starts.
``make_train_node(name)`` builds the training node of one experiment's namespace: it
fingerprints the config, the training data and the val (selection) frames, trains into the checkpoint folder of
that fingerprint (resuming an interrupted run, starting a new model when anything
changed) and returns the trained detector with its provenance. With ``train.ray_address``
the same training runs as a Ray job (:mod:`urban_detection.cluster`) that the node waits for.
"""
from __future__ import annotations

import logging
from typing import Callable

import pandas as pd

from urban_detection.cluster.options import from_train_params, launch_options
from urban_detection.detection.checkpoints import CheckpointStore
from urban_detection.detection.config import resolve_experiments
from urban_detection.detection.provenance import model_provenance, short
from urban_detection.detection.trained import TrainedDetector
from urban_detection.waymo.trips import Trips

log = logging.getLogger(__name__)


def resolve_configs(train_params: dict) -> dict[str, dict]:
    """One complete, validated config per selected experiment (saved as YAML files)."""
    configs = resolve_experiments(train_params)
    from_train_params(train_params)  # where they train: checked before any training too
    log.info("experiments to train: %s", ", ".join(configs))
    return configs


def preview_augmentations(config: dict, trips: Trips, split_manifest: pd.DataFrame):
    """A grid of augmented training frames of the experiment."""
    from urban_detection.training import preview_figure

    return preview_figure(config, trips.split_paths(split_manifest, "train"))


def _split_paths(trips: Trips, split_manifest: pd.DataFrame, split: str) -> list[str]:
    paths = trips.split_paths(split_manifest, split)
    if not paths:
        raise ValueError(f"split {split!r} has no trip TFRecord")
    return paths


def make_train_node(name: str) -> Callable:
    """The training node of experiment ``name`` (a named function, for ``kedro viz``)."""

    def train_experiment(config: dict, trips: Trips, split_manifest: pd.DataFrame, checkpoints: CheckpointStore,
                         ray_address: str | None = None, resources: dict | None = None, workers: int = 1,
                         parent: TrainedDetector | None = None) -> TrainedDetector:
        """Train (or resume) the model of this config and data.

        ``checkpoints`` is the experiment's checkpoint root handed over by its dataset:
        TensorFlow writes the checkpoints of the model's fingerprint there during training.
        ``ray_address``, ``resources``, ``workers``: where it trains (``train.*``; here when no address).
        """
        from urban_detection.training import run_experiment

        if config.get("parent") and parent is None:
            raise ValueError(f"experiment {name!r} fine-tunes from {config['parent']!r}, which has no trained model")
        record = model_provenance(config, trips, split_manifest, parent.provenance if parent is not None else None)
        fp = record["fingerprint"]
        known = checkpoints.fingerprints()
        if short(fp) in known:
            log.info("%s: resuming model %s (same config and data)", name, short(fp))
        elif known:
            log.info("%s: config or data changed since the models %s; training a new model %s", name,
                     ", ".join(known), short(fp))
        train_paths, val_paths = _split_paths(trips, split_manifest, "train"), _split_paths(trips, split_manifest, "val")
        options = launch_options(ray_address, resources, workers)
        if options.on_ray:
            from urban_detection.cluster.job import make_job
            from urban_detection.cluster.remote import train_on_ray

            return train_on_ray(make_job(config, train_paths=train_paths, val_paths=val_paths, checkpoints=checkpoints,
                                         provenance=record, run_id=checkpoints.run_id(fp), parent=parent), options)
        return run_experiment(
            config,
            train_paths=train_paths,
            val_paths=val_paths,
            checkpoint_dir=checkpoints.folder(fp),
            provenance=record,
            run_id=checkpoints.run_id(fp),
            on_run=lambda run_id: checkpoints.remember_run(fp, run_id),
            parent=parent,
        )

    train_experiment.__name__ = f"train_{name}"
    train_experiment.__qualname__ = train_experiment.__name__
    return train_experiment
