"""ingest_eval_trips: the val/test trips at every frame from their raw segments, train untouched;
leaks into train stop it; a user's file in the folder survives; trips that left val/test go."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

from urban_detection.pipelines.evaluate.nodes import ingest_eval_trips
from urban_detection.waymo.trips import SplitLeakError
from urban_detection.waymo.ingest import ingest_files
from urban_detection.waymo.synthetic import write_synthetic_trips
from urban_detection.waymo.trips import Trips

FRAMES, STRIDE = 12, 4
INGEST = {"image_size": [96, 64], "camera": "FRONT", "frame_stride": STRIDE, "workers": 1}


@pytest.fixture(scope="module")
def segments(tmp_path_factory):
    src = tmp_path_factory.mktemp("source")
    write_synthetic_trips(src, n_trips=4, frames_per_trip=FRAMES, width=192, height=128, seed=3)
    return src


def ingested(source, out) -> Trips:
    result = ingest_files(source, out, workers=1, size=(64, 96), stride=STRIDE, progress=False)
    index = result.index_frame()
    return Trips(root=out, index=index)


def manifest_of(trips: Trips, splits: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"trip": trips.names, "split": splits})


def test_val_and_test_trips_get_every_frame_and_train_keeps_its_stride(segments, tmp_path):
    trips = ingested(segments, tmp_path / "trips")
    assert len(trips) == 4 * FRAMES // STRIDE
    manifest = manifest_of(trips, ["train", "train", "val", "test"])
    store = tmp_path / "eval"
    store.mkdir()
    (store / "notes.txt").write_text("mine")
    eval_trips, report = ingest_eval_trips(trips, manifest, store, {**INGEST, "source_dir": str(segments)},
                                           {"splits": ["val", "test"], "frame_stride": 1})
    assert eval_trips.names == trips.names[2:]
    assert report["frame_stride"] == 1
    assert report["splits"]["val"]["frames"] == FRAMES and report["splits"]["test"]["frames"] == FRAMES
    assert sorted(eval_trips.index["frame"].unique()) == list(range(FRAMES))
    # the ingested (strided) frames are among the evaluation frames, pixel for pixel
    strided = trips.frames(manifest, "val")["image_hash"]
    assert set(strided) <= set(eval_trips.frames(manifest, "val")["image_hash"])

    # a new split: trip 2 goes to train, trip 1 to val. Its old evaluation file goes, the user's file stays.
    manifest2 = manifest_of(trips, ["train", "val", "train", "test"])
    eval2, report2 = ingest_eval_trips(trips, manifest2, store, {**INGEST, "source_dir": str(segments)},
                                       {"splits": ["val", "test"], "frame_stride": None})
    assert eval2.names == [trips.names[1], trips.names[3]]
    assert report2["frame_stride"] == STRIDE and report2["splits"]["val"]["frames"] == FRAMES // STRIDE
    assert not (store / f"{trips.names[2]}.tfrecord").exists()
    assert (store / "notes.txt").read_text() == "mine"


def test_a_train_segment_under_a_val_name_is_a_leak(segments, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(segments, src)
    first = sorted(src.glob("*.tfrecord"))[0]
    shutil.copy(first, src / "zz_copy.tfrecord")  # the same segment under a second trip name
    trips = ingested(src, tmp_path / "trips")
    splits = ["val" if t == "zz_copy" else "train" for t in trips.names]
    manifest = manifest_of(trips, splits)
    with pytest.raises(SplitLeakError, match="zz_copy"):
        ingest_eval_trips(trips, manifest, tmp_path / "eval", {**INGEST, "source_dir": str(src)},
                          {"splits": ["val", "test"], "frame_stride": 1})


def test_a_missing_source_is_named(segments, tmp_path):
    trips = ingested(segments, tmp_path / "trips")
    manifest = manifest_of(trips, ["train", "train", "val", "test"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no source in ingest.source_dir"):
        ingest_eval_trips(trips, manifest, tmp_path / "eval", {**INGEST, "source_dir": str(empty)},
                          {"splits": ["val", "test"], "frame_stride": 1})
