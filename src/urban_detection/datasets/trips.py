"""Datasets of the ingested trips.

``trip_store`` (a :class:`FolderDataset`) hands the ingest node the folder it converts trips into (each trip one
TFRecord written by :mod:`urban_detection.waymo.ingest`, possibly by parallel or Ray
workers, which is why the files cannot pass through memory). ``trips`` is the result:
saving writes the frame index (trip file names relative to the folder) and the ingest
beside the trip files; loading returns a :class:`~urban_detection.waymo.trips.Trips`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from urban_detection import files
from urban_detection.waymo.trips import Trips

INDEX_FILE = "frame_index.parquet"


class FolderDataset(AbstractDataset[None, Path]):
    """Load-only: a folder that a node writes many files into itself (created when missing).

    Used where the files cannot pass through memory: ingest's parallel (or Ray) workers
    write one trip TFRecord each, the synthetic generator writes segment files.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> Path:
        self._path.mkdir(parents=True, exist_ok=True)
        return self._path.resolve()

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._path} is a folder handed to a node; the node's results are saved elsewhere")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class TripsDataset(AbstractDataset[Trips, Trips]):
    """Trip TFRecords with their frame index (``<path>/frame_index.parquet``)."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> Trips:
        index_path = self._path / INDEX_FILE
        if not index_path.is_file():
            raise DatasetError(f"no ingested trips in {self._path} ({INDEX_FILE} missing): run the ingest pipeline")
        root = self._path.resolve()
        index = pd.read_parquet(index_path)
        index["path"] = [str(root / p) for p in index["path"]]
        return Trips(root=root, index=index)

    def save(self, data: Trips) -> None:
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

    def _exists(self) -> bool:
        return (self._path / INDEX_FILE).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "index": INDEX_FILE}
