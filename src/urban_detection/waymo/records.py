"""Records of an ingest source: iterate a TFRecord file checking it, sniff its format, name its trip.

:func:`iter_records` yields the records of a (possibly GZIP) TFRecord file and raises
:class:`RecordReadError` where the file stops being readable; :func:`classify` tells one
record's format (a processed tf.Example or a raw Waymo v1 ``Frame``) and
:func:`detect_format` a whole source's, v2 segments included.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import tensorflow as tf

from urban_detection.waymo import frame_proto as fp
from urban_detection.waymo.sources import is_v2_segment

UNKNOWN = "unknown"  # an unknown format (and an unknown time of day, weather or location)
SNIFF_RECORDS = 3  # records looked at to tell a file's format


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


def classify(data: bytes):
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


def detect_format(path: str | os.PathLike) -> str:
    """``"raw"`` (Waymo Frame protos), ``"processed"`` (tf.Example), ``"v2"``, ``"empty"`` or ``"unknown"``.

    Looks at the first readable records (up to three) of the file; ``"v2"`` for an
    existing ``camera_image/<segment>.parquet`` (a Waymo v2 segment).
    """
    path = Path(path)
    if not path.is_file():
        return UNKNOWN
    if is_v2_segment(path):
        return "v2"
    if path.stat().st_size == 0:
        return "empty"
    try:
        for index, data in iter_records(path):
            kind, _ = classify(data)
            if kind:
                return kind
            if index + 1 >= SNIFF_RECORDS:
                break
    except RecordReadError:
        pass
    return UNKNOWN


def trip_name(path: str | os.PathLike) -> str:
    """Trip name of an input file: its name without ``.tfrecord`` (and ``.gz``); a v2 segment's name."""
    name = Path(path).name
    for suffix in (".gz", ".tfrecord", ".tfrecords", ".parquet"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name
