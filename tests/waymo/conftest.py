"""Small builders of raw and processed Waymo files for the waymo tests."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from urban_detection.waymo import frame_proto as fp
from urban_detection.waymo.example import DetectionExample, encode_example


def jpeg_bytes(width: int, height: int, seed: int = 0, quality: int = 90) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:] = rng.integers(40, 200, 3, dtype=np.uint8)
    arr[height // 4 : height // 2, width // 4 : width // 2] = 250
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_frame(
    labels=((50.0, 40.0, 40.0, 20.0, 1),),
    width: int = 200,
    height: int = 100,
    cameras=("FRONT",),
    image: bytes | None = None,
    timestamp: int = 1_000_000,
    stats=("Day", "sunny", "location_sf"),
    name: str = "ctx",
) -> bytes:
    """Serialized Frame; ``labels`` are (center_x, center_y, length, width, type) on the FRONT camera."""
    f = fp.Frame(timestamp_micros=timestamp)
    f.context.name = name
    f.context.stats.time_of_day, f.context.stats.weather, f.context.stats.location = stats
    for cam in cameras:
        f.images.add(name=fp.camera_id(cam), image=image if image is not None else jpeg_bytes(width, height))
    cl = f.camera_labels.add(name=fp.camera_id("FRONT"))
    for k, (cx, cy, ln, wd, t) in enumerate(labels):
        cl.labels.append(fp.make_label(cx, cy, ln, wd, t, id=f"obj{k}"))
    return f.SerializeToString()


def make_example(boxes, labels, width: int = 64, height: int = 64, image: bytes | None = None, sid: str = "x") -> bytes:
    return encode_example(
        DetectionExample(
            image=image if image is not None else jpeg_bytes(width, height),
            height=height,
            width=width,
            filename=f"{sid}.jpg",
            source_id=sid,
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=np.asarray(labels, np.int32),
        )
    )


def write_records(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)
    return path


def read_records(path: Path) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


@pytest.fixture
def wf():
    """Helpers to build Waymo test files."""
    return SimpleNamespace(
        jpeg=jpeg_bytes, frame=make_frame, example=make_example, write=write_records, read=read_records
    )
