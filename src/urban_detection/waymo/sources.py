"""The sources of an ingest, and the one camera-frame record that every camera reader yields.

A *source* is the input of one trip:

* a ``*.tfrecord`` file: a Waymo Open Dataset v1 segment (``Frame`` protos) or a file of
  processed TF Object Detection API tf.Examples; or
* one Waymo Open Dataset v2 segment (Apache Parquet, one folder per component, one file
  per segment), identified by its ``camera_image/<segment>.parquet`` file; the
  ``camera_box`` and ``stats`` files of the same segment sit in the sibling folders.

:func:`find_sources` lists the sources of a folder. :class:`SourceFrame` is what the
v1 and v2 readers hand to the one conversion in :mod:`urban_detection.waymo.ingest`:
the chosen camera's encoded image and its 2D boxes in pixels (Waymo convention), so
both formats are converted by the same code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# v1 raw or processed record files, as Waymo and TensorFlow name them (plain, gzip, sharded)
TFRECORD_NAME = re.compile(r"\.tfrecords?(\.gz)?$|\.tfrecord-\d+-of-\d+$")
V2_IMAGE_DIR = "camera_image"
V2_BOX_DIR = "camera_box"
V2_STATS_DIR = "stats"


@dataclass
class SourceFrame:
    """One frame of a source, for the chosen camera, as the conversion consumes it.

    ``boxes`` rows are ``[center_x, center_y, size_x, size_y]`` in pixels of the
    source image (v1 ``Label.Box`` centre, ``length``, ``width``; v2
    ``box.center``, ``box.size``); ``types`` are Waymo ``Label.Type`` numbers (the same
    numbers as v2 ``BoxType``). ``image`` is ``None`` when the frame has no image of the
    chosen camera; ``cameras`` then names the cameras it does have. ``error`` is a
    ``(reason, detail)`` pair when the reader could not read the frame.
    """

    index: int  # frame index in the segment: v1 record index, v2 rank of the timestamp
    timestamp_micros: int | None
    image: bytes | None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float64))
    types: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    stats: dict[str, str] = field(default_factory=dict)  # time_of_day, weather, location
    cameras: tuple[str, ...] = ()
    error: tuple[str, str] | None = None


def is_v2_segment(path: str | os.PathLike) -> bool:
    """True for the identity of a v2 source: a ``camera_image/<segment>.parquet`` path."""
    p = Path(path)
    return p.suffix == ".parquet" and p.parent.name == V2_IMAGE_DIR


def v2_component_path(source: str | os.PathLike, component: str) -> Path:
    """The file of ``component`` (``camera_box``, ``stats``...) of the v2 segment ``source``."""
    p = Path(source)
    return p.parent.parent / component / p.name


def find_sources(folder: str | os.PathLike) -> list[Path]:
    """Every source in ``folder``: its record files, then one entry per v2 segment.

    Record files (``*.tfrecord``, ``*.tfrecords``, ``*.tfrecord.gz``, sharded
    ``*.tfrecord-00000-of-00004``) are listed as they are, sorted by name. When the
    folder is laid out as Waymo v2 (a ``camera_image`` folder of ``*.parquet`` files),
    each segment is listed once as its ``camera_image/<segment>.parquet`` path, also
    sorted; a segment whose ``camera_box`` file is missing is still listed (the ingest
    reports it). Returns an empty list when there is nothing to ingest.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    records = sorted(p for p in folder.iterdir() if p.is_file() and TFRECORD_NAME.search(p.name))
    image_dir = folder / V2_IMAGE_DIR
    segments = sorted(p for p in image_dir.glob("*.parquet") if p.is_file()) if image_dir.is_dir() else []
    return records + segments


__all__ = [
    "SourceFrame",
    "TFRECORD_NAME",
    "V2_BOX_DIR",
    "V2_IMAGE_DIR",
    "V2_STATS_DIR",
    "find_sources",
    "is_v2_segment",
    "v2_component_path",
]
