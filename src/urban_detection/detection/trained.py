"""A trained detector together with what made it (config, provenance, step, MLflow run).

``save_trained``/``load_trained`` store it as a folder: ``weights.weights.h5`` (every
variable, BatchNorm statistics included) and ``model.json`` (the metadata). The model
is rebuilt from its own stored config, so loaded weights always match their arch and
image size. No Kedro here; :mod:`urban_detection.datasets.detector` wraps these.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from urban_detection import files

WEIGHTS_FILE = "weights.weights.h5"
META_FILE = "model.json"


@dataclass
class TrainedDetector:
    """A Keras RetinaNet with its weights and the record of how they were made."""

    model: Any
    config: dict
    provenance: dict
    step: int
    run_id: str | None = None
    summary: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.config.get("name"))

    @property
    def arch(self) -> str:
        return str(self.config["model"]["arch"])

    @property
    def image_size(self) -> int:
        return int(self.config["model"]["image_size"])

    @property
    def fingerprint(self) -> str:
        return str(self.provenance["fingerprint"])

    def metadata(self) -> dict:
        return {"name": self.name, "arch": self.arch, "image_size": self.image_size, "step": int(self.step),
                "run_id": self.run_id, "provenance": self.provenance, "config": self.config,
                "summary": self.summary}

    def predict(self, images, score_threshold: float | None = None, batch_size: int = 8):
        """Detections of uint8 RGB ``images`` of any size (one image, a batch or a list), as the
        export returns them: :class:`~urban_detection.detection.detections.Detections` with label
        ids 1/2/4, normalised yxyx boxes and scores at or above ``score_threshold`` (default: the
        render threshold, :data:`~urban_detection.detection.detections.DEFAULT_SCORE_THRESHOLD`)."""
        from urban_detection.detection.detections import DEFAULT_SCORE_THRESHOLD, predict_images

        threshold = DEFAULT_SCORE_THRESHOLD if score_threshold is None else float(score_threshold)
        return predict_images(self.model, images, image_size=self.image_size, score_threshold=threshold,
                              batch_size=batch_size)

    def __repr__(self) -> str:
        return (f"TrainedDetector({self.name}: {self.arch} at {self.image_size} px, step {self.step}, "
                f"fingerprint {self.fingerprint[:12]})")


def save_trained(trained: TrainedDetector, folder: str | Path) -> None:
    """Write the weights and ``model.json`` into ``folder``, swapped in together (atomically)."""
    with files.atomic_dir(folder) as tmp:
        trained.model.save_weights(str(Path(tmp) / WEIGHTS_FILE))
        (Path(tmp) / META_FILE).write_text(json.dumps(trained.metadata(), indent=2, default=str))


def read_metadata(folder: str | Path) -> dict:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no trained model in {folder} ({META_FILE} missing): train it first")
    return json.loads(path.read_text())


def load_trained(folder: str | Path) -> TrainedDetector:
    """Rebuild the detector from its stored config and load its weights (built straight from the
    weights file, so the load is logged as what it is, never as a random initialisation)."""
    from urban_detection.detection.model import build_detector

    folder = Path(folder)
    meta = read_metadata(folder)
    spec = meta["config"]["model"]
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"no weights in {folder} ({WEIGHTS_FILE} missing): train it again")
    model = build_detector(spec["arch"], image_size=int(spec["image_size"]), weights=str(weights),
                           **(spec.get("overrides") or {}))
    return TrainedDetector(model=model, config=meta["config"], provenance=meta["provenance"], step=int(meta["step"]),
                           run_id=meta.get("run_id"), summary=meta.get("summary") or {})
