"""Where an experiment's training checkpoints live: one folder per model fingerprint.

``<root>/<fingerprint[:12]>/`` holds the tf.train checkpoints of one (config, data,
parent) combination and ``mlflow_run_id.txt``, the MLflow run that training logs into,
so an interrupted run resumes into the same folder and run, while a changed config or
changed data starts a new folder (a new model) instead of resuming the old one. The
folder also keeps the run's :class:`TrainingRecord` (curves and best checkpoint).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from urban_detection import files
from urban_detection.detection.best_metric import metric_direction
from urban_detection.detection.checkpoint_eval import BestCheckpoint

RUN_ID_FILE = "mlflow_run_id.txt"


@dataclass(frozen=True)
class CheckpointStore:
    root: Path

    def folder(self, fingerprint: str) -> Path:
        path = Path(self.root) / fingerprint[:12]
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run_id(self, fingerprint: str) -> str | None:
        path = Path(self.root) / fingerprint[:12] / RUN_ID_FILE
        return path.read_text().strip() or None if path.is_file() else None

    def remember_run(self, fingerprint: str, run_id: str) -> None:
        files.write_text(self.folder(fingerprint) / RUN_ID_FILE, run_id)

    def fingerprints(self) -> list[str]:
        """Short fingerprints that have a folder, oldest first."""
        root = Path(self.root)
        if not root.is_dir():
            return []
        return [p.name for p in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime) if p.is_dir()]


RECORD_FILE = "training_record.json"
BEST_WEIGHTS = "best_weights.npz"


@dataclass
class TrainingRecord:
    """What a model's checkpoint folder remembers besides the tf.train checkpoints: the logged
    train and validation history and the best checkpoint by a validation metric, with that
    checkpoint's weights (``best_weights.npz``: the rotation of tf.train checkpoints may delete
    it). Saved at every checkpoint, so a resumed run keeps its curves and its best."""

    folder: Path
    best: BestCheckpoint
    history: list = field(default_factory=list)
    val_history: list = field(default_factory=list)

    @classmethod
    def open(cls, folder: str | Path, metric: str, mode: str | None = None) -> "TrainingRecord":
        """The record in ``folder`` (a fresh one when none), judging by ``metric`` (in its own direction
        unless ``mode`` says otherwise); a record of another metric or direction starts a new best."""
        folder = Path(folder)
        mode = mode or metric_direction(metric)
        path = folder / RECORD_FILE
        if not path.is_file():
            return cls(folder, BestCheckpoint(metric=metric, mode=mode))
        state = json.loads(path.read_text())
        best = BestCheckpoint.from_dict(state["best"])
        if (best.metric, best.mode) != (metric, mode):  # another selection rule: judge again from now on
            best = BestCheckpoint(metric=metric, mode=mode)
        return cls(folder, best, state.get("history", []), state.get("val_history", []))

    def save(self) -> None:
        state = {"best": self.best.to_dict(), "history": self.history, "val_history": self.val_history}
        files.write_text(self.folder / RECORD_FILE, json.dumps(state, indent=1, default=float))

    def keep_best_weights(self, model) -> None:
        with files.atomic_write(self.folder / BEST_WEIGHTS) as f:
            np.savez(f, *model.get_weights())

    def restore_best_weights(self, model) -> bool:
        """Load the best checkpoint's weights into ``model``; False when none was kept."""
        path = self.folder / BEST_WEIGHTS
        if self.best.best_step is None or not path.is_file():
            return False
        with np.load(path) as arrays:
            model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])
        return True
