"""Ingest Waymo trips: raw v1 segments or processed tf.Example files to training TFRecords.

One input file is one trip. :func:`convert_trip` reads either

* a **raw** Waymo Open Dataset v1 segment (TFRecord of ``Frame`` protos): keeps every
  ``stride``-th frame, takes the chosen camera's JPEG and 2D ``camera_labels``
  (pixel centre/length/width), resizes the image to ``size`` and converts boxes to
  normalised ``[ymin, xmin, ymax, xmax]``; or
* a **processed** file (TF Object Detection API tf.Examples, e.g. made by the
  original project's ``download_process.py``): every frame passes through after
  validation; JPEGs already at ``size`` are copied byte for byte,

and writes one TFRecord of tf.Examples (:func:`urban_detection.waymo.example.encode_example`)
with ``image/source_id = "<trip>/<frame index>"``.

Bad input never raises: each problem is logged as a warning naming the file and the
record index and counted under a reason key (see :data:`SKIP_REASONS`). Record-level
failures (a frame or file lost) are also listed in ``errors``; label and box problems
are counted per box and warned once per file and reason, listing the records.
:func:`ingest_files` converts many files in parallel processes, skips trips that are
already up to date, and raises ``ValueError`` only when no usable frame remains at all.

Box rules (sizes in pixels of the *output* image): non-finite coordinates
(``box_non_finite``), zero or negative extent (``box_zero_area``), wholly outside the
image (``box_outside``), partly outside (clipped to the image, kept, counted as
``box_clipped``), area below ``min_box_px ** 2`` after clipping (``box_zero_area``).
Labels other than vehicle/pedestrian/cyclist are dropped (``label_sign``,
``label_unknown``).

``image_hash`` in the frame index is the SHA-1 of the JPEG bytes written (``image/encoded``).
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import hashlib
import io
import json
import logging
import multiprocessing
import os
import re
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import tensorflow as tf
from PIL import Image

from urban_detection.waymo import frame_proto as fp
from urban_detection.waymo.example import CLASS_NAMES, LABEL_MAP, DetectionExample, decode_example, encode_example

logger = logging.getLogger(__name__)

INGEST_VERSION = 1
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
    """``"raw"`` (Waymo Frame protos), ``"processed"`` (tf.Example), ``"empty"`` or ``"unknown"``.

    Looks at the first readable records (up to three) of the file.
    """
    path = Path(path)
    if not path.is_file():
        return _UNKNOWN
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
    """Trip name of an input file: its name without ``.tfrecord`` (and ``.gz``)."""
    name = Path(path).name
    for suffix in (".gz", ".tfrecord", ".tfrecords"):
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


def _validate_jpeg(data: bytes) -> tuple[int, int, str]:
    """Check that the bitstream decodes (at 1/8 scale, cheap); return width, height, format."""
    im = Image.open(io.BytesIO(data))
    width, height = im.size
    fmt = im.format or ""
    if fmt == "JPEG":
        im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
    im.load()
    return width, height, fmt


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
    }


def _convert_raw(frame, index: int, result: TripResult, p: _Params):
    """One raw Frame to (tf.Example bytes, labels, row) or None when skipped."""
    out_h, out_w = p.size
    data = fp.find_image(frame, p.camera)
    if data is None:
        cams = sorted(
            {
                fp.CameraName(i.name).name if i.name in fp.CameraName._value2member_map_ else str(i.name)
                for i in frame.images
            }
        )
        result.problem("no_camera_image", index, f"no {p.camera} camera image (cameras present: {cams or 'none'})")
        return None
    try:
        im, width, height = _open_image(data, out_w, out_h)
    except Exception as e:  # noqa: BLE001 - any decoder failure
        result.problem("bad_image", index, f"{p.camera} image does not decode ({type(e).__name__}: {e})")
        return None
    im = _resize(im, out_w, out_h)
    jpeg = _encode_jpeg(im, p.jpeg_quality)

    labels = fp.find_labels(frame, p.camera) or []
    n = len(labels)
    types = np.fromiter((lab.type for lab in labels), np.int64, n)
    cx = np.fromiter((lab.box.center_x for lab in labels), np.float64, n)
    cy = np.fromiter((lab.box.center_y for lab in labels), np.float64, n)
    ln = np.fromiter((lab.box.length for lab in labels), np.float64, n)
    wd = np.fromiter((lab.box.width for lab in labels), np.float64, n)
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
    stats = frame.context.stats
    return (
        jpeg,
        boxes.astype(np.float32).reshape(-1, 4),
        label_ids,
        frame.timestamp_micros,
        {
            "time_of_day": stats.time_of_day,
            "weather": stats.weather,
            "location": stats.location,
        },
    )


def _convert_processed(ex: DetectionExample, index: int, result: TripResult, p: _Params):
    out_h, out_w = p.size
    try:
        width, height, fmt = _validate_jpeg(ex.image)
    except Exception as e:  # noqa: BLE001
        result.problem("bad_image", index, f"image/encoded does not decode ({type(e).__name__}: {e})")
        return None
    if (width, height) == (out_w, out_h) and fmt == "JPEG":
        jpeg = ex.image  # already what we write: no re-encoding
    else:
        try:
            im, _, _ = _open_image(ex.image, out_w, out_h)
        except Exception as e:  # noqa: BLE001
            result.problem("bad_image", index, f"image/encoded does not decode ({type(e).__name__}: {e})")
            return None
        im = _resize(im, out_w, out_h)
        jpeg = _encode_jpeg(im, p.jpeg_quality)
    ok_type, counts = _label_reasons(ex.labels)
    b = np.asarray(ex.boxes, np.float64).reshape(-1, 4)[ok_type]
    keep, x0, y0, x1, y1, box_counts = _clean_boxes(
        b[:, 1], b[:, 0], b[:, 3], b[:, 2], 1.0, 1.0, out_w, out_h, p.min_box_px**2
    )
    counts.update(box_counts)
    _note_label_problems(result, index, counts)
    boxes = np.stack([y0[keep], x0[keep], y1[keep], x1[keep]], axis=1).astype(np.float32).reshape(-1, 4)
    labels = np.asarray(ex.labels, np.int32)[ok_type][keep]
    return jpeg, boxes, labels, None, None


def convert_trip(
    path: str | os.PathLike,
    out_path: str | os.PathLike,
    camera: str = "FRONT",
    size=(640, 640),
    stride: int = 10,
    min_box_px: float = 1.0,
    jpeg_quality: int = 90,
) -> TripResult:
    """Convert one raw or processed trip file to a TFRecord of TF OD API tf.Examples.

    ``size`` is ``(height, width)`` of the written images. ``stride`` applies to raw
    segments only (processed files keep all frames). The output is written only
    when at least one frame survives (atomically, through a temporary file).
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

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".tmp{os.getpid()}")
    fmt: str | None = None
    writer = None
    pending_unknown: list[tuple[int, str]] = []
    try:
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
                if fmt == "raw" and index % p.stride:
                    continue
                result.frames_selected += 1
                try:
                    if fmt == "raw":
                        item = parsed if parsed is not None else fp.Frame.FromString(data)
                    else:
                        item = decode_example(data)
                except Exception as e:  # noqa: BLE001 - any parse failure of one record
                    what = "Frame proto" if fmt == "raw" else "tf.Example"
                    result.problem("corrupt_record", index, f"bad {what} ({type(e).__name__}: {e})")
                    continue
                if fmt == "raw":
                    converted = _convert_raw(item, index, result, p)
                else:
                    converted = _convert_processed(item, index, result, p)
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
    finally:
        if writer is not None:
            writer.close()
        _flush_label_notes(result)
    if result.frames_written:
        os.replace(tmp, out_path)
        result.output = str(out_path)
    else:
        tmp.unlink(missing_ok=True)
        out_path.unlink(missing_ok=True)  # no stale output from an earlier run
    result.seconds = time.perf_counter() - t0
    return result


# ------------------------------------------------------------ many files
def _sidecar(out_path: Path) -> Path:
    return out_path.with_name(out_path.name[: -len(".tfrecord")] + ".ingest.json")


def _input_stamp(path: Path) -> dict:
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
        side = _sidecar(out_)
        tmp = side.with_name(side.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, side)
    return result


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[tuple[int, str]] = []

    def emit(self, record):
        self.records.append((record.levelno, record.getMessage()))


def _worker_init() -> None:
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = "1"
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # context already initialised
        pass


def _worker_task(path: str, out_path: str, params: dict) -> tuple[dict, list[tuple[int, str]]]:
    """Runs in a worker process: convert one file, hand back the result and its log lines."""
    handler = _ListHandler()
    logger.addHandler(handler)
    propagate = logger.propagate
    logger.propagate = False
    try:
        result = _convert_and_record(path, out_path, params)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    return result.to_dict(), handler.records


def _worker_ping(delay: float = 0.0) -> int:
    time.sleep(delay)
    return os.getpid()


_POOL: tuple[int, cf.ProcessPoolExecutor] | None = None


def _get_pool(workers: int) -> cf.ProcessPoolExecutor:
    global _POOL
    if _POOL is not None and _POOL[0] != workers:
        shutdown_pool()
    if _POOL is None:
        ctx = multiprocessing.get_context("spawn")
        _POOL = (workers, cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init))
    return _POOL[1]


def shutdown_pool() -> None:
    """Stop the worker processes kept by ``ingest_files(..., keep_pool=True)``."""
    global _POOL
    if _POOL is not None:
        _POOL[1].shutdown(wait=True, cancel_futures=True)
        _POOL = None


def warm_pool(workers: int) -> None:
    """Start the ``workers - 1`` helper processes of ``ingest_files(..., workers, keep_pool=True)`` now."""
    if workers > 1:
        pool = _get_pool(workers - 1)
        list(pool.map(_worker_ping, [0.2] * (workers - 1)))


atexit.register(shutdown_pool)


def _convert_here(path: Path, out_path: Path, params: dict) -> TripResult:
    try:
        return _convert_and_record(str(path), str(out_path), params)
    except Exception as e:  # noqa: BLE001 - keep going with the other files
        r = TripResult(trip=trip_name(path), source=str(path))
        r.problem("worker_error", None, f"conversion failed: {type(e).__name__}: {e}")
        return r


POOL_STARTUP_SECONDS = 5.0  # about what a spawned process needs to import TensorFlow


def _run_parallel(todo, params: dict, n_workers: int, done, keep_pool: bool) -> None:
    """Convert ``todo`` with the calling process plus up to ``n_workers - 1`` spawned ones.

    The caller starts converting at once (files from the back of the queue). Helper
    processes are spawned only when the remaining work, extrapolated from the files
    done so far, outweighs their start-up (importing TensorFlow takes seconds); once a
    helper is up it takes files from the front of the queue.
    """
    pool_size = n_workers - 1
    queue = deque(todo)
    in_flight: dict[cf.Future, tuple[int, Path]] = {}
    pool: cf.ProcessPoolExecutor | None = None
    pings: list[cf.Future] = []
    own_times: list[float] = []

    def start_pool():
        nonlocal pool, pings
        if keep_pool:
            pool = _get_pool(pool_size)
        else:
            pool = cf.ProcessPoolExecutor(
                max_workers=pool_size, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
            )
        if not warm:  # a ping answered = a helper has imported everything and is ready
            pings = [pool.submit(_worker_ping) for _ in range(pool_size)]

    def collect(futures):
        for fut in futures:
            i, path = in_flight.pop(fut)
            try:
                rdict, logs = fut.result()
                for level, msg in logs:
                    logger.log(level, msg)
                done(i, TripResult.from_dict(rdict))
            except Exception as e:  # noqa: BLE001 - e.g. a worker died
                r = TripResult(trip=trip_name(path), source=str(path))
                r.problem("worker_error", None, f"conversion failed in a worker: {type(e).__name__}: {e}")
                done(i, r)

    warm = keep_pool and _POOL is not None and _POOL[0] == pool_size
    if warm:
        start_pool()  # already running: no start-up cost
    try:
        while queue or in_flight:
            collect([f for f in list(in_flight) if f.done()])
            if pool is None and queue and own_times:
                if sum(own_times) / len(own_times) * len(queue) > POOL_STARTUP_SECONDS:
                    start_pool()
            if pool is not None:
                ready = pool_size if warm else sum(1 for f in pings if f.done() and f.exception() is None)
                while queue and len(in_flight) < 2 * ready:
                    i, path, out_path = queue.popleft()
                    in_flight[pool.submit(_worker_task, str(path), str(out_path), params)] = (i, path)
            if queue:
                i, path, out_path = queue.pop()
                t0 = time.perf_counter()
                done(i, _convert_here(path, out_path, params))
                own_times.append(time.perf_counter() - t0)
            elif in_flight:
                cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
    finally:
        if pool is not None and not keep_pool:
            # helpers still importing TensorFlow are not waited for
            pool.shutdown(wait=all(f.done() for f in pings), cancel_futures=True)


_TFRECORD_NAME = re.compile(r"\.tfrecords?(\.gz)?$|\.tfrecord-\d+-of-\d+$")


def _resolve_inputs(paths) -> tuple[list[Path], str]:
    if isinstance(paths, (str, os.PathLike)):
        folder = Path(paths)
        if folder.is_dir():
            return sorted(p for p in folder.iterdir() if p.is_file() and _TFRECORD_NAME.search(p.name)), str(folder)
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
) -> IngestResult:
    """Convert many trip files (a folder or a list of paths) into ``out_dir/<trip>.tfrecord``.

    ``workers`` processes share the files: the calling one plus up to ``workers - 1``
    helpers started with the ``spawn`` method (one TensorFlow thread each). The caller
    starts converting at once; helpers are spawned only when the remaining work
    outweighs their start-up (importing TensorFlow takes seconds). With
    ``keep_pool=True`` helpers stay up for later calls (see :func:`warm_pool`,
    :func:`shutdown_pool`). Scripts using ``workers > 1`` need the usual
    ``if __name__ == "__main__":`` guard of the spawn start method.

    A trip whose output is newer than its input and whose sidecar
    ``<trip>.ingest.json`` records the same input and parameters is not converted
    again; its stored result is reused (``force=True`` converts everything). Warnings
    from helper processes are re-logged in the caller. Raises ``ValueError`` naming
    the folder when no usable frame was found in any file.
    """
    files, folder = _resolve_inputs(paths)
    if not files:
        raise ValueError(f"No *.tfrecord files found in {folder}")
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
        n_workers = max(1, min(int(workers), len(todo)))
        if n_workers == 1:
            for i, path, out_path in todo:
                done(i, _convert_here(path, out_path, params))
        else:
            _run_parallel(todo, params, n_workers, done, keep_pool)
    finally:
        bar.close()

    result = IngestResult([results[i] for i in range(len(files))], source=folder)
    rep = result.report
    if rep["frames_written"] == 0:
        raise ValueError(
            f"No usable frame in {folder}: {rep['files']} file(s) read, skipped {rep['skipped']}. Expected Waymo v1 "
            "segment files (Frame protos with camera images) or TF Object Detection API tf.Example TFRecords."
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
