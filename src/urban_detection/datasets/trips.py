"""Datasets of the ingested trips.

``trips`` and ``eval_trips`` are folders of trip TFRecords (one per trip, written by
:mod:`urban_detection.waymo.ingest`, possibly by parallel or Ray workers, which is why the
files cannot pass through memory) with their frame index. The ingest node returns a
:class:`~urban_detection.datasets.folders.FolderWrite`: saving it converts the trips into
this dataset's folder, then writes the frame index (trip file names relative to the folder)
and the ingest's report (``report.json``) beside them. Loading returns a
:class:`~urban_detection.waymo.trips.Trips` (with ``.report``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import DatasetError
from kedro_datasets._typing import TablePreview

from urban_detection.datasets.base import PathDataset
from urban_detection import files
from urban_detection.datasets.folders import FolderDataset, FolderWrite
from urban_detection.waymo.trips import Trips

INDEX_FILE = "frame_index.parquet"
REPORT_FILE = "report.json"
PREVIEW_COLUMNS = ("trip", "frame", "time_of_day", "weather", "n_vehicle", "n_pedestrian", "n_cyclist", "brightness",
                   "path")

__all__ = ["FolderDataset", "INDEX_FILE", "REPORT_FILE", "TripsDataset"]


class TripsDataset(PathDataset[Trips, Trips]):
    """Trip TFRecords with their frame index (``<path>/frame_index.parquet``) and the report of
    the ingest that wrote them (``<path>/report.json``)."""

    def load(self) -> Trips:
        index_path = self._path / INDEX_FILE
        if not index_path.is_file():
            raise DatasetError(f"no ingested trips in {self._path} ({INDEX_FILE} missing): run the ingest pipeline")
        root = self._path.resolve()
        index = pd.read_parquet(index_path)
        index["path"] = [str(root / p) for p in index["path"]]
        report_path = self._path / REPORT_FILE
        report = json.loads(report_path.read_text()) if report_path.is_file() else None
        return Trips(root=root, index=index, report=report)

    def save(self, data: Trips | FolderWrite) -> None:
        if isinstance(data, FolderWrite):  # the ingest itself, into this folder
            data = data(self._path)
        if not isinstance(data, Trips):
            raise DatasetError(f"TripsDataset saves Trips (or a FolderWrite returning them), got {type(data).__name__}")
        root = self._path.resolve()
        index = data.index.copy()
        rel = []
        for p in index["path"].astype(str):
            path = Path(p).resolve()
            if path.parent != root:
                raise DatasetError(f"trip file {path} is not inside the trips folder {root}")
            if not path.is_file():
                raise DatasetError(f"trip file {path} listed in the frame index does not exist")
            rel.append(path.name)
        index["path"] = rel
        with files.atomic_path(self._path / INDEX_FILE) as tmp:
            index.to_parquet(tmp, index=False)
        if data.report is not None:
            files.write_text(self._path / REPORT_FILE, json.dumps(data.report, indent=2, default=str))

    def _exists(self) -> bool:
        return (self._path / INDEX_FILE).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "index": INDEX_FILE}

    def preview(self, nrows: int = 10) -> TablePreview:
        """The head of the frame index: trip, frame, conditions, objects per class, brightness, trip file."""
        index = pd.read_parquet(self._path / INDEX_FILE)
        head = index[[c for c in PREVIEW_COLUMNS if c in index.columns]].head(int(nrows))
        return TablePreview(json.loads(head.to_json(orient="split", index=True, double_precision=4)))
