"""Folders filled by a node's FolderWrite (synthetic_store, trips), the user's input folder, and the
guard that keeps the ``ingest_source`` dataset and an ``ingest.source_dir`` parameter on one folder."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DatasetError

from urban_detection.datasets import FolderDataset, FolderWrite, SourceFolderDataset, TripsDataset
from urban_detection.datasets.folders import source_params
from urban_detection.waymo.trips import Trips


def test_a_folder_write_runs_on_the_datasets_own_folder(tmp_path):
    seen = []

    def write(folder: Path) -> dict:
        seen.append(folder)
        (folder / "a.tfrecord").write_bytes(b"x" * 2000)
        return {"files": ["a.tfrecord"]}

    dataset = FolderDataset(str(tmp_path / "out" / "synthetic"))
    dataset.save(FolderWrite(write, "test files"))
    assert seen == [(tmp_path / "out" / "synthetic").resolve()]
    assert dataset.load() == seen[0] and dataset.exists()
    preview = dataset.preview()
    assert preview["columns"] == ["file", "MB"] and preview["data"] == [["a.tfrecord", 0.002]]
    with pytest.raises(DatasetError, match="FolderWrite"):
        dataset.save({"not": "a write"})


def test_trips_saved_from_a_folder_write_keep_their_report(tmp_path):
    def ingest(folder: Path) -> Trips:
        (folder / "trip_a.tfrecord").write_bytes(b"records")
        index = pd.DataFrame({"trip": ["trip_a"] * 3, "frame": [0, 5, 10], "n_vehicle": [1, 2, 3],
                              "path": [str(folder / "trip_a.tfrecord")] * 3})
        return Trips(root=folder, index=index, report={"trips": 1, "frames_written": 3})

    dataset = TripsDataset(str(tmp_path / "trips"))
    dataset.save(FolderWrite(ingest, "trips"))
    trips = dataset.load()
    assert trips.report == {"trips": 1, "frames_written": 3} and len(trips) == 3
    assert json.loads((tmp_path / "trips" / "report.json").read_text())["trips"] == 1
    preview = dataset.preview(nrows=2)
    assert preview["columns"] == ["trip", "frame", "n_vehicle", "path"]
    assert preview["data"] == [["trip_a", 0, 1, "trip_a.tfrecord"], ["trip_a", 5, 2, "trip_a.tfrecord"]]


def test_the_input_folder_is_read_only_and_previews_its_sources(tmp_path):
    (tmp_path / "segment-1_with_camera_labels.tfrecord").write_bytes(b"v1")
    (tmp_path / "notes.txt").write_text("mine")
    dataset = SourceFolderDataset(str(tmp_path))
    assert dataset.load() == tmp_path
    assert dataset.preview()["data"] == [["segment-1_with_camera_labels.tfrecord", 0.0]]
    with pytest.raises(DatasetError, match="never writes"):
        dataset.save("x")
    assert SourceFolderDataset(str(tmp_path / "missing")).preview()["data"][0][0].endswith("no folder yet")


def test_a_source_dir_parameter_must_name_the_input_folder(tmp_path):
    source = tmp_path / "raw"
    assert source_params(source, {"camera": "FRONT"}) == {"camera": "FRONT", "source_dir": str(source)}
    assert source_params(source, {"source_dir": str(tmp_path / "x" / ".." / "raw")})["source_dir"] == str(source)
    with pytest.raises(ValueError, match=r"ingest.source_dir .*elsewhere.* ingest_source reads"):
        source_params(source, {"source_dir": str(tmp_path / "elsewhere")})
