"""Ingest: format detection, conversion, every bad-input case, idempotence, parallel runs, real data."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from urban_detection.waymo import ingest
from urban_detection.waymo import synthetic as syn
from urban_detection.waymo.example import decode_example

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "waymo_processed_sample"


@pytest.fixture(scope="module")
def raw_trips(tmp_path_factory):
    """Three synthetic raw segments of 12 frames at 240x160."""
    out = tmp_path_factory.mktemp("raw")
    return syn.write_synthetic_trips(out, 3, 12, width=240, height=160, seed=11)


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _assert_warned(caplog, path: Path, *parts: str):
    msgs = _messages(caplog)
    assert any(str(path) in m and all(p in m for p in parts) for m in msgs), msgs


# ----------------------------------------------------------------- detection
def test_detect_format(tmp_path, wf, raw_trips):
    assert ingest.detect_format(raw_trips[0]) == "raw"
    processed = wf.write(tmp_path / "p.tfrecord", [wf.example([[0.1, 0.1, 0.5, 0.5]], [1])])
    assert ingest.detect_format(processed) == "processed"
    (tmp_path / "e.tfrecord").write_bytes(b"")
    assert ingest.detect_format(tmp_path / "e.tfrecord") == "empty"
    (tmp_path / "t.tfrecord").write_text("just some text, not a record file\n" * 20)
    assert ingest.detect_format(tmp_path / "t.tfrecord") == "unknown"
    garbage = wf.write(tmp_path / "g.tfrecord", [b"\xff" * 40, b"\xff" * 40])
    assert ingest.detect_format(garbage) == "unknown"
    import tensorflow as tf

    gz = tmp_path / "z.tfrecord.gz"
    with tf.io.TFRecordWriter(str(gz), tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        w.write(wf.example([[0.1, 0.1, 0.5, 0.5]], [2]))
    assert ingest.detect_format(gz) == "processed"
    r = ingest.convert_trip(gz, tmp_path / "z_out.tfrecord")
    assert r.trip == "z" and r.frames_written == 1 and r.objects["pedestrian"] == 1
    # the first record is corrupt, the second a Frame: still raw
    mixed = wf.write(tmp_path / "m.tfrecord", [b"\xff" * 40, wf.frame()])
    assert ingest.detect_format(mixed) == "raw"


# ---------------------------------------------------------------- conversion
def test_box_conversion_is_exact_after_resizing(tmp_path, wf):
    # 200x100 image; box centre (50, 40), length (x) 40, width (y) 20 -> x 30..70, y 30..50
    src = wf.write(tmp_path / "seg.tfrecord", [wf.frame(labels=[(50.0, 40.0, 40.0, 20.0, 1), (150, 75, 30, 50, 2)])])
    r = ingest.convert_trip(src, tmp_path / "out" / "seg.tfrecord", size=(64, 96), stride=1)
    assert r.frames_written == 1 and r.skipped == {}
    ex = decode_example(wf.read(tmp_path / "out" / "seg.tfrecord")[0])
    expected = np.asarray(
        [[30 / 100, 30 / 200, 50 / 100, 70 / 200], [50 / 100, 135 / 200, 100 / 100, 165 / 200]], np.float32
    )
    assert np.array_equal(ex.boxes, expected)
    assert ex.labels.tolist() == [1, 2] and ex.class_names == ["vehicle", "pedestrian"]
    assert (ex.height, ex.width) == (64, 96)
    assert np.asarray(Image.open(io.BytesIO(ex.image))).shape == (64, 96, 3)
    assert ex.source_id == "seg/0"


def test_raw_synthetic_trip_with_stride(tmp_path, raw_trips, wf):
    src = raw_trips[0]
    out = tmp_path / "trip.tfrecord"
    r = ingest.convert_trip(src, out, size=(128, 128), stride=5)
    assert r.format == "raw" and r.frames_read == 12 and r.frames_selected == 3 and r.frames_written == 3
    trip = syn.render_trip(0, 12, width=240, height=160, seed=11)
    records = [decode_example(b) for b in wf.read(out)]
    assert [e.source_id for e in records] == [f"{r.trip}/{i}" for i in (0, 5, 10)]
    n_signs = 0
    for e, i in zip(records, (0, 5, 10)):
        ref = trip.frames[i]
        keep = ref.types != 3
        n_signs += int((~keep).sum())
        cx, cy, ln, wd = ref.boxes[keep].T
        expected = np.stack([(cy - wd / 2) / 160, (cx - ln / 2) / 240, (cy + wd / 2) / 160, (cx + ln / 2) / 240], 1)
        assert np.array_equal(e.boxes, expected.astype(np.float32))
        assert e.labels.tolist() == ref.types[keep].tolist()
    assert r.skipped.get("label_sign", 0) == n_signs
    assert sum(r.objects.values()) == sum(len(e.labels) for e in records)
    row = r.rows[1]
    assert row["frame"] == 5 and row["timestamp_micros"] == trip.frames[5].timestamp_micros
    assert row["time_of_day"] == trip.stats["time_of_day"] and row["weather"] == trip.stats["weather"]
    assert row["n_objects"] == len(records[1].labels) == row["n_vehicle"] + row["n_pedestrian"] + row["n_cyclist"]
    assert row["image_hash"] == hashlib.sha1(records[1].image).hexdigest() and row["path"] == str(out)


def test_processed_input_passes_through(tmp_path, wf):
    imgs = [wf.jpeg(64, 64, seed=i) for i in range(3)]
    src = wf.write(
        tmp_path / "proc.tfrecord",
        [
            wf.example([[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.9, 0.4]], [1, 4], image=imgs[0], sid="a"),
            wf.example([], [], image=imgs[1], sid="b"),
            wf.example([[0.0, 0.0, 1.0, 1.0]], [2], image=imgs[2], sid="c"),
        ],
    )
    out = tmp_path / "out.tfrecord"
    r = ingest.convert_trip(src, out, size=(64, 64))
    assert r.format == "processed" and r.frames_written == 3 and r.skipped == {}
    got = [decode_example(b) for b in wf.read(out)]
    assert [g.image for g in got] == imgs  # byte for byte, not re-encoded
    assert np.array_equal(got[0].boxes, np.asarray([[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.9, 0.4]], np.float32))
    assert got[0].labels.tolist() == [1, 4] and got[2].source_id == "proc/2"
    assert r.objects == {"vehicle": 1, "pedestrian": 1, "cyclist": 1}
    assert r.rows[0]["timestamp_micros"] is None and r.rows[0]["time_of_day"] == "unknown"
    # another size: re-encoded at that size, boxes unchanged
    r2 = ingest.convert_trip(src, tmp_path / "out32.tfrecord", size=(32, 48))
    g2 = decode_example(wf.read(tmp_path / "out32.tfrecord")[0])
    assert np.asarray(Image.open(io.BytesIO(g2.image))).shape == (32, 48, 3) and r2.frames_written == 3
    assert np.array_equal(g2.boxes, got[0].boxes)


# ------------------------------------------------------------- bad input
def test_corrupt_record_bad_proto(tmp_path, wf, caplog):
    src = wf.write(tmp_path / "seg.tfrecord", [wf.frame(), b"\x0a\xff\xff\xff\xff\x0f", wf.frame()])
    r = ingest.convert_trip(src, tmp_path / "o.tfrecord", stride=1, size=(32, 32))
    assert r.frames_written == 2 and r.skipped == {"corrupt_record": 1}
    assert r.errors[0]["record"] == 1 and r.errors[0]["file"] == str(src)
    _assert_warned(caplog, src, "record 1", "corrupt_record")


def test_corrupt_record_mid_file_keeps_records_read_so_far(tmp_path, wf, caplog):
    src = wf.write(tmp_path / "seg.tfrecord", [wf.frame(), wf.frame(), wf.frame()])
    data = bytearray(src.read_bytes())
    first = int.from_bytes(data[:8], "little") + 16
    data[first + 12 + 100] ^= 0xFF  # inside the payload of record 1: its CRC fails
    src.write_bytes(bytes(data))
    r = ingest.convert_trip(src, tmp_path / "o.tfrecord", stride=1, size=(32, 32))
    assert r.frames_written == 1 and r.skipped == {"corrupt_record": 1}
    assert r.errors[0]["record"] == 1 and "corrupted record" in r.errors[0]["error"]
    _assert_warned(caplog, src, "record 1", "corrupt_record")


@pytest.mark.parametrize("cut", ["payload", "header"])
def test_truncated_file(tmp_path, wf, caplog, cut):
    src = wf.write(tmp_path / "seg.tfrecord", [wf.frame(), wf.frame(), wf.frame()])
    data = src.read_bytes()
    src.write_bytes(data[:-300] if cut == "payload" else data + b"\x10\x00\x00")
    r = ingest.convert_trip(src, tmp_path / "o.tfrecord", stride=1, size=(32, 32))
    assert r.frames_written == (2 if cut == "payload" else 3)
    assert r.skipped == {"truncated_file": 1}
    _assert_warned(caplog, src, f"record {2 if cut == 'payload' else 3}", "truncated_file")


def test_unknown_format_and_empty_file(tmp_path, wf, caplog):
    text = tmp_path / "notes.tfrecord"
    text.write_text("hello\n" * 100)
    garbage = wf.write(tmp_path / "garbage.tfrecord", [b"\xff" * 30] * 4)
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    for path, reason in ((text, "unknown_format"), (garbage, "unknown_format"), (empty, "empty_file")):
        r = ingest.convert_trip(path, tmp_path / "out" / path.name)
        assert r.skipped == {reason: 1} and r.frames_written == 0 and r.output is None
        assert not (tmp_path / "out" / path.name).exists()
        _assert_warned(caplog, path, reason)
    # folder with nothing usable: a clear error naming the folder
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        ingest.ingest_files(tmp_path, tmp_path / "out2", workers=1, progress=False)


def test_no_camera_image_and_bad_images(tmp_path, wf, caplog):
    good = wf.jpeg(200, 100)
    src = wf.write(
        tmp_path / "seg.tfrecord",
        [
            wf.frame(cameras=("FRONT_LEFT",)),  # 0: no FRONT image
            wf.frame(image=b"definitely not a jpeg"),  # 1
            wf.frame(image=good[: len(good) // 2]),  # 2: truncated JPEG
            wf.frame(),  # 3: fine
        ],
    )
    res = ingest.ingest_files([src], tmp_path / "out", workers=1, stride=1, size=(32, 32), progress=False)
    rep = res.report
    assert rep["frames_written"] == 1 and rep["frames_read"] == 4
    assert rep["skipped"] == {"no_camera_image": 1, "bad_image": 2}
    assert [(e["record"], e["reason"]) for e in rep["errors"]] == [
        (0, "no_camera_image"),
        (1, "bad_image"),
        (2, "bad_image"),
    ]
    _assert_warned(caplog, src, "record 0", "no FRONT camera image", "FRONT_LEFT")
    _assert_warned(caplog, src, "record 1", "bad_image")
    _assert_warned(caplog, src, "record 2", "bad_image")
    # the other camera is there: choosing it works
    r = ingest.convert_trip(src, tmp_path / "left.tfrecord", camera="FRONT_LEFT", stride=1, size=(32, 32))
    assert r.frames_written == 1 and r.skipped["no_camera_image"] == 3


def test_label_and_box_problems_raw(tmp_path, wf, caplog):
    labels = [
        (50, 40, 40, 20, 1),  # fine
        (20, 20, 10, 10, 3),  # sign
        (20, 20, 10, 10, 0),  # unknown type
        (195, 95, 20, 20, 2),  # partly outside -> clipped to x 185..200, y 85..100
        (300, 40, 20, 20, 1),  # wholly outside
        (50, 40, 0, 20, 1),  # zero length
        (50, 40, 0.5, 0.5, 4),  # below 1 output pixel
        (float("nan"), 40, 10, 10, 1),  # non-finite
        (60, 50, float("inf"), 10, 4),  # non-finite
    ]
    src = wf.write(tmp_path / "seg.tfrecord", [wf.frame(), wf.frame(labels=labels)])
    res = ingest.ingest_files([src], tmp_path / "out", workers=1, stride=1, size=(100, 200), progress=False)
    rep = res.report
    assert rep["skipped"] == {
        "label_sign": 1,
        "label_unknown": 1,
        "box_clipped": 1,
        "box_outside": 1,
        "box_zero_area": 2,
        "box_non_finite": 2,
    }
    assert rep["objects_written"] == {"vehicle": 2, "pedestrian": 1, "cyclist": 0}
    ex = decode_example(wf.read(tmp_path / "out" / "seg.tfrecord")[1])
    assert np.array_equal(ex.boxes, np.asarray([[0.3, 0.15, 0.5, 0.35], [0.85, 0.925, 1.0, 1.0]], np.float32))
    for reason in ("label_sign", "label_unknown", "box_outside", "box_zero_area", "box_non_finite", "box_clipped"):
        _assert_warned(caplog, src, "record 1", reason)
    assert not any("record 0" in m for m in _messages(caplog))


def test_label_and_box_problems_processed(tmp_path, wf, caplog):
    boxes = [
        [0.1, 0.1, 0.5, 0.5],
        [-0.2, 0.5, 0.4, 1.3],
        [1.2, 0.1, 1.5, 0.3],
        [0.2, 0.2, 0.2, 0.6],
        [np.nan, 0.1, 0.2, 0.2],
        [0.1, 0.1, 0.3, 0.3],
    ]
    src = wf.write(tmp_path / "p.tfrecord", [wf.example(boxes, [1, 2, 1, 4, 1, 3])])
    r = ingest.convert_trip(src, tmp_path / "o.tfrecord")
    assert r.skipped == {"box_clipped": 1, "box_outside": 1, "box_zero_area": 1, "box_non_finite": 1, "label_sign": 1}
    ex = decode_example(wf.read(tmp_path / "o.tfrecord")[0])
    assert np.array_equal(ex.boxes, np.asarray([[0.1, 0.1, 0.5, 0.5], [0.0, 0.5, 0.4, 1.0]], np.float32))
    assert ex.labels.tolist() == [1, 2]
    _assert_warned(caplog, src, "record 0", "box_outside")


# ------------------------------------------------------------- many files
def test_idempotent_rerun(tmp_path, raw_trips, caplog):
    out = tmp_path / "trips"
    first = ingest.ingest_files(raw_trips, out, workers=1, stride=4, size=(64, 64), progress=False)
    rep = first.report
    assert rep["files"] == 3 and rep["trips"] == 3 and rep["frames_written"] == 9 and rep["reused_trips"] == 0
    outputs = sorted(out.glob("*.tfrecord"))
    assert len(outputs) == 3 and len(list(out.glob("*.ingest.json"))) == 3
    mtimes = [p.stat().st_mtime_ns for p in outputs]

    again = ingest.ingest_files(raw_trips, out, workers=1, stride=4, size=(64, 64), progress=False)
    assert again.report["reused_trips"] == 3
    assert [p.stat().st_mtime_ns for p in outputs] == mtimes
    assert {k: v for k, v in again.report.items() if k != "reused_trips"} == {
        k: v for k, v in rep.items() if k != "reused_trips"
    }
    assert again.index_rows == first.index_rows

    # a newer input is converted again, the others are reused
    st = raw_trips[1].stat()
    os.utime(raw_trips[1], ns=(st.st_atime_ns, time.time_ns() + 10**9))
    third = ingest.ingest_files(raw_trips, out, workers=1, stride=4, size=(64, 64), progress=False)
    assert third.report["reused_trips"] == 2 and not third.trips[1].reused
    # other parameters, or force: everything is converted
    assert (
        ingest.ingest_files(raw_trips, out, workers=1, stride=6, size=(64, 64), progress=False).report["reused_trips"]
        == 0
    )
    forced = ingest.ingest_files(raw_trips, out, workers=1, stride=6, size=(64, 64), force=True, progress=False)
    assert forced.report["reused_trips"] == 0 and forced.report["frames_written"] == 6
    df = forced.index_frame()
    assert list(df.columns) == list(ingest.INDEX_COLUMNS) and len(df) == 6


def test_parallel_workers_match_in_process(tmp_path, raw_trips, wf, caplog):
    bad = wf.write(tmp_path / "in" / "a_bad.tfrecord", [wf.frame(image=b"nope"), wf.frame()])
    files = [bad] + list(raw_trips)
    serial = ingest.ingest_files(files, tmp_path / "s", workers=1, stride=3, size=(64, 64), progress=False)
    caplog.clear()
    ingest.warm_pool(2)
    try:
        par = ingest.ingest_files(
            files, tmp_path / "p", workers=2, stride=3, size=(64, 64), progress=False, keep_pool=True
        )
    finally:
        ingest.shutdown_pool()
    assert {t.pid for t in serial.trips} == {os.getpid()}
    assert len({t.pid for t in par.trips}) == 2  # the caller and one spawned worker both converted files
    strip = lambda rows: [{k: v for k, v in r.items() if k != "path"} for r in rows]  # noqa: E731
    assert strip(par.index_rows) == strip(serial.index_rows)
    for key in ("files", "trips", "frames_read", "frames_written", "objects_written", "skipped"):
        assert par.report[key] == serial.report[key]
    assert par.report["skipped"] == {
        "bad_image": 1,
        **{k: v for k, v in serial.report["skipped"].items() if k != "bad_image"},
    }
    # warnings raised in a worker process reach the caller's log
    _assert_warned(caplog, bad, "record 0", "bad_image")


def test_duplicate_trip_names_and_missing_files(tmp_path, wf, caplog):
    a = wf.write(tmp_path / "x" / "seg.tfrecord", [wf.frame()])
    b = wf.write(tmp_path / "y" / "seg.tfrecord", [wf.frame()])
    missing = tmp_path / "x" / "gone.tfrecord"
    res = ingest.ingest_files([a, b, missing], tmp_path / "out", workers=1, stride=1, size=(32, 32), progress=False)
    assert res.report["files"] == 3 and res.report["trips"] == 1
    assert res.report["skipped"] == {"duplicate_trip": 1, "missing_file": 1}
    _assert_warned(caplog, b, "duplicate_trip")
    _assert_warned(caplog, missing, "missing_file")


@pytest.mark.real_data
@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is absent")
def test_real_processed_sample(tmp_path):
    files = sorted(REAL.glob("*.tfrecord"))
    assert all(ingest.detect_format(p) == "processed" for p in files[:3])
    res = ingest.ingest_files(REAL, tmp_path, workers=2, progress=False)
    rep = res.report
    assert rep["files"] == 32 and rep["trips"] == 32
    assert rep["frames_read"] == 640 and rep["frames_written"] == 640
    assert rep["objects_written"] == {"vehicle": 12349, "pedestrian": 4337, "cyclist": 87}
    assert rep["errors"] == [] and rep["skipped"] == {}
    df = res.index_frame()
    assert len(df) == 640 and df["trip"].nunique() == 32 and df["n_objects"].sum() == 12349 + 4337 + 87
    # 640x640 JPEGs are copied, not re-encoded
    import tensorflow as tf

    src = next(iter(tf.data.TFRecordDataset(str(files[0])).as_numpy_iterator()))
    dst = next(iter(tf.data.TFRecordDataset(str(tmp_path / f"{files[0].stem}.tfrecord")).as_numpy_iterator()))
    assert decode_example(src).image == decode_example(dst).image
