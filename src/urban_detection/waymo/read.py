"""Reading trip TFRecords of TF OD API tf.Examples for exploration. No Kedro here.

- :func:`read_boxes_table` parses only the size, box and label keys of every record
  (batched ``tf.io.parse_example``, no image decode) into one row per box.
- :func:`read_frames` decodes the images of a few chosen frames (galleries, brightness).
- :func:`iter_examples` yields the raw records of trip files.

Bad input never raises for one record: a record that does not parse, or whose box lists
disagree, is logged (file and record index) and counted in the optional ``report`` dict;
a truncated or unreadable file keeps the records read before the damage.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image

from urban_detection.waymo.example import CLASS_IDS, FEATURE_SPEC, LABEL_MAP, decode_example
from urban_detection.waymo.records import RecordReadError, iter_records

log = logging.getLogger(__name__)

BOX_KEYS = (
    "image/source_id",
    "image/height",
    "image/width",
    "image/object/bbox/ymin",
    "image/object/bbox/xmin",
    "image/object/bbox/ymax",
    "image/object/bbox/xmax",
    "image/object/class/label",
    "image/object/class/text",
)
BOX_SPEC = {k: FEATURE_SPEC[k] for k in BOX_KEYS}
BOX_COLUMNS = [
    "path", "record", "source_id", "trip", "frame", "height", "width",
    "label", "class", "ymin", "xmin", "ymax", "xmax",
]
_COORDS = ("ymin", "xmin", "ymax", "xmax")
_READ_ERRORS = (tf.errors.DataLossError, tf.errors.NotFoundError, tf.errors.InvalidArgumentError, OSError,
                RecordReadError)


def _record_batches(file: Path, size: int) -> Iterator[list[bytes]]:
    """The file's records in lists of at most ``size``, read by TensorFlow's C++ record reader (no tf.data
    pipeline built per file: that costs tens of milliseconds a file). Raises :class:`RecordReadError`
    where the file breaks."""
    batch: list[bytes] = []
    for _, record in iter_records(file):
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Frame:
    """One decoded frame: uint8 HxWx3 image, normalised boxes, label-map ids."""

    path: str
    record: int
    source_id: str
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def resolve_path(path: str | Path, root: str | Path | None = None) -> Path:
    """``path`` as is when it exists (or is absolute), else relative to ``root`` when given."""
    p = Path(path)
    if p.is_absolute() or root is None or p.exists():
        return p
    return Path(root) / p


def split_source_id(source_id: str, path: str | Path, record: int) -> tuple[str, int]:
    """``<trip>/<frame>`` -> (trip, frame); falls back to (file stem, record index)."""
    trip, sep, frame = source_id.rpartition("/")
    if sep and trip and frame.lstrip("-").isdigit():
        return trip, int(frame)
    return Path(path).stem, int(record)


def _tf_message(exc: Exception) -> str:
    """The useful part of a TensorFlow error message (without the op's node name)."""
    return re.sub(r"\{\{function_node [^}]*\}\}\s*", "", str(exc)).splitlines()[0][:300]


def _count(report: dict | None, reason: str) -> None:
    if report is not None:
        skipped = report.setdefault("skipped", {})
        skipped[reason] = skipped.get(reason, 0) + 1


class _Progress:
    """Logs ``done/total`` with a rate and an ETA at most every ``every_s`` seconds."""

    def __init__(self, what: str, total: int, unit: str, every_s: float = 5.0):
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.start = self.last = time.monotonic()
        self.items = 0

    def update(self, done: int, items: int) -> None:
        self.items += items
        now = time.monotonic()
        if now - self.last < self.every_s and done < self.total:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        eta = elapsed / max(done, 1) * (self.total - done)
        log.info(
            "%s: %d/%d files, %d %s (%.0f %s/s), ETA %.0fs",
            self.what, done, self.total, self.items, self.unit, self.items / elapsed, self.unit, eta,
        )


def iter_examples(paths: Iterable[str | Path], report: dict | None = None) -> Iterator[tuple[str, int, bytes]]:
    """Yield ``(path, record index, serialized tf.Example)`` for every record of ``paths``.

    A missing, unreadable or truncated file is logged and counted; the records read
    before the damage are still yielded.
    """
    for path in paths:
        path = str(path)
        i = -1
        try:
            for i, record in enumerate(tf.data.TFRecordDataset(path)):
                yield path, i, record.numpy()
        except _READ_ERRORS as exc:
            log.warning("%s: read error after %d record(s) (%s); keeping those", path, i + 1, _tf_message(exc))
            _count(report, "unreadable_file")


def _parse_batch(serialized: list[bytes], path: str, first: int, report: dict | None) -> list[tuple[int, dict]]:
    """Parse a batch with the box keys; on failure fall back to record by record."""
    try:
        return [(first, tf.io.parse_example(tf.constant(serialized), BOX_SPEC))]
    except tf.errors.InvalidArgumentError:
        out = []
        for j, s in enumerate(serialized):
            try:
                out.append((first + j, tf.io.parse_example(tf.constant([s]), BOX_SPEC)))
            except tf.errors.InvalidArgumentError as exc:
                log.warning("%s record %d: not a tf.Example with the TF OD API keys (%s); skipped",
                            path, first + j, _tf_message(exc))
                _count(report, "unparsable_record")
        return out


def _rows_from_parsed(parsed: dict, path: str, first: int, report: dict | None) -> pd.DataFrame | None:
    """Turn one parse_example result (a batch starting at record ``first``) into box rows."""
    n = int(parsed["image/height"].shape[0])
    source_ids = [s.decode(errors="replace") for s in parsed["image/source_id"].numpy()]
    heights = parsed["image/height"].numpy()
    widths = parsed["image/width"].numpy()

    def values_and_counts(key):
        sp = parsed[key]
        rows = sp.indices.numpy()[:, 0] if sp.indices.shape[0] else np.zeros(0, np.int64)
        return sp.values.numpy(), np.bincount(rows, minlength=n)

    coords = {c: values_and_counts(f"image/object/bbox/{c}") for c in _COORDS}
    counts = coords["ymin"][1]
    labels, label_counts = values_and_counts("image/object/class/label")
    texts, text_counts = values_and_counts("image/object/class/text")
    # Converters that write only the class text: map it to the label-map id.
    use_text = np.all(label_counts == 0) and np.any(text_counts > 0)
    if use_text:
        labels = np.asarray([CLASS_IDS.get(t.decode(errors="replace"), 0) for t in texts], np.int64)
        label_counts = text_counts

    ok = np.ones(n, bool)
    for c in _COORDS[1:]:
        ok &= coords[c][1] == counts
    ok &= label_counts == counts
    for j in np.flatnonzero(~ok):
        log.warning("%s record %d (%s): box coordinate and label lists have different lengths; skipped",
                    path, first + j, source_ids[j])
        _count(report, "inconsistent_boxes")
    if not ok.all():  # drop the values of the bad examples from every list
        keep = {}
        for c in _COORDS:
            keep[c] = np.repeat(ok, coords[c][1])
        keep_label = np.repeat(ok, label_counts)
        coords = {c: (coords[c][0][keep[c]], np.where(ok, coords[c][1], 0)) for c in _COORDS}
        labels = labels[keep_label]
        counts = np.where(ok, counts, 0)

    example = np.repeat(np.arange(n), counts)
    if not len(example):
        return None
    trips_frames = [split_source_id(source_ids[j], path, first + j) for j in range(n)]
    labels = labels.astype(np.int32)
    return pd.DataFrame(
        {
            "path": path,
            "record": (first + example).astype(np.int64),
            "source_id": np.asarray(source_ids, dtype=object)[example],
            "trip": np.asarray([t for t, _ in trips_frames], dtype=object)[example],
            "frame": np.asarray([f for _, f in trips_frames], np.int64)[example],
            "height": heights[example].astype(np.int32),
            "width": widths[example].astype(np.int32),
            "label": labels,
            "class": [LABEL_MAP.get(int(i), f"class_{int(i)}") for i in labels],
            **{c: coords[c][0].astype(np.float32) for c in _COORDS},
        }
    )


def _read_file_robustly(file: Path, path: str, batch_size: int, report: dict | None) -> tuple[list, int]:
    """Record by record (parsed in chunks), so a damaged file keeps every record before the damage."""
    parts: list[pd.DataFrame] = []
    chunk: list[bytes] = []
    first = 0

    def flush():
        nonlocal first, chunk
        for start, parsed in _parse_batch(chunk, path, first, report):
            rows = _rows_from_parsed(parsed, path, start, report)
            if rows is not None:
                parts.append(rows)
        first += len(chunk)
        chunk = []

    try:
        for record in tf.data.TFRecordDataset(str(file)):
            chunk.append(record.numpy())
            if len(chunk) >= batch_size:
                flush()
    except _READ_ERRORS as exc:
        log.warning("%s: read error after %d record(s) (%s); keeping those",
                    path, first + len(chunk), _tf_message(exc))
        _count(report, "unreadable_file")
    if chunk:
        flush()
    return parts, first


def read_boxes_table(
    paths: Iterable[str | Path],
    report: dict | None = None,
    root: str | Path | None = None,
    batch_size: int = 256,
) -> pd.DataFrame:
    """One row per box of every record of ``paths``, without decoding any image.

    Columns: ``path, record, source_id, trip, frame, height, width, label, class,
    ymin, xmin, ymax, xmax`` (boxes normalised, labels label-map ids). ``trip`` and
    ``frame`` come from ``image/source_id`` (``<trip>/<frame>``). Progress (files,
    frames/s, ETA) is logged. ``report`` (optional dict) receives ``files``, ``frames``
    and counts of skipped input under ``skipped``.
    """
    paths = [str(p) for p in dict.fromkeys(str(p) for p in paths)]
    progress = _Progress("read boxes", len(paths), "frames")
    parts: list[pd.DataFrame] = []
    frames = 0
    for done, path in enumerate(paths, start=1):
        file_frames = 0
        file = resolve_path(path, root)
        file_parts: list[pd.DataFrame] = []
        file_report: dict = {}
        try:  # fast path: batches parsed by TensorFlow, the image bytes never reach Python
            for batch in _record_batches(file, batch_size):
                parsed = tf.io.parse_example(tf.constant(batch), BOX_SPEC)
                rows = _rows_from_parsed(parsed, path, file_frames, file_report)
                if rows is not None:
                    file_parts.append(rows)
                file_frames += int(parsed["image/height"].shape[0])
        except _READ_ERRORS:  # a bad record or file: again record by record, keeping what is usable
            file_report = {}
            file_parts, file_frames = _read_file_robustly(file, path, batch_size, file_report)
        for reason, n in file_report.get("skipped", {}).items():
            for _ in range(n):
                _count(report, reason)
        parts.extend(file_parts)
        frames += file_frames
        progress.update(done, file_frames)
    if report is not None:
        report["files"] = len(paths)
        report["frames"] = frames
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(BOX_COLUMNS, [
            object, np.int64, object, object, np.int64, np.int32, np.int32, np.int32, object,
            np.float32, np.float32, np.float32, np.float32])})
    return pd.concat(parts, ignore_index=True)[BOX_COLUMNS]


def decode_image(encoded: bytes, jpeg_ratio: int = 1) -> np.ndarray:
    """Decode JPEG/PNG bytes to uint8 HxWx3. ``jpeg_ratio`` (1, 2, 4, 8) downscales JPEGs while decoding."""
    if encoded[:2] == b"\xff\xd8":
        return tf.io.decode_jpeg(encoded, channels=3, ratio=int(jpeg_ratio)).numpy()
    return tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()


def _fit(image: np.ndarray, max_side: int | None) -> np.ndarray:
    if not max_side or max(image.shape[:2]) <= max_side:
        return image
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


_SOURCE_ID_SPEC = {"image/source_id": FEATURE_SPEC["image/source_id"]}


def _matching_records(file: Path, sids: set[str], batch_size: int = 256) -> Iterator[tuple[int, bytes]]:
    """(record index, bytes) of the records whose source id is in ``sids`` (only the ids are parsed)."""
    first = 0
    for batch in _record_batches(file, batch_size):
        ids = tf.io.parse_example(tf.constant(batch), _SOURCE_ID_SPEC)["image/source_id"].numpy()
        for j, sid in enumerate(ids):
            if sid.decode(errors="replace") in sids:
                yield first + j, batch[j]
        first += len(batch)


def _matching_records_robustly(file: Path, path: str, sids: set[str], report: dict | None):
    for _, record, serialized in iter_examples([file], report):
        try:
            sid = tf.io.parse_single_example(serialized, _SOURCE_ID_SPEC)["image/source_id"].numpy()
        except tf.errors.InvalidArgumentError as exc:
            log.warning("%s record %d: not a tf.Example (%s); skipped", path, record, _tf_message(exc))
            _count(report, "unparsable_record")
            continue
        if sid.decode(errors="replace") in sids:
            yield record, serialized


def read_frames(
    wanted: Iterable[tuple[str, str]],
    root: str | Path | None = None,
    max_side: int | None = None,
    jpeg_ratio: int = 1,
    report: dict | None = None,
) -> list[Frame]:
    """Decode the frames ``wanted`` as ``(trip TFRecord path, image/source_id)`` pairs.

    Returns :class:`Frame` objects in the order first asked (once each); frames not found are logged and
    left out. Each file is read once, the records are picked by their parsed source ids,
    and only those have their image decoded (``jpeg_ratio`` downscales JPEGs while
    decoding, ``max_side`` resizes afterwards). A file with a bad record is read again
    record by record, keeping every good one.
    """
    wanted = [(str(p), str(s)) for p, s in wanted]
    by_path: dict[str, set[str]] = {}
    for path, sid in wanted:
        by_path.setdefault(path, set()).add(sid)
    found: dict[tuple[str, str], Frame] = {}
    progress = _Progress("decode frames", len(by_path), "images")
    for done, (path, sids) in enumerate(by_path.items(), start=1):
        file = resolve_path(path, root)
        try:
            records = list(_matching_records(file, sids))
        except _READ_ERRORS:
            records = list(_matching_records_robustly(file, path, sids, report))
        n_before = len(found)
        for record, serialized in records:
            try:
                ex = decode_example(serialized)
                if (path, ex.source_id) in found:
                    continue
                image = _fit(decode_image(ex.image, jpeg_ratio), max_side)
            except (ValueError, tf.errors.InvalidArgumentError) as exc:
                log.warning("%s record %d: cannot decode (%s); skipped", path, record, _tf_message(exc))
                _count(report, "undecodable_image")
                continue
            found[(path, ex.source_id)] = Frame(path, record, ex.source_id, image, ex.boxes, ex.labels)
        progress.update(done, len(found) - n_before)
    for path, sid in wanted:
        if (path, sid) not in found:
            log.warning("%s: frame %s not found; left out", path, sid)
            _count(report, "frame_not_found")
    return [found[w] for w in dict.fromkeys(wanted) if w in found]
