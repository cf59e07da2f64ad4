"""The ownership hook covers every local file a catalog output writes, partitions included."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from kedro.io import DataCatalog

from urban_detection import files
from urban_detection.hooks.ownership import OutputOwnershipHooks


def partitioned_catalog(folder: Path) -> DataCatalog:
    return DataCatalog.from_config({"coco_files": {
        "type": "partitions.PartitionedDataset", "path": str(folder),
        "dataset": {"type": "json.JSONDataset"}, "filename_suffix": ".json"}})


def test_a_users_file_among_the_partitions_stops_the_save_and_stays(tmp_path: Path):
    folder = tmp_path / "07_model_output" / "fast_cpu"
    folder.mkdir(parents=True)
    mine = folder / "test_detections.json"  # the user's file, where a partition would go
    mine.write_text('{"mine": true}')
    catalog = partitioned_catalog(folder)
    hooks = OutputOwnershipHooks()
    hooks.after_catalog_created(catalog)
    data = {"test_detections": [{"image_id": 1}], "test_ground_truth": {"images": []}}
    with pytest.raises(files.ForeignFileError, match=r"test_detections\.json.*'coco_files'"):
        hooks.before_dataset_saved("coco_files", data, None)
    assert mine.read_text() == '{"mine": true}'

    mine.rename(tmp_path / "moved.json")  # moved away by the user: saved, and the partitions are the project's
    hooks.before_dataset_saved("coco_files", data, None)
    catalog.save("coco_files", data)
    hooks.after_dataset_saved("coco_files", data, None)
    assert json.loads(mine.read_text()) == [{"image_id": 1}]
    assert files.is_owned(mine) and files.is_owned(folder / "test_ground_truth.json")
    hooks.before_dataset_saved("coco_files", data, None)  # the project's own partitions: saved again
