"""Deterministic synthetic driving trips written as raw Waymo v1 segment files.

Each trip is a small simulated drive: an ego car moves along a street with lanes,
sidewalks, trees, lamps, buildings and sign posts; vehicles, pedestrians and
cyclists move through the scene with their own velocities, enter and leave. Every
frame is rendered for the FRONT camera (and, by default, a half-resolution
FRONT_LEFT camera looking 45 degrees left so camera selection is exercised) and
written as a ``Frame`` proto (see :mod:`urban_detection.waymo.frame_proto`) into a
TFRecord named like a real segment:
``segment-<digits>_<start>_<ms>_<end>_<ms>_with_camera_labels.tfrecord``, or, with
``format="v2"``, as Waymo v2 Parquet components (see :mod:`urban_detection.waymo.v2`).

Labels follow the Waymo 2D camera convention: ``center_x``, ``center_y`` in pixels,
``length`` = horizontal size, ``width`` = vertical size, ``type`` a ``Label.Type``
(1 vehicle, 2 pedestrian, 3 sign, 4 cyclist). Boxes are the tight extent of the
drawn pixels of each object (every object is drawn into its own RGBA sprite and the
box is the sprite's alpha bounding box), clipped to the image, and they keep the
full extent when nearer objects occlude part of the object.

Everything is drawn with PIL primitives onto a per-trip pre-rendered background;
one 960x640 frame takes a few milliseconds.

Modules: :mod:`.world` (the simulated street), :mod:`.camera`, :mod:`.shading`,
:mod:`.background`, :mod:`.sprites`, :mod:`.render` (one camera's view),
:mod:`.trip` (conditions and the frame iterator), :mod:`.frames` (the data),
:mod:`.records` (v1 protos, v2 tables) and :mod:`.writers` (files).
"""

from urban_detection.waymo.synthetic.frames import CameraFrame, SyntheticFrame, SyntheticTrip
from urban_detection.waymo.synthetic.records import build_frame_proto, trip_components, trip_records
from urban_detection.waymo.synthetic.trip import (
    LOCATIONS,
    TIMES_OF_DAY,
    WEATHERS,
    iter_trip,
    render_trip,
    trip_conditions,
)
from urban_detection.waymo.synthetic.writers import write_synthetic_trips, write_trip

__all__ = [
    "CameraFrame",
    "LOCATIONS",
    "SyntheticFrame",
    "SyntheticTrip",
    "TIMES_OF_DAY",
    "WEATHERS",
    "build_frame_proto",
    "iter_trip",
    "render_trip",
    "trip_components",
    "trip_conditions",
    "trip_records",
    "write_synthetic_trips",
    "write_trip",
]
