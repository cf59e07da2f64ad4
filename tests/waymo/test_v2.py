"""Waymo v2 (Parquet) input: schema, source finding, v1/v2 equivalence, bad input, idempotence."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from urban_detection.waymo import ingest, v2
from urban_detection.waymo import synthetic as syn
from urban_detection.waymo.example import decode_example
from urban_detection.waymo.sources import find_sources, is_v2_segment

SIZE = (64, 96)  # output (height, width)
FRONT, FRONT_LEFT = 1, 2


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same two synthetic trips (8 frames, 160x96) written as v1 and as v2."""
    root = tmp_path_factory.mktemp("formats")
    v1_paths = syn.write_synthetic_trips(root / "v1", 2, 8, width=160, height=96, seed=5)
    v2_paths = syn.write_synthetic_trips(root / "v2", 2, 8, width=160, height=96, seed=5, format="v2")
    return v1_paths, v2_paths


def _examples(path: Path):
    return [decode_example(b) for b in _records(path)]


def _records(path: Path) -> list[bytes]:
    import tensorflow as tf

    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def _warned(caplog, path: Path, *parts: str) -> bool:
    msgs = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return any(str(path) in m and all(p in m for p in parts) for m in msgs)


def _segment(root: Path, name: str, frames: list[v2.FrameRows], row_group_size: int = 2) -> Path:
    return v2.write_segment(root, name, v2.component_tables(name, frames), row_group_size=row_group_size)


def _jpeg(seed: int, width: int = 80, height: int = 48) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def _box(cx, cy, sx, sy, t):
    return np.asarray([[cx, cy, sx, sy]], np.float64), np.asarray([t]), ["o"]


# --------------------------------------------------------------- layout
def test_written_components_follow_the_v2_schema(both):
    _, v2_paths = both
    seg = v2_paths[0]
    assert seg.parent.name == "camera_image" and is_v2_segment(seg)
    root, name = seg.parent.parent, seg.name
    image = pq.read_schema(root / "camera_image" / name)
    box = pq.read_schema(root / "camera_box" / name)
    stats = pq.read_schema(root / "stats" / name)
    keys = {"key.segment_context_name": pa.string(), "key.frame_timestamp_micros": pa.int64()}
    assert {n: image.field(n).type for n in image.names} == {
        **keys,
        "key.camera_name": pa.int8(),
        "[CameraImageComponent].image": pa.binary(),
        "[CameraImageComponent].pose_timestamp": pa.float64(),
    }
    assert {n: box.field(n).type for n in box.names} == {
        **keys,
        "key.camera_name": pa.int8(),
        "key.camera_object_id": pa.string(),
        "[CameraBoxComponent].box.center.x": pa.float64(),
        "[CameraBoxComponent].box.center.y": pa.float64(),
        "[CameraBoxComponent].box.size.x": pa.float64(),
        "[CameraBoxComponent].box.size.y": pa.float64(),
        "[CameraBoxComponent].type": pa.int8(),
    }
    assert {"[StatsComponent].time_of_day", "[StatsComponent].weather", "[StatsComponent].location"} <= set(
        stats.names
    )
    table = pq.read_table(root / "camera_image" / name)
    assert set(table.column("key.camera_name").to_pylist()) == {FRONT, FRONT_LEFT}
    assert set(table.column("key.segment_context_name").to_pylist()) == {seg.stem}
    assert table.num_rows == 16  # 8 frames x 2 cameras


def test_find_sources(tmp_path, both):
    v1_paths, v2_paths = both
    folder = tmp_path / "mixed"
    (folder / "camera_image").mkdir(parents=True)
    for p in v1_paths:
        os.link(p, folder / p.name)
    for p in v2_paths:
        os.link(p, folder / "camera_image" / p.name)
    (folder / "notes.txt").write_text("not a source")
    (folder / "camera_image" / "x.parquet.tmp1").write_bytes(b"")
    found = find_sources(folder)
    segments = sorted(folder / "camera_image" / p.name for p in v2_paths)
    assert found == sorted(folder / p.name for p in v1_paths) + segments
    assert find_sources(tmp_path / "mixed" / "camera_image") == []  # a component folder holds no source itself
    assert [ingest.trip_name(p) for p in found[2:]] == [p.stem for p in sorted(v2_paths)]
    assert ingest.detect_format(found[2]) == "v2" and ingest.detect_format(found[0]) == "raw"


# ---------------------------------------------------------- equivalence
@pytest.mark.parametrize("camera,stride", [("FRONT", 3), ("FRONT_LEFT", 2)])
def test_v1_and_v2_ingest_identically(tmp_path, both, camera, stride):
    v1_paths, v2_paths = both
    kw = dict(workers=1, camera=camera, stride=stride, size=SIZE, progress=False)
    r1 = ingest.ingest_files(v1_paths[0].parent, tmp_path / "o1", **kw)
    r2 = ingest.ingest_files(v2_paths[0].parent.parent, tmp_path / "o2", **kw)
    rep1, rep2 = r1.report, r2.report
    for key in ("files", "trips", "frames_read", "frames_selected", "frames_written", "objects_written", "skipped"):
        assert rep1[key] == rep2[key], key
    assert rep1["frames_read"] == 16 and rep1["frames_written"] == 2 * len(range(0, 8, stride))
    assert [t.format for t in r2.trips] == ["v2", "v2"]
    assert [t.trip for t in r2.trips] == sorted(p.stem for p in v2_paths)  # the segment (context) names
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("trip", "path")} for r in rows]  # noqa: E731
    assert strip(r1.index_rows) == strip(r2.index_rows)  # timestamps, conditions, counts, hashes, brightness
    for t1, t2 in zip(r1.trips, r2.trips):
        e1, e2 = _examples(Path(t1.output)), _examples(Path(t2.output))
        assert len(e1) == len(e2) > 0
        for a, b in zip(e1, e2):
            assert a.image == b.image  # the same JPEG bytes
            assert np.array_equal(a.boxes, b.boxes) and a.labels.tolist() == b.labels.tolist()
            assert a.source_id.split("/")[1] == b.source_id.split("/")[1]
            assert b.source_id.startswith(t2.trip + "/")


def test_row_order_and_row_groups_do_not_matter(tmp_path, both):
    _, v2_paths = both
    seg = v2_paths[1]
    root = tmp_path / "shuffled"
    rng = np.random.default_rng(0)
    for comp in v2.COMPONENTS:
        table = pq.read_table(seg.parent.parent / comp / seg.name)
        table = table.take(pa.array(rng.permutation(table.num_rows)))
        (root / comp).mkdir(parents=True)
        pq.write_table(table, root / comp / seg.name, row_group_size=3)
    assert pq.ParquetFile(root / "camera_image" / seg.name).num_row_groups == 6
    kw = dict(size=SIZE, stride=2)
    ref = ingest.convert_trip(seg, tmp_path / "ref.tfrecord", **kw)
    got = ingest.convert_trip(root / "camera_image" / seg.name, tmp_path / "got.tfrecord", **kw)
    assert got.frames_written == ref.frames_written == 4 and got.skipped == ref.skipped
    # boxes of one frame keep their file order only within the file; compare as sets of (box, label)
    for a, b in zip(_examples(tmp_path / "ref.tfrecord"), _examples(tmp_path / "got.tfrecord")):
        assert a.image == b.image
        pairs = lambda e: sorted(zip(map(tuple, e.boxes.tolist()), e.labels.tolist()))  # noqa: E731
        assert pairs(a) == pairs(b)
    assert [r["timestamp_micros"] for r in got.rows] == [r["timestamp_micros"] for r in ref.rows]


# ------------------------------------------------------------ bad input
def test_bad_v2_rows_are_counted_and_warned(tmp_path, caplog):
    t0 = 1_600_000_000_000_000
    good = _jpeg(0)
    frames = [
        v2.FrameRows(t0, {FRONT: good}, {FRONT: _box(40, 24, 20, 10, 1)}, {"time_of_day": "Night"}),
        v2.FrameRows(t0 + 1, {FRONT: b"\xff\xd8 not really a jpeg"}, {FRONT: _box(40, 24, 20, 10, 1)}),
        v2.FrameRows(t0 + 2, {FRONT: good}, {FRONT: _box(40, 24, 0, 10, 2)}),  # zero width
        v2.FrameRows(t0 + 3, {FRONT_LEFT: good}, {FRONT: _box(40, 24, 20, 10, 1)}),  # boxes, no FRONT image
        v2.FrameRows(t0 + 4, {FRONT: good}, {FRONT: _box(40, 24, 20, 10, 9)}),  # unknown type
    ]
    seg = _segment(tmp_path / "in", "bad_segment", frames)
    # a second image row for frame 0's camera and timestamp
    table = pq.read_table(seg)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), seg, row_group_size=2)
    # stats for frame 0 only
    stats = tmp_path / "in" / "stats" / seg.name
    pq.write_table(pq.read_table(stats).slice(0, 1), stats)
    res = ingest.ingest_files([seg], tmp_path / "out", workers=1, stride=1, size=(48, 80), progress=False)
    rep = res.report
    assert rep["frames_read"] == 5 and rep["frames_written"] == 3
    assert rep["skipped"] == {
        "bad_image": 1,
        "box_zero_area": 1,
        "no_camera_image": 1,
        "label_unknown": 1,
        "duplicate_image": 1,
    }
    assert [(e["record"], e["reason"]) for e in rep["errors"]] == [
        (None, "duplicate_image"),
        (1, "bad_image"),
        (3, "no_camera_image"),
    ]
    assert _warned(caplog, seg, "record 1", f"timestamp {t0 + 1}", "bad_image")
    assert _warned(caplog, seg, "record 2", "box_zero_area")
    assert _warned(caplog, seg, "record 3", f"timestamp {t0 + 3}", "no FRONT camera image", "FRONT_LEFT")
    assert _warned(caplog, seg, "record 4", "label_unknown")
    assert _warned(caplog, seg, "duplicate_image", str(t0))
    rows = res.index_rows
    assert [r["frame"] for r in rows] == [0, 2, 4] and [r["n_objects"] for r in rows] == [1, 0, 0]
    assert rows[0]["time_of_day"] == "Night"
    assert rows[1]["time_of_day"] == "Night"  # a frame without stats row takes the segment's
    assert rows[0]["timestamp_micros"] == t0 and rows[0]["trip"] == "bad_segment"


def test_null_values_in_box_rows(tmp_path, caplog):
    two = (np.asarray([[40, 24, 20, 10], [30, 20, 10, 10]], np.float64), np.asarray([1, 2]), ["a", "b"])
    frames = [v2.FrameRows(1000 + i, {FRONT: _jpeg(i)}, {FRONT: two}) for i in range(2)]
    seg = _segment(tmp_path / "in", "nulls", frames)
    box_path = tmp_path / "in" / "camera_box" / seg.name
    table = pq.read_table(box_path)
    for name, row in ((v2.BOX_CENTER_X, 1), (v2.BOX_TYPE, 2), (v2.KEY_TIMESTAMP, 3)):
        values = table.column(name).to_pylist()
        values[row] = None
        column = pa.array(values, table.schema.field(name).type)
        table = table.set_column(table.schema.get_field_index(name), name, column)
    pq.write_table(table, box_path)
    r = ingest.convert_trip(seg, tmp_path / "o.tfrecord", stride=1, size=(48, 80))
    assert r.frames_written == 2 and r.objects == {"vehicle": 1, "pedestrian": 0, "cyclist": 0}
    assert r.skipped == {"corrupt_record": 1, "box_non_finite": 1, "label_unknown": 1}
    assert _warned(caplog, seg, str(box_path), "1 null key value")
    assert _warned(caplog, seg, "record 0", "box_non_finite") and _warned(caplog, seg, "record 1", "label_unknown")


def test_segment_without_the_chosen_camera(tmp_path, caplog):
    t0 = 1_600_000_000_000_000
    frames = [v2.FrameRows(t0 + i, {FRONT_LEFT: _jpeg(i)}, {FRONT_LEFT: _box(40, 24, 20, 10, 1)}) for i in range(4)]
    seg = _segment(tmp_path / "in", "left_only", frames)
    r = ingest.convert_trip(seg, tmp_path / "o.tfrecord", camera="FRONT", stride=2, size=(48, 80))
    assert r.frames_read == 4 and r.frames_selected == 2 and r.frames_written == 0 and r.output is None
    assert r.skipped == {"no_camera_image": 2}
    assert _warned(caplog, seg, "record 0", "no FRONT camera image", "FRONT_LEFT")
    assert _warned(caplog, seg, "record 2", "no FRONT camera image")
    assert not (tmp_path / "o.tfrecord").exists()
    with pytest.raises(ValueError, match="No usable frame"):
        ingest.ingest_files(tmp_path / "in", tmp_path / "out", workers=1, progress=False)
    left = ingest.convert_trip(seg, tmp_path / "l.tfrecord", camera="FRONT_LEFT", stride=1, size=(48, 80))
    assert left.frames_written == 4 and left.objects["vehicle"] == 4 and left.skipped == {}


def test_unreadable_image_pages_lose_only_their_frames(tmp_path, caplog):
    t0 = 1_600_000_000_000_000
    frames = [v2.FrameRows(t0 + i, {FRONT: _jpeg(i)}, {FRONT: _box(40, 24, 20, 10, 1)}) for i in range(6)]
    seg = _segment(tmp_path / "in", "damaged", frames)
    pq.write_table(pq.read_table(seg), seg, row_group_size=2, use_dictionary=False)
    meta = pq.ParquetFile(seg).metadata
    chunk = meta.row_group(1).column(meta.schema.to_arrow_schema().names.index(v2.IMAGE))
    data = bytearray(seg.read_bytes())
    data[chunk.data_page_offset : chunk.data_page_offset + 12] = b"\xff" * 12  # page header of frames 2 and 3
    seg.write_bytes(bytes(data))
    r = ingest.convert_trip(seg, tmp_path / "o.tfrecord", stride=1, size=(48, 80))
    assert r.frames_read == 6 and r.frames_written == 4 and r.skipped == {"corrupt_record": 2}
    assert [e["record"] for e in r.errors] == [2, 3] and [row["frame"] for row in r.rows] == [0, 1, 4, 5]
    assert _warned(caplog, seg, "record 2", "FRONT image (row 2) unreadable", f"timestamp {t0 + 2}", "corrupt_record")


def test_missing_and_broken_component_files(tmp_path, caplog):
    t0 = 1_600_000_000_000_000
    frames = [
        v2.FrameRows(t0 + i, {FRONT: _jpeg(i)}, {FRONT: _box(40, 24, 20, 10, 2)}, {"weather": "rain"}) for i in range(3)
    ]
    root = tmp_path / "in"
    no_box = _segment(root, "no_box", frames)
    (root / "camera_box" / "no_box.parquet").unlink()
    no_stats = _segment(root, "no_stats", frames)
    (root / "stats" / "no_stats.parquet").unlink()
    bad_stats = _segment(root, "bad_stats", frames)
    (root / "stats" / "bad_stats.parquet").write_bytes(b"PAR1 but not really")
    not_parquet = _segment(root, "not_parquet", frames)
    not_parquet.write_bytes(b"\x00" * 100)
    wrong_columns = _segment(root, "wrong_columns", frames)
    pq.write_table(pa.table({"key.frame_timestamp_micros": [t0]}), root / "camera_box" / "wrong_columns.parquet")

    res = ingest.ingest_files(root, tmp_path / "out", workers=1, stride=1, size=(48, 80), progress=False)
    by_trip = {t.trip: t for t in res.trips}
    assert sorted(by_trip) == ["bad_stats", "no_box", "no_stats", "not_parquet", "wrong_columns"]
    assert by_trip["no_box"].skipped == {"missing_box_file": 1} and by_trip["no_box"].frames_written == 0
    assert _warned(caplog, no_box, "missing_box_file", str(root / "camera_box" / "no_box.parquet"))
    assert by_trip["no_stats"].skipped == {} and by_trip["no_stats"].frames_written == 3
    assert {r["weather"] for r in by_trip["no_stats"].rows} == {"unknown"}
    assert by_trip["bad_stats"].skipped == {"bad_component_file": 1} and by_trip["bad_stats"].frames_written == 3
    assert _warned(caplog, bad_stats, "bad_component_file", "bad_stats.parquet")
    assert by_trip["not_parquet"].skipped == {"bad_component_file": 1} and by_trip["not_parquet"].frames_written == 0
    assert by_trip["wrong_columns"].skipped == {"bad_component_file": 1}
    assert _warned(caplog, wrong_columns, "[CameraBoxComponent].box.center.x")
    assert res.report["skipped"] == {"missing_box_file": 1, "bad_component_file": 3}
    assert res.report["trips"] == 2


def test_idempotence_covers_every_component_file(tmp_path, both):
    _, v2_paths = both
    root = tmp_path / "in"
    for comp in v2.COMPONENTS:
        (root / comp).mkdir(parents=True)
        for p in v2_paths:
            (root / comp / p.name).write_bytes((p.parent.parent / comp / p.name).read_bytes())
    kw = dict(workers=1, stride=4, size=SIZE, progress=False)
    first = ingest.ingest_files(root, tmp_path / "out", **kw)
    assert first.report["reused_trips"] == 0 and first.report["frames_written"] == 4
    again = ingest.ingest_files(root, tmp_path / "out", **kw)
    assert again.report["reused_trips"] == 2 and again.index_rows == first.index_rows
    # a newer box file, or a removed stats file, converts that segment again
    seg = sorted(v2_paths)[0].name
    box = root / "camera_box" / seg
    st = box.stat()
    os.utime(box, ns=(st.st_atime_ns, time.time_ns()))  # newer than the output, not in the future
    assert [t.reused for t in ingest.ingest_files(root, tmp_path / "out", **kw).trips] == [False, True]
    (root / "stats" / sorted(v2_paths)[1].name).unlink()
    third = ingest.ingest_files(root, tmp_path / "out", **kw)
    assert [t.reused for t in third.trips] == [True, False]
    assert {r["time_of_day"] for r in third.trips[1].rows} == {"unknown"}
