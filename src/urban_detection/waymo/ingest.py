"""Ingest Waymo trips: raw v1 segments, v2 Parquet segments or processed tf.Example files to training TFRecords.

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
with ``image/source_id = "<trip>/<frame index>"``.

Bad input never raises: each problem is logged as a warning naming the file and the
record index and counted under a reason key (see :data:`SKIP_REASONS`). Record-level
failures (a frame or file lost) are also listed in ``errors``; label and box problems
are counted per box and warned once per file and reason, listing the records.
:func:`ingest_files` converts many files in parallel (local processes, or one Ray task per
file: see :mod:`urban_detection.waymo.executor`), skips trips that are already up to
date, and raises ``ValueError`` only when no usable frame remains at all.

Box rules (sizes in pixels of the *output* image): non-finite coordinates
(``box_non_finite``), zero or negative extent (``box_zero_area``), wholly outside the
image (``box_outside``), partly outside (clipped to the image, kept, counted as
``box_clipped``), area below ``min_box_px ** 2`` after clipping (``box_zero_area``).
Labels other than vehicle/pedestrian/cyclist are dropped (``label_sign``,
``label_unknown``).

``image_hash`` in the frame index is the SHA-1 of the JPEG bytes written (``image/encoded``);
``brightness`` is the mean BT.601 luma of the written image, measured on the image the
conversion decoded anyway (see :mod:`urban_detection.waymo.lighting`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import tensorflow as tf
from PIL import Image

from urban_detection.files import (
    check_output_is_not_input,
    commit_temp,
    discard_temp,
    remove_owned,
    reserve_temp,
    write_text,
)
from urban_detection.waymo import executor
from urban_detection.waymo import frame_proto as fp
from urban_detection.waymo import v2
from urban_detection.waymo.example import CLASS_NAMES, LABEL_MAP, DetectionExample, decode_example, encode_example
from urban_detection.waymo.lighting import mean_luma
from urban_detection.waymo.sources import SourceFrame, find_sources, is_v2_segment

logger = logging.getLogger(__name__)

INGEST_VERSION = 2  # 2: frame index rows carry brightness
MAX_ERRORS_PER_FILE = 100
SKIP_REASONS: tuple[str, ...] = (
    "empty_file",
    "unknown_format",
    "truncated_file",
    "corrupt_record",
    "no_camera_image",
    "bad_image",
    "label_sign",
    "label_unknown",
    "box_clipped",
    "box_outside",
    "box_zero_area",
    "box_non_finite",
    "missing_file",
    "duplicate_trip",
    "worker_error",
    "missing_box_file",  # v2 segment without camera_box file: skipped (its objects are unlabelled)
    "bad_component_file",  # v2 component file unreadable or lacking columns
    "duplicate_image",  # v2: two images of one camera and timestamp (the first is used)
)
# Waymo Label.Type -> seed label id (the numbers coincide: 1 vehicle, 2 pedestrian, 4 cyclist)
WAYMO_TO_LABEL: dict[int, int] = {1: 1, 2: 2, 4: 4}
_SIGN = int(fp.LabelType.SIGN)
_UNKNOWN = "unknown"


# --------------------------------------------------------------------- results
@dataclass
class TripResult:
    """What happened to one input file."""

    trip: str
    source: str
    output: str | None = None
    format: str = _UNKNOWN
    frames_read: int = 0
    frames_selected: int = 0
    frames_written: int = 0
    objects: dict[str, int] = field(default_factory=lambda: {name: 0 for name in CLASS_NAMES})
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    reused: bool = False
    pid: int = 0  # process that converted the file

    def __post_init__(self):
        self._label_notes: dict[str, list[tuple[int, int]]] = {}  # reason -> [(record, n)], not serialised

    def count(self, reason: str, n: int = 1) -> None:
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + int(n)

    def problem(self, reason: str, record: int | None, detail: str, n: int = 1, error: bool = True) -> None:
        """Count ``reason``, log a warning naming file and record, keep an error entry."""
        self.count(reason, n)
        where = f"record {record}" if record is not None else "file"
        logger.warning("%s: %s: %s (%s)", self.source, where, detail, reason)
        if error and len(self.errors) < MAX_ERRORS_PER_FILE:
            self.errors.append({"file": self.source, "record": record, "reason": reason, "error": detail})

    @property
    def objects_total(self) -> int:
        return int(sum(self.objects.values()))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TripResult":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class IngestResult:
    """All trips of one :func:`ingest_files` call."""

    trips: list[TripResult]
    source: str = ""

    @property
    def index_rows(self) -> list[dict]:
        return [row for t in self.trips for row in t.rows]

    @property
    def report(self) -> dict:
        skipped: dict[str, int] = {}
        objects = {name: 0 for name in CLASS_NAMES}
        for t in self.trips:
            for k, v in t.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
            for k, v in t.objects.items():
                objects[k] = objects.get(k, 0) + v
        return {
            "files": len(self.trips),
            "trips": sum(1 for t in self.trips if t.frames_written > 0),
            "frames_read": sum(t.frames_read for t in self.trips),
            "frames_selected": sum(t.frames_selected for t in self.trips),
            "frames_written": sum(t.frames_written for t in self.trips),
            "objects_written": objects,
            "skipped": dict(sorted(skipped.items())),
            "errors": [e for t in self.trips for e in t.errors],
            "reused_trips": sum(1 for t in self.trips if t.reused),
        }

    def index_frame(self):
        """The frame index as a pandas DataFrame (columns of the project's frame index)."""
        import pandas as pd

        df = pd.DataFrame(self.index_rows, columns=list(INDEX_COLUMNS))
        df["timestamp_micros"] = df["timestamp_micros"].astype("Int64")
        for col in ("frame", "n_vehicle", "n_pedestrian", "n_cyclist", "n_objects"):
            df[col] = df[col].astype("int64")
        df["brightness"] = df["brightness"].astype("float64")
        return df


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


# ------------------------------------------------------------- record reading
class RecordReadError(Exception):
    """A TFRecord file stops being readable at record ``index``."""

    def __init__(self, kind: str, index: int, message: str):
        super().__init__(message)
        self.kind, self.index, self.message = kind, index, message


def _clean_tf_message(e: Exception) -> str:
    msg = str(getattr(e, "message", "") or e)
    msg = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", msg)
    msg = re.sub(r"\s*\[Op:\w+\].*$", "", msg, flags=re.S)
    return msg.strip()


def _record_iterator(path: str, compression: str):
    """TensorFlow's C++ record reader (checks CRCs); tf.data when that is unavailable."""
    try:
        from tensorflow.python.lib.io import _pywrap_record_io  # what tf.compat.v1.io.tf_record_iterator returns

        return _pywrap_record_io.RecordIterator(path, compression)
    except (ImportError, AttributeError):  # pragma: no cover - other TensorFlow builds
        return (t.numpy() for t in tf.data.TFRecordDataset(path, compression_type=compression, buffer_size=1 << 20))


def iter_records(path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """Yield ``(index, bytes)`` of each record; raise :class:`RecordReadError` where it breaks.

    CRCs are checked (TensorFlow's reader). A file whose tail does not form a whole
    record (even a partial length header, which TensorFlow ignores) is reported as
    ``truncated_file``; a failed checksum as ``corrupt_record``. GZIP files are read
    transparently.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        gzip = fh.read(2) == b"\x1f\x8b"
    index, offset = 0, 0
    it = _record_iterator(str(path), "GZIP" if gzip else "")
    while True:
        try:
            data = next(it)
        except StopIteration:
            break
        except (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.InvalidArgumentError) as e:
            msg = _clean_tf_message(e)
            kind = "truncated_file" if "truncated" in msg.lower() or "less bytes" in msg.lower() else "corrupt_record"
            raise RecordReadError(kind, index, msg) from None
        offset += len(data) + 16
        yield index, data
        index += 1
    if not gzip and offset != size:
        raise RecordReadError(
            "truncated_file",
            index,
            f"{size - offset} trailing bytes after record {index - 1} do not form a whole record",
        )


def _classify(data: bytes):
    """``("processed", tf.train.Example)``, ``("raw", Frame)`` or ``(None, reason text)``."""
    try:
        ex = tf.train.Example.FromString(data)
        if "image/encoded" in ex.features.feature:
            return "processed", ex
    except Exception:  # noqa: BLE001 - not a tf.Example
        pass
    try:
        frame = fp.Frame.FromString(data)
    except Exception as e:  # noqa: BLE001
        return None, f"neither a tf.Example with image/encoded nor a Waymo Frame ({type(e).__name__}: {e})"
    if len(frame.images) or len(frame.camera_labels) or frame.context.name or frame.timestamp_micros:
        return "raw", frame
    return None, "record parses as neither a tf.Example with image/encoded nor a Waymo Frame with images"


_SNIFF_RECORDS = 3


def detect_format(path: str | os.PathLike) -> str:
    """``"raw"`` (Waymo Frame protos), ``"processed"`` (tf.Example), ``"v2"``, ``"empty"`` or ``"unknown"``.

    Looks at the first readable records (up to three) of the file; ``"v2"`` for an
    existing ``camera_image/<segment>.parquet`` (a Waymo v2 segment).
    """
    path = Path(path)
    if not path.is_file():
        return _UNKNOWN
    if is_v2_segment(path):
        return "v2"
    if path.stat().st_size == 0:
        return "empty"
    try:
        for index, data in iter_records(path):
            kind, _ = _classify(data)
            if kind:
                return kind
            if index + 1 >= _SNIFF_RECORDS:
                break
    except RecordReadError:
        pass
    return _UNKNOWN


# ------------------------------------------------------------------- helpers
def trip_name(path: str | os.PathLike) -> str:
    """Trip name of an input file: its name without ``.tfrecord`` (and ``.gz``); a v2 segment's name."""
    name = Path(path).name
    for suffix in (".gz", ".tfrecord", ".tfrecords", ".parquet"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _size_hw(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"bad output size {size!r}")
    return h, w


def _encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def _open_image(data: bytes, out_w: int, out_h: int) -> tuple[Image.Image, int, int]:
    """Decode an encoded image (DCT-scaled when much larger than the output); original size."""
    im = Image.open(io.BytesIO(data))
    width, height = im.size
    if im.format == "JPEG":
        im.draft("RGB", (out_w, out_h))  # decode at 1/2, 1/4... scale while still >= output
    if im.mode != "RGB":
        im = im.convert("RGB")  # decodes
    else:
        im.load()  # full decode; raises on broken data
    return im, width, height


def _resize(im: Image.Image, out_w: int, out_h: int) -> Image.Image:
    """Area averaging when shrinking (anti-aliased and fast), bilinear when enlarging."""
    if im.size == (out_w, out_h):
        return im
    shrink = out_w <= im.width and out_h <= im.height
    return im.resize((out_w, out_h), Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR)


def _validate_jpeg(data: bytes) -> tuple[int, int, str, Image.Image]:
    """Check that the bitstream decodes (at 1/8 scale, cheap); return width, height, format, decoded image."""
    im = Image.open(io.BytesIO(data))
    width, height = im.size
    fmt = im.format or ""
    if fmt == "JPEG":
        im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
    im.load()
    return width, height, fmt, im


def _clean_boxes(x0, y0, x1, y1, img_w: float, img_h: float, px_x: float, px_y: float, min_area: float):
    """Validate/clip boxes given in image units (pixels, or 1.0 for normalised input).

    ``px_x``/``px_y`` convert image units to output pixels. Returns ``(keep mask,
    clipped x0, y0, x1, y1, reason counts)``.
    """
    x0, y0, x1, y1 = (np.asarray(v, np.float64) for v in (x0, y0, x1, y1))
    counts: dict[str, int] = {}
    finite = np.isfinite(x0) & np.isfinite(y0) & np.isfinite(x1) & np.isfinite(y1)
    with np.errstate(invalid="ignore", over="ignore"):
        zero = finite & ((x1 <= x0) | (y1 <= y0))
        outside = finite & ~zero & ((x1 <= 0) | (x0 >= img_w) | (y1 <= 0) | (y0 >= img_h))
        cand = finite & ~zero & ~outside
        clipped = cand & ((x0 < 0) | (y0 < 0) | (x1 > img_w) | (y1 > img_h))
        cx0, cx1 = np.clip(x0, 0, img_w), np.clip(x1, 0, img_w)
        cy0, cy1 = np.clip(y0, 0, img_h), np.clip(y1, 0, img_h)
        area = (cx1 - cx0) * px_x * (cy1 - cy0) * px_y
        small = cand & ~(area >= min_area)
    keep = cand & ~small
    counts["box_non_finite"] = int((~finite).sum())
    counts["box_zero_area"] = int(zero.sum() + small.sum())
    counts["box_outside"] = int(outside.sum())
    counts["box_clipped"] = int((clipped & keep).sum())
    return keep, cx0, cy0, cx1, cy1, counts


def _label_reasons(types: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Mask of usable label ids (1, 2, 4) and counts of the others."""
    types = np.asarray(types, np.int64)
    ok = np.isin(types, list(WAYMO_TO_LABEL))
    sign = types == _SIGN
    return ok, {"label_sign": int(sign.sum()), "label_unknown": int((~ok & ~sign).sum())}


def _note_label_problems(result: TripResult, record: int, counts: dict[str, int]) -> None:
    """Count label/box problems; the warnings are summarised per file and reason."""
    for reason, n in counts.items():
        if n:
            result.count(reason, n)
            result._label_notes.setdefault(reason, []).append((record, n))


def _records_text(records: list[int]) -> str:
    if len(records) == 1:
        return f"record {records[0]}"
    shown = ", ".join(str(r) for r in records[:8])
    more = f", ... (+{len(records) - 8} more)" if len(records) > 8 else ""
    return f"records {shown}{more}"


def _flush_label_notes(result: TripResult) -> None:
    for reason, notes in sorted(result._label_notes.items()):
        records = [r for r, _ in notes]
        total = sum(n for _, n in notes)
        if reason == "box_clipped":
            what = f"clipped {total} box(es) partly outside the image"
        else:
            what = f"dropped {total} label(s)"
        logger.warning("%s: %s: %s (%s)", result.source, _records_text(records), what, reason)
    result._label_notes.clear()


# --------------------------------------------------------------- conversion
@dataclass
class _Params:
    camera: str
    size: tuple[int, int]
    stride: int
    min_box_px: float
    jpeg_quality: int


def _row(trip: str, frame: int, labels: np.ndarray, image_hash: str, out_path: Path, ts=None, stats=None) -> dict:
    stats = stats or {}
    return {
        "trip": trip,
        "frame": int(frame),
        "timestamp_micros": int(ts) if ts is not None else None,
        "time_of_day": stats.get("time_of_day") or _UNKNOWN,
        "weather": stats.get("weather") or _UNKNOWN,
        "location": stats.get("location") or _UNKNOWN,
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


def _convert_camera(sf: SourceFrame, result: TripResult, p: _Params):
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
        im, width, height = _open_image(sf.image, out_w, out_h)
    except Exception as e:  # noqa: BLE001 - any decoder failure
        result.problem("bad_image", index, f"{p.camera} image{at} does not decode ({type(e).__name__}: {e})")
        return None
    im = _resize(im, out_w, out_h)
    jpeg = _encode_jpeg(im, p.jpeg_quality)

    types = np.asarray(sf.types, np.int64)
    cx, cy, ln, wd = np.asarray(sf.boxes, np.float64).reshape(-1, 4).T
    ok_type, counts = _label_reasons(types)
    with np.errstate(invalid="ignore", over="ignore"):
        x0, x1, y0, y1 = cx - ln / 2, cx + ln / 2, cy - wd / 2, cy + wd / 2
    keep, x0, y0, x1, y1, box_counts = _clean_boxes(
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
    _note_label_problems(result, index, counts)
    boxes = np.stack([y0[keep] / height, x0[keep] / width, y1[keep] / height, x1[keep] / width], axis=1)
    label_ids = np.asarray([WAYMO_TO_LABEL[int(t)] for t in types[ok_type][keep]], np.int32)
    info = {**sf.stats, "brightness": mean_luma(im)}
    return jpeg, boxes.astype(np.float32).reshape(-1, 4), label_ids, sf.timestamp_micros, info


def _convert_processed(ex: DetectionExample, index: int, result: TripResult, p: _Params):
    out_h, out_w = p.size
    try:
        width, height, fmt, small = _validate_jpeg(ex.image)
    except Exception as e:  # noqa: BLE001
        result.problem("bad_image", index, f"image/encoded does not decode ({type(e).__name__}: {e})")
        return None
    if (width, height) == (out_w, out_h) and fmt == "JPEG":
        jpeg = ex.image  # already what we write: no re-encoding
        brightness = mean_luma(small)  # of the 1/8-scale decode: block means, the same mean
    else:
        try:
            im, _, _ = _open_image(ex.image, out_w, out_h)
        except Exception as e:  # noqa: BLE001
            result.problem("bad_image", index, f"image/encoded does not decode ({type(e).__name__}: {e})")
            return None
        im = _resize(im, out_w, out_h)
        jpeg = _encode_jpeg(im, p.jpeg_quality)
        brightness = mean_luma(im)
    ok_type, counts = _label_reasons(ex.labels)
    b = np.asarray(ex.boxes, np.float64).reshape(-1, 4)[ok_type]
    keep, x0, y0, x1, y1, box_counts = _clean_boxes(
        b[:, 1], b[:, 0], b[:, 3], b[:, 2], 1.0, 1.0, out_w, out_h, p.min_box_px**2
    )
    counts.update(box_counts)
    _note_label_problems(result, index, counts)
    boxes = np.stack([y0[keep], x0[keep], y1[keep], x1[keep]], axis=1).astype(np.float32).reshape(-1, 4)
    labels = np.asarray(ex.labels, np.int32)[ok_type][keep]
    return jpeg, boxes, labels, None, {"brightness": brightness}


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
    p = _Params(
        fp.CameraName(fp.camera_id(camera)).name, _size_hw(size), int(stride), float(min_box_px), int(jpeg_quality)
    )
    if p.stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
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
    fmt: str | None = None
    writer = None
    pending_unknown: list[tuple[int, str]] = []
    try:
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
                    sniffed, parsed = _classify(data)
                    if sniffed is None:
                        pending_unknown.append((index, parsed))
                        if len(pending_unknown) >= _SNIFF_RECORDS:
                            break
                        continue
                    fmt = result.format = sniffed
                    for bad_index, why in pending_unknown:
                        result.problem("corrupt_record", bad_index, why)
                    pending_unknown.clear()
                if fmt in ("raw", "v2") and index % p.stride:
                    continue
                result.frames_selected += 1
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
                    continue
                if fmt == "processed":
                    converted = _convert_processed(item, index, result, p)
                else:  # v1 and v2 camera frames: one conversion
                    frame = item if fmt == "v2" else _frame_from_proto(item, index, p.camera)
                    converted = _convert_camera(frame, result, p)
                if converted is None:
                    continue
                jpeg, boxes, labels, ts, stats = converted
                out_h, out_w = p.size
                example = DetectionExample(
                    image=jpeg,
                    height=out_h,
                    width=out_w,
                    filename=f"{trip}_{index:04d}.jpg",
                    source_id=f"{trip}/{index}",
                    boxes=boxes,
                    labels=labels,
                    image_format="jpeg",
                )
                if writer is None:
                    writer = tf.io.TFRecordWriter(str(tmp))
                writer.write(encode_example(example))
                result.frames_written += 1
                for lid in labels:
                    result.objects[LABEL_MAP[int(lid)]] += 1
                result.rows.append(_row(trip, index, labels, hashlib.sha1(jpeg).hexdigest(), out_path, ts, stats))
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
    except BaseException:
        discard_temp(tmp)
        raise
    finally:
        if writer is not None:
            writer.close()
        _flush_label_notes(result)
    if result.frames_written:
        commit_temp(tmp, out_path)  # atomic, recorded as the project's
        result.output = str(out_path)
    else:
        discard_temp(tmp)
        remove_owned(out_path)  # no stale output from an earlier run (only ever a file the project wrote)
    result.seconds = time.perf_counter() - t0
    return result


# ------------------------------------------------------------ many files
def _sidecar(out_path: Path) -> Path:
    return out_path.with_name(out_path.name[: -len(".tfrecord")] + ".ingest.json")


def _input_stamp(path: Path) -> dict:
    if is_v2_segment(path):  # image, box and stats files of the segment
        return v2.input_stamp(path)
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _params_dict(p: _Params) -> dict:
    return {
        "camera": p.camera,
        "size": list(p.size),
        "stride": p.stride,
        "min_box_px": p.min_box_px,
        "jpeg_quality": p.jpeg_quality,
        "version": INGEST_VERSION,
    }


def _load_if_current(path: Path, out_path: Path, params: dict) -> TripResult | None:
    side = _sidecar(out_path)
    try:
        meta = json.loads(side.read_text())
        stamp = _input_stamp(path)
    except (OSError, ValueError):
        return None
    if meta.get("params") != params or meta.get("input") != stamp:
        return None
    result = TripResult.from_dict(meta["result"])
    if result.frames_written:
        if not out_path.is_file() or out_path.stat().st_mtime_ns < stamp["mtime_ns"]:
            return None
    elif side.stat().st_mtime_ns < stamp["mtime_ns"]:
        return None
    result.reused = True
    return result


def _convert_and_record(path: str, out_path: str, params: dict) -> TripResult:
    path_, out_ = Path(path), Path(out_path)
    result = convert_trip(
        path_,
        out_,
        camera=params["camera"],
        size=tuple(params["size"]),
        stride=params["stride"],
        min_box_px=params["min_box_px"],
        jpeg_quality=params["jpeg_quality"],
    )
    if path_.is_file():
        meta = {"params": params, "input": _input_stamp(path_), "result": result.to_dict()}
        write_text(_sidecar(out_), json.dumps(meta, indent=1))  # atomic, recorded as the project's
    return result


def _worker_init() -> None:
    """Run once in every helper process or Ray worker: one TensorFlow thread, as each converts one file."""
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = "1"
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # context already initialised
        pass


def _convert_task(path: str, out_path: str, params: dict) -> dict:
    """One task of the parallel executor: convert one source and stamp it; the result as plain data."""
    return _convert_and_record(path, out_path, params).to_dict()


def _failed(path: Path, error: BaseException, where: str) -> TripResult:
    r = TripResult(trip=trip_name(path), source=str(path))
    place = "" if where == "here" else f" in a {where} worker"
    r.problem("worker_error", None, f"conversion failed{place}: {type(error).__name__}: {error}")
    return r


def warm_pool(workers: int) -> None:
    """Start the ``workers - 1`` helper processes of ``ingest_files(..., workers, keep_pool=True)`` now."""
    executor.warm_pool(workers, initializer=_worker_init)


shutdown_pool = executor.shutdown_pool  # stops the helpers (and embedded Ray) that keep_pool=True kept


def _resolve_inputs(paths) -> tuple[list[Path], str]:
    if isinstance(paths, (str, os.PathLike)):
        folder = Path(paths)
        if folder.is_dir():
            return find_sources(folder), str(folder)
        return [folder], str(folder.parent)
    files = [Path(p) for p in paths]
    parents = sorted({str(p.parent) for p in files})
    return files, (parents[0] if len(parents) == 1 else ", ".join(parents[:3]) + (" ..." if len(parents) > 3 else ""))


def ingest_files(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    workers: int = 2,
    camera: str = "FRONT",
    size=(640, 640),
    stride: int = 10,
    min_box_px: float = 1.0,
    jpeg_quality: int = 90,
    force: bool = False,
    progress: bool = True,
    keep_pool: bool = False,
    ray_address: str | None = None,
) -> IngestResult:
    """Convert many sources (a folder, see :func:`find_sources`, or a list of paths) into ``out_dir/<trip>.tfrecord``.

    Each source is one task of the parallel executor (:mod:`urban_detection.waymo.executor`),
    one TensorFlow thread each. By default ``workers`` local processes share them: the
    calling one plus up to ``workers - 1`` helpers started with the ``spawn`` method. The
    caller starts converting at once; helpers are spawned only when the remaining work
    outweighs their start-up (importing TensorFlow takes seconds). With
    ``keep_pool=True`` helpers stay up for later calls (see :func:`warm_pool`,
    :func:`shutdown_pool`). Scripts using ``workers > 1`` need the usual
    ``if __name__ == "__main__":`` guard of the spawn start method.

    ``ray_address`` runs one Ray task per source instead: ``"local"`` on Ray embedded on
    ``workers`` local cores, or on an existing cluster (``"auto"``, ``"host:6379"``,
    ``"ray://host:10001"``), which runs as many at once as it has CPUs. With no address,
    Ray is used when ``RAY_ADDRESS`` is set or this process is already connected to Ray.
    On a cluster every node needs the project installed, must read each source at the
    path given here and write to ``out_dir`` at the same path (shared storage), as the
    caller reads the outputs and ``<trip>.ingest.json`` stamps written there by the nodes.

    A trip whose output is newer than its input and whose sidecar
    ``<trip>.ingest.json`` records the same input and parameters is not converted
    again; its stored result is reused (``force=True`` converts everything). Warnings
    from helper processes and Ray workers are re-logged in the caller. Raises ``ValueError`` naming
    the folder when no usable frame was found in any file.
    """
    files, folder = _resolve_inputs(paths)
    if not files:
        raise ValueError(f"No *.tfrecord files nor Waymo v2 camera_image/*.parquet segments found in {folder}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p = _Params(
        fp.CameraName(fp.camera_id(camera)).name, _size_hw(size), int(stride), float(min_box_px), int(jpeg_quality)
    )
    if p.stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    params = _params_dict(p)

    results: dict[int, TripResult] = {}
    todo: list[tuple[int, Path, Path]] = []
    seen: dict[str, Path] = {}
    for i, path in enumerate(files):
        trip = trip_name(path)
        if trip in seen:
            r = TripResult(trip=trip, source=str(path))
            r.problem("duplicate_trip", None, f"trip name {trip!r} already taken by {seen[trip]}; file ignored")
            results[i] = r
            continue
        seen[trip] = path
        out_path = out_dir / f"{trip}.tfrecord"
        cached = None if force else _load_if_current(path, out_path, params)
        if cached is not None:
            results[i] = cached
        else:
            todo.append((i, path, out_path))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(files), initial=len(results), desc="ingest", unit="trip", disable=not progress)
    t0, frames = time.perf_counter(), 0

    def done(i: int, r: TripResult):
        nonlocal frames
        results[i] = r
        frames += r.frames_written
        bar.update(1)
        bar.set_postfix(frames=frames, fps=f"{frames / max(time.perf_counter() - t0, 1e-9):.1f}")

    try:
        tasks = [executor.Task((i, path), (str(path), str(out_path), params)) for i, path, out_path in todo]
        for f in executor.run_tasks(
            _convert_task,
            tasks,
            workers=max(1, min(int(workers), len(todo))),
            ray_address=ray_address,
            initializer=_worker_init,
            keep_pool=keep_pool,
        ):
            i, path = f.key
            done(i, _failed(path, f.error, f.where) if f.error is not None else TripResult.from_dict(f.value))
    finally:
        bar.close()

    result = IngestResult([results[i] for i in range(len(files))], source=folder)
    rep = result.report
    if rep["frames_written"] == 0:
        raise ValueError(
            f"No usable frame in {folder}: {rep['files']} file(s) read, skipped {rep['skipped']}. Expected Waymo v1 "
            "segment files (Frame protos with camera images), Waymo v2 segments (camera_image/ and camera_box/ "
            "Parquet files) or TF Object Detection API tf.Example TFRecords."
        )
    logger.info(
        "ingest: %d file(s), %d trip(s), %d/%d frames written (%d reused trips), objects %s, skipped %s",
        rep["files"],
        rep["trips"],
        rep["frames_written"],
        rep["frames_read"],
        rep["reused_trips"],
        rep["objects_written"],
        rep["skipped"],
    )
    return result


__all__ = [
    "INDEX_COLUMNS",
    "IngestResult",
    "RecordReadError",
    "SKIP_REASONS",
    "TripResult",
    "convert_trip",
    "detect_format",
    "ingest_files",
    "iter_records",
    "shutdown_pool",
    "trip_name",
    "warm_pool",
]
