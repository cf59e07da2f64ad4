"""Where an experiment's training checkpoints live: one folder per model fingerprint.

``<root>/<fingerprint[:12]>/`` holds the tf.train checkpoints of one (config, data,
parent) combination and ``mlflow_run_id.txt``, the MLflow run that training logs into,
so an interrupted run resumes into the same folder and run, while a changed config or
changed data starts a new folder (a new model) instead of resuming the old one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from urban_detection import files

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
