"""Idempotence stamps of an ingest: the ``<trip>.ingest.json`` sidecar that lets an up-to-date trip be reused.

A stamp records the input (path, size and modification time; for a v2 segment those of
its component files), the conversion parameters with :data:`INGEST_VERSION` and the
trip's :class:`~urban_detection.waymo.trip_result.TripResult`. A trip whose output is
newer than its input and whose stamp records the same input and parameters is not
converted again (:func:`load_if_current`).
"""

from __future__ import annotations

import json
from pathlib import Path

from urban_detection.files import write_text
from urban_detection.waymo import v2
from urban_detection.waymo.convert import Params
from urban_detection.waymo.sources import is_v2_segment
from urban_detection.waymo.trip_result import TripResult

INGEST_VERSION = 2  # 2: frame index rows carry brightness


def sidecar(out_path: Path) -> Path:
    """The stamp of the trip output ``out_path``: ``<trip>.ingest.json`` beside it."""
    return out_path.with_name(out_path.name[: -len(".tfrecord")] + ".ingest.json")


def input_stamp(path: Path) -> dict:
    if is_v2_segment(path):  # image, box and stats files of the segment
        return v2.input_stamp(path)
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def params_dict(p: Params) -> dict:
    """The parameters as stamped (and handed to conversion tasks), with :data:`INGEST_VERSION`."""
    return {
        "camera": p.camera,
        "size": list(p.size),
        "stride": p.stride,
        "min_box_px": p.min_box_px,
        "jpeg_quality": p.jpeg_quality,
        "version": INGEST_VERSION,
    }


def load_if_current(path: Path, out_path: Path, params: dict) -> TripResult | None:
    """The stamped result of ``path`` converted to ``out_path`` with ``params`` when still current, else None."""
    side = sidecar(out_path)
    try:
        meta = json.loads(side.read_text())
        stamp = input_stamp(path)
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


def write_stamp(path: Path, out_path: Path, params: dict, result: TripResult) -> None:
    """Stamp ``result`` of converting ``path`` to ``out_path`` (when the input file exists)."""
    if path.is_file():
        meta = {"params": params, "input": input_stamp(path), "result": result.to_dict()}
        write_text(sidecar(out_path), json.dumps(meta, indent=1))  # atomic, recorded as the project's
