"""Conversion of one trip (raw v1 segment, v2 Parquet segment or processed tf.Example file) to a training TFRecord.

One source is one trip (see :func:`urban_detection.waymo.sources.find_sources`). :func:`convert_trip` reads either

* a **raw** Waymo Open Dataset v1 segment (TFRecord of ``Frame`` protos): keeps every
  ``stride``-th frame, takes the chosen camera's JPEG and 2D ``camera_labels``
  (pixel centre/length/width), resizes the image to ``size`` and converts boxes to
  normalised ``[ymin, xmin, ymax, xmax]``; or
* a Waymo Open Dataset **v2** segment (``camera_image/<segment>.parquet`` with its
  ``camera_box`` and ``stats`` files, read by :mod:`urban_detection.waymo.v2`): the same
  frames, stride and conversion as v1 (both become
  :class:`~urban_detection.waymo.sources.SourceFrame` records); a segment without a
  ``camera_box`` file is skipped (``missing_box_file``: its objects are unlabelled); or
* a **processed** file (TF Object Detection API tf.Examples, e.g. made by the
  original project's ``download_process.py``): every frame passes through after
  validation; JPEGs already at ``size`` are copied byte for byte,

and writes one TFRecord of tf.Examples (:func:`urban_detection.waymo.example.encode_example`)
with ``image/source_id = "<trip>/<frame index>"``. Images and boxes are cleaned by
:mod:`urban_detection.waymo.cleaning`; problems are counted in the
:class:`~urban_detection.waymo.trip_result.TripResult`, never raised.

``image_hash`` in the frame index is the SHA-1 of the JPEG bytes written (``image/encoded``);
``brightness`` is the mean BT.601 luma of the written image, measured on the image the
conversion decoded anyway (see :mod:`urban_detection.waymo.lighting`).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow as tf

from urban_detection.files import check_output_is_not_input, commit_temp, discard_temp, remove_owned, reserve_temp
from urban_detection.waymo import frame_proto as fp
from urban_detection.waymo import v2
from urban_detection.waymo.cleaning import (
    WAYMO_TO_LABEL,
    clean_boxes,
    encode_jpeg,
    label_reasons,
    open_image,
    resize,
    validate_jpeg,
)
from urban_detection.waymo.example import LABEL_MAP, DetectionExample, decode_example, encode_example
from urban_detection.waymo.lighting import mean_luma
from urban_detection.waymo.records import SNIFF_RECORDS, UNKNOWN, RecordReadError, classify, iter_records, trip_name
from urban_detection.waymo.sources import SourceFrame, is_v2_segment
from urban_detection.waymo.trip_result import TripResult, flush_label_notes, note_label_problems

INDEX_COLUMNS = (
    "trip",
    "frame",
    "timestamp_micros",
    "time_of_day",
    "weather",
    "location",
    "n_vehicle",
    "n_pedestrian",
    "n_cyclist",
    "n_objects",
    "image_hash",
    "path",
    "brightness",  # mean BT.601 luma (0-255) of the written image
)


# ------------------------------------------------------------------ parameters
@dataclass
class Params:
    """Conversion parameters, checked (see :func:`make_params`)."""

    camera: str
    size: tuple[int, int]
    stride: int
    min_box_px: float
    jpeg_quality: int


def _size_hw(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"bad output size {size!r}")
    return h, w


def make_params(camera: str, size, stride: int, min_box_px: float, jpeg_quality: int) -> Params:
    """The :class:`Params` of a conversion; ``ValueError`` for a bad size or a stride below 1."""
    p = Params(
        fp.CameraName(fp.camera_id(camera)).name, _size_hw(size), int(stride), float(min_box_px), int(jpeg_quality)
    )
    if p.stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return p


# ----------------------------------------------------------------- one frame
def _row(trip: str, frame: int, labels: np.ndarray, image_hash: str, out_path: Path, ts=None, stats=None) -> dict:
    """One row of the frame index (:data:`INDEX_COLUMNS`)."""
    stats = stats or {}
    return {
        "trip": trip,
        "frame": int(frame),
        "timestamp_micros": int(ts) if ts is not None else None,
        "time_of_day": stats.get("time_of_day") or UNKNOWN,
        "weather": stats.get("weather") or UNKNOWN,
        "location": stats.get("location") or UNKNOWN,
        "n_vehicle": int((labels == 1).sum()),
        "n_pedestrian": int((labels == 2).sum()),
        "n_cyclist": int((labels == 4).sum()),
        "n_objects": int(len(labels)),
        "image_hash": image_hash,
        "path": str(out_path),
        "brightness": stats.get("brightness"),
    }


def _frame_from_proto(frame, index: int, camera: str) -> SourceFrame:
    """The ``camera`` view of a v1 ``Frame`` proto: its image, 2D labels and stats."""
    labels = fp.find_labels(frame, camera) or []
    n = len(labels)
    boxes = np.fromiter(
        (v for lab in labels for v in (lab.box.center_x, lab.box.center_y, lab.box.length, lab.box.width)),
        np.float64,
        4 * n,
    ).reshape(n, 4)
    known = fp.CameraName._value2member_map_
    stats = frame.context.stats
    return SourceFrame(
        index=index,
        timestamp_micros=frame.timestamp_micros,
        image=fp.find_image(frame, camera),
        boxes=boxes,
        types=np.fromiter((lab.type for lab in labels), np.int64, n),
        stats={"time_of_day": stats.time_of_day, "weather": stats.weather, "location": stats.location},
        cameras=tuple(sorted({fp.CameraName(i.name).name if i.name in known else str(i.name) for i in frame.images})),
    )


def _convert_camera(sf: SourceFrame, result: TripResult, p: Params):
    """One camera frame (of a v1 Frame or v2 rows) to ``(jpeg, boxes, labels, timestamp, info)``, or None.

    ``info`` holds the frame's stats and the written image's ``brightness``. Boxes come
    in source pixels (centre, size) and leave normalised to the source image size.
    """
    out_h, out_w = p.size
    index = sf.index
    at = f" at timestamp {sf.timestamp_micros}" if sf.timestamp_micros is not None else ""
    if sf.error is not None:
        result.problem(sf.error[0], index, sf.error[1] + at)
        return None
    if sf.image is None:
        cams = list(sf.cameras)
        result.problem("no_camera_image", index, f"no {p.camera} camera image{at} (cameras present: {cams or 'none'})")
        return None
    try:
        im, width, height = open_image(sf.image, out_w, out_h)
    except Exception as e:  # noqa: BLE001 - any decoder failure
        result.problem("bad_image", index, f"{p.camera} image{at} does not decode ({type(e).__name__}: {e})")
        return None
    im = resize(im, out_w, out_h)
    jpeg = encode_jpeg(im, p.jpeg_quality)

    types = np.asarray(sf.types, np.int64)
    cx, cy, ln, wd = np.asarray(sf.boxes, np.float64).reshape(-1, 4).T
    ok_type, counts = label_reasons(types)
    with np.errstate(invalid="ignore", over="ignore"):
        x0, x1, y0, y1 = cx - ln / 2, cx + ln / 2, cy - wd / 2, cy + wd / 2
    keep, x0, y0, x1, y1, box_counts = clean_boxes(
        x0[ok_type],
        y0[ok_type],
        x1[ok_type],
        y1[ok_type],
        width,
        height,
        out_w / width,
        out_h / height,
        p.min_box_px**2,
    )
    counts.update(box_counts)
    note_label_problems(result, index, counts)
    boxes = np.stack([y0[keep] / height, x0[keep] / width, y1[keep] / height, x1[keep] / width], axis=1)
    label_ids = np.asarray([WAYMO_TO_LABEL[int(t)] for t in types[ok_type][keep]], np.int32)
    info = {**sf.stats, "brightness": mean_luma(im)}
    return jpeg, boxes.astype(np.float32).reshape(-1, 4), label_ids, sf.timestamp_micros, info


def _convert_processed(ex: DetectionExample, index: int, result: TripResult, p: Params):
    out_h, out_w = p.size
    try:
        width, height, fmt, small = validate_jpeg(ex.image)
    except Exception as e:  # noqa: BLE001
        result.problem("bad_image", index, f"image/encoded does not decode ({type(e).__name__}: {e})")
        return None
    if (width, height) == (out_w, out_h) and fmt == "JPEG":
        jpeg = ex.image  # already what we write: no re-encoding
        brightness = mean_luma(small)  # of the 1/8-scale decode: block means, the same mean
    else:
        try:
            im, _, _ = open_image(ex.image, out_w, out_h)
        except Exception as e:  # noqa: BLE001
            result.problem("bad_image", index, f"image/encoded does not decode ({type(e).__name__}: {e})")
            return None
        im = resize(im, out_w, out_h)
        jpeg = encode_jpeg(im, p.jpeg_quality)
        brightness = mean_luma(im)
    ok_type, counts = label_reasons(ex.labels)
    b = np.asarray(ex.boxes, np.float64).reshape(-1, 4)[ok_type]
    keep, x0, y0, x1, y1, box_counts = clean_boxes(
        b[:, 1], b[:, 0], b[:, 3], b[:, 2], 1.0, 1.0, out_w, out_h, p.min_box_px**2
    )
    counts.update(box_counts)
    note_label_problems(result, index, counts)
    boxes = np.stack([y0[keep], x0[keep], y1[keep], x1[keep]], axis=1).astype(np.float32).reshape(-1, 4)
    labels = np.asarray(ex.labels, np.int32)[ok_type][keep]
    return jpeg, boxes, labels, None, {"brightness": brightness}


def _convert_record(fmt: str, data, parsed, index: int, result: TripResult, p: Params):
    """One selected record (bytes, or a v2 frame) to ``(jpeg, boxes, labels, timestamp, info)``, or None."""
    try:
        if fmt == "v2":
            item = data
        elif fmt == "raw":
            item = parsed if parsed is not None else fp.Frame.FromString(data)
        else:
            item = decode_example(data)
    except Exception as e:  # noqa: BLE001 - any parse failure of one record
        what = "Frame proto" if fmt == "raw" else "tf.Example"
        result.problem("corrupt_record", index, f"bad {what} ({type(e).__name__}: {e})")
        return None
    if fmt == "processed":
        return _convert_processed(item, index, result, p)
    # v1 and v2 camera frames: one conversion
    frame = item if fmt == "v2" else _frame_from_proto(item, index, p.camera)
    return _convert_camera(frame, result, p)


# ------------------------------------------------------------------ one trip
def _converted_frames(path: Path, result: TripResult, p: Params) -> Iterator[tuple[int, tuple]]:
    """``(record index, converted frame)`` of every frame kept; the format is sniffed on the first readable records.

    Every problem is counted in ``result``; a file that stops being readable ends the frames.
    """
    fmt: str | None = None
    pending_unknown: list[tuple[int, str]] = []
    if is_v2_segment(path):  # Parquet components, read straight into camera frames
        fmt = result.format = "v2"
        records = v2.iter_frames(path, p.camera, p.stride, result.problem)
    else:
        records = iter_records(path)
    try:
        for index, data in records:
            result.frames_read += 1
            parsed = None
            if fmt is None:  # sniff the format on the first readable records
                sniffed, parsed = classify(data)
                if sniffed is None:
                    pending_unknown.append((index, parsed))
                    if len(pending_unknown) >= SNIFF_RECORDS:
                        break
                    continue
                fmt = result.format = sniffed
                for bad_index, why in pending_unknown:
                    result.problem("corrupt_record", bad_index, why)
                pending_unknown.clear()
            if fmt in ("raw", "v2") and index % p.stride:
                continue
            result.frames_selected += 1
            converted = _convert_record(fmt, data, parsed, index, result, p)
            if converted is not None:
                yield index, converted
    except RecordReadError as e:
        if fmt is None and result.frames_read == 0 and e.kind == "corrupt_record":
            result.problem("unknown_format", None, f"not a TFRecord file ({e.message})")
        else:
            result.problem(e.kind, e.index, e.message)
    if fmt is None and "unknown_format" not in result.skipped:
        if pending_unknown:
            result.problem(
                "unknown_format", None, f"not a Waymo segment nor a tf.Example file: {pending_unknown[0][1]}"
            )
        elif not result.skipped:
            result.problem("unknown_format", None, "no records")


def _example(trip: str, index: int, jpeg: bytes, boxes: np.ndarray, labels: np.ndarray, p: Params) -> DetectionExample:
    out_h, out_w = p.size
    return DetectionExample(
        image=jpeg,
        height=out_h,
        width=out_w,
        filename=f"{trip}_{index:04d}.jpg",
        source_id=f"{trip}/{index}",
        boxes=boxes,
        labels=labels,
        image_format="jpeg",
    )


def convert_trip(
    path: str | os.PathLike,
    out_path: str | os.PathLike,
    camera: str = "FRONT",
    size=(640, 640),
    stride: int = 10,
    min_box_px: float = 1.0,
    jpeg_quality: int = 90,
) -> TripResult:
    """Convert one raw or processed trip file, or a v2 segment, to a TFRecord of TF OD API tf.Examples.

    ``path`` is a ``*.tfrecord`` file or a v2 segment's ``camera_image/<segment>.parquet``
    (see :mod:`urban_detection.waymo.v2`); v1 and v2 camera frames go through the same
    conversion. ``size`` is ``(height, width)`` of the written images. ``stride``
    applies to raw and v2 segments only (processed files keep all frames). The output is written only
    when at least one frame survives (atomically, through a temporary file, and recorded
    as the project's, see :mod:`urban_detection.files`). Before anything is read it raises
    :class:`~urban_detection.files.OutputOnInputError` when ``out_path`` is the input file
    itself and :class:`~urban_detection.files.ForeignFileError` when ``out_path`` exists
    but the project did not write it; neither file is touched then.
    """
    path, out_path = Path(path), Path(out_path)
    p = make_params(camera, size, stride, min_box_px, jpeg_quality)
    t0 = time.perf_counter()
    trip = trip_name(path)
    result = TripResult(trip=trip, source=str(path), pid=os.getpid())
    if not path.is_file():
        result.problem("missing_file", None, "file does not exist")
        return result
    if path.stat().st_size == 0:
        result.problem("empty_file", None, "file is empty")
        return result

    check_output_is_not_input(out_path, path, output_name="trip output", input_name="input file")
    tmp = reserve_temp(out_path)  # ForeignFileError (nothing written) if out_path is a file the project did not write
    writer = None
    try:
        for index, (jpeg, boxes, labels, ts, stats) in _converted_frames(path, result, p):
            example = _example(trip, index, jpeg, boxes, labels, p)
            if writer is None:
                writer = tf.io.TFRecordWriter(str(tmp))
            writer.write(encode_example(example))
            result.frames_written += 1
            for lid in labels:
                result.objects[LABEL_MAP[int(lid)]] += 1
            result.rows.append(_row(trip, index, labels, hashlib.sha1(jpeg).hexdigest(), out_path, ts, stats))
    except BaseException:
        discard_temp(tmp)
        raise
    finally:
        if writer is not None:
            writer.close()
        flush_label_notes(result)
    if result.frames_written:
        commit_temp(tmp, out_path)  # atomic, recorded as the project's
        result.output = str(out_path)
    else:
        discard_temp(tmp)
        remove_owned(out_path)  # no stale output from an earlier run (only ever a file the project wrote)
    result.seconds = time.perf_counter() - t0
    return result
