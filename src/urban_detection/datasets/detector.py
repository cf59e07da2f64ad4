"""Datasets of trained models: checkpoints folder, trained detector, export.

``{experiment}.checkpoints`` (load only) hands the train node a
:class:`~urban_detection.detection.checkpoints.CheckpointStore`: TensorFlow writes its
checkpoints itself during training (every N steps, resumable), so the node gets the
folder rather than returning the checkpoints. ``{experiment}.model`` is the trained
detector (weights + config + provenance); ``{experiment}.export`` is what a serving
system reads (``model.keras`` and a TF SavedModel). Their ``kedro viz`` previews read
``model.json`` / ``export_info.json`` only (no model is built).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io import DatasetError
from kedro_datasets._typing import JSONPreview

from urban_detection.datasets.base import PathDataset
from urban_detection import files
from urban_detection.datasets.folders import FolderDataset
from urban_detection.detection.checkpoints import CheckpointStore
from urban_detection.detection.trained import META_FILE, TrainedDetector, load_trained, read_metadata, save_trained

EXPORT_INFO = "export_info.json"


class CheckpointsDataset(FolderDataset):
    """Load-only: the experiment's checkpoint root, one subfolder per model fingerprint."""

    def load(self) -> CheckpointStore:
        return CheckpointStore(self._path.resolve())

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self._path}: TensorFlow writes the checkpoints during training; nothing is saved here")


class DetectorDataset(PathDataset[TrainedDetector, TrainedDetector]):
    """A trained detector: ``weights.weights.h5`` + ``model.json`` (config, provenance, step, MLflow run)."""

    def load(self) -> TrainedDetector:
        if not (self._path / META_FILE).is_file():
            raise DatasetError(f"no trained model in {self._path}: run `kedro run --pipeline=train` for it first")
        return load_trained(self._path)

    def save(self, data: TrainedDetector) -> None:
        save_trained(data, self._path)

    def _exists(self) -> bool:
        return (self._path / META_FILE).is_file()

    def metadata_only(self) -> dict:
        """``model.json`` without building the model (fingerprint checks)."""
        return read_metadata(self._path)

    def preview(self) -> JSONPreview:
        """What ``print(catalog.load(...))`` shows, and how the model was made (provenance, best checkpoint,
        MLflow run), from ``model.json`` without building the model."""
        meta = read_metadata(self._path)
        shell = TrainedDetector(model=None, config=meta["config"], provenance=meta["provenance"],
                                step=int(meta["step"]), run_id=meta.get("run_id"))
        summary = meta.get("summary") or {}
        return JSONPreview(json.dumps({
            "repr": repr(shell), "path": str(self._path), "step": shell.step, "mlflow_run_id": shell.run_id,
            "best": summary.get("best"), "last_step": summary.get("last_step"),
            "provenance": meta["provenance"]}, indent=2, default=str))


def export_info(trained: TrainedDetector) -> dict:
    """``export_info.json`` of an export of ``trained``: step, fingerprint, MLflow run, the files, and
    the provenance and config that made it (render checks them against the current run)."""
    return {"experiment": trained.name, "step": int(trained.step), "arch": trained.arch,
            "image_size": trained.image_size, "fingerprint": trained.fingerprint, "run_id": trained.run_id,
            "keras": "model.keras", "saved_model": "saved_model", "provenance": trained.provenance,
            "config": trained.config}


class ExportDataset(PathDataset[TrainedDetector, Any]):
    """``model.keras`` + ``saved_model/`` (uint8 images in, OD API outputs out) + ``export_info.json``.

    Loading returns the SavedModel as an
    :class:`~urban_detection.detection.export.ExportedDetector` (``detector(images)``),
    with ``.info`` (:func:`export_info`: step, fingerprint, paths, provenance, config) and ``.keras_path``.
    """

    def info(self) -> dict:
        """``export_info.json`` (step, fingerprint, MLflow run), ``{}`` before the first export."""
        info_path = self._path / EXPORT_INFO
        return json.loads(info_path.read_text()) if info_path.is_file() else {}

    def load(self):
        from urban_detection.detection.export import ExportedDetector

        info_path = self._path / EXPORT_INFO
        if not info_path.is_file():
            raise DatasetError(f"no export in {self._path}: run `kedro run --pipeline=evaluate` first")
        detector = ExportedDetector(self._path / "saved_model")
        detector.info = json.loads(info_path.read_text())
        detector.keras_path = str(self._path / "model.keras")
        return detector

    def save(self, data: TrainedDetector) -> None:
        from urban_detection.detection.export import export_model

        with files.atomic_dir(self._path) as tmp:
            export_model(data.model, tmp, image_size=data.image_size)
            (Path(tmp) / EXPORT_INFO).write_text(json.dumps(export_info(data), indent=2))

    def _exists(self) -> bool:
        return (self._path / EXPORT_INFO).is_file()

    def preview(self) -> JSONPreview:
        """``export_info.json`` (experiment, step, fingerprint, MLflow run, files) and the files' sizes."""
        info = {k: v for k, v in json.loads((self._path / EXPORT_INFO).read_text()).items() if k != "config"}
        sizes = {p.name: round(sum(f.stat().st_size for f in ([p] if p.is_file() else p.rglob("*"))
                                   if f.is_file()) / 1e6, 3)
                 for p in sorted(self._path.iterdir()) if not p.name.startswith(".")}
        return JSONPreview(json.dumps({"path": str(self._path), **info, "MB": sizes}, indent=2, default=str))
