"""A synthetic trip as Waymo data: v1 ``Frame`` protos or v2 component tables."""

from __future__ import annotations

import io
from typing import Sequence

from PIL import Image

from urban_detection.waymo import frame_proto as fp
from urban_detection.waymo import v2
from urban_detection.waymo.synthetic.frames import SyntheticFrame, SyntheticTrip
from urban_detection.waymo.synthetic.trip import iter_trip


def _jpeg(img: Image.Image, quality: int) -> bytes:
    """The JPEG bytes of an image."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def build_frame_proto(
    trip: SyntheticTrip, frame: SyntheticFrame, jpegs: dict[str, bytes], object_counts: dict[int, int]
):
    """The Waymo ``Frame`` proto of one synthetic frame."""
    f = fp.Frame()
    f.context.name = trip.name
    f.context.stats.time_of_day = trip.stats["time_of_day"]
    f.context.stats.weather = trip.stats["weather"]
    f.context.stats.location = trip.stats["location"]
    for t, n in sorted(object_counts.items()):
        f.context.stats.camera_object_counts.add(type=t, count=n)
    f.timestamp_micros = frame.timestamp_micros
    for cam_name, view in frame.cameras.items():
        cid = fp.camera_id(cam_name)
        h, w = view.size
        if len(f.context.camera_calibrations) < len(frame.cameras):
            f.context.camera_calibrations.add(name=cid, width=w, height=h)
        f.images.add(name=cid, image=jpegs[cam_name], pose_timestamp=frame.timestamp_micros / 1e6)
        cl = f.camera_labels.add(name=cid)
        for (cx, cy, ln, wd), t, oid in zip(view.boxes, view.types, view.ids):
            lab = cl.labels.add(type=int(t), id=oid)
            lab.box.center_x, lab.box.center_y, lab.box.length, lab.box.width = (
                float(cx),
                float(cy),
                float(ln),
                float(wd),
            )
    return f


def trip_records(
    trip_index: int,
    frames: int,
    width: int = 960,
    height: int = 640,
    seed: int = 0,
    cameras: Sequence[str] = ("FRONT", "FRONT_LEFT"),
    conditions: dict | None = None,
    jpeg_quality: int = 90,
) -> tuple[str, list[bytes]]:
    """Render one trip: its segment name and serialized Frame protos (numpy/PIL only, no TensorFlow)."""
    trip, encoded, counts = _encoded_trip(trip_index, frames, width, height, seed, cameras, conditions, jpeg_quality)
    return trip.segment_name, [build_frame_proto(trip, f, jpegs, counts).SerializeToString() for f, jpegs in encoded]


def trip_components(
    trip_index: int,
    frames: int,
    width: int = 960,
    height: int = 640,
    seed: int = 0,
    cameras: Sequence[str] = ("FRONT", "FRONT_LEFT"),
    conditions: dict | None = None,
    jpeg_quality: int = 90,
) -> tuple[str, dict]:
    """Render one trip as Waymo v2: its segment (context) name and component tables.

    The tables (``camera_image``, ``camera_box``, ``stats``, see
    :func:`urban_detection.waymo.v2.component_tables`) hold the same JPEG bytes, boxes
    and conditions as :func:`trip_records` for the same arguments.
    """
    trip, encoded, counts = _encoded_trip(trip_index, frames, width, height, seed, cameras, conditions, jpeg_quality)
    rows = [
        v2.FrameRows(
            timestamp_micros=frame.timestamp_micros,
            images={fp.camera_id(name): jpeg for name, jpeg in jpegs.items()},
            boxes={fp.camera_id(name): (view.boxes, view.types, view.ids) for name, view in frame.cameras.items()},
            stats=trip.stats,
            object_counts=counts,
        )
        for frame, jpegs in encoded
    ]
    return trip.name, v2.component_tables(trip.name, rows)


def _encoded_trip(trip_index, frames, width, height, seed, cameras, conditions, jpeg_quality):
    """Render a trip and JPEG-encode every view: ``(trip, [(frame, {camera: jpeg})], {type: objects})``."""
    trip, frames_iter = iter_trip(trip_index, frames, width, height, seed, cameras, conditions)
    encoded = []
    unique: dict[int, set[str]] = {}
    for frame, pil in frames_iter:
        jpegs = {name: _jpeg(img, jpeg_quality) for name, img in pil.items()}
        for t, oid in zip(frame.types, frame.ids):
            unique.setdefault(int(t), set()).add(oid)
        for view in frame.cameras.values():  # the JPEG is kept, not the pixels
            view.image = None
        encoded.append((frame, jpegs))
    return trip, encoded, {t: len(ids) for t, ids in unique.items()}
