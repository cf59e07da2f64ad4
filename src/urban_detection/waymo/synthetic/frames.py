"""The data of a synthetic trip: its frames, each camera's view and the label classes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from urban_detection.waymo import frame_proto as fp

FRAME_INTERVAL_MICROS = 100_000  # 10 Hz, like the Waymo cameras

VEHICLE, PEDESTRIAN, SIGN, CYCLIST = (
    int(fp.LabelType.VEHICLE),
    int(fp.LabelType.PEDESTRIAN),
    int(fp.LabelType.SIGN),
    int(fp.LabelType.CYCLIST),
)
CLASS_OF = {"vehicle": VEHICLE, "pedestrian": PEDESTRIAN, "cyclist": CYCLIST, "sign": SIGN}


@dataclass
class CameraFrame:
    """One camera's rendered image and its labels (Waymo pixel convention)."""

    image: np.ndarray | None  # HxWx3 uint8 RGB (None once written out, see write_trip)
    boxes: np.ndarray  # (N, 4) float64 [center_x, center_y, length, width] in pixels
    types: np.ndarray  # (N,) int32 Label.Type
    ids: list[str]
    size: tuple[int, int] = (0, 0)  # (height, width)

    def __post_init__(self):
        if self.image is not None:
            self.size = (int(self.image.shape[0]), int(self.image.shape[1]))


@dataclass
class SyntheticFrame:
    """One frame of a trip; ``image``/``boxes``/``types`` are the FRONT camera's."""

    index: int
    timestamp_micros: int
    cameras: dict[str, CameraFrame]

    @property
    def image(self) -> np.ndarray:
        return self.cameras["FRONT"].image

    @property
    def boxes(self) -> np.ndarray:
        return self.cameras["FRONT"].boxes

    @property
    def types(self) -> np.ndarray:
        return self.cameras["FRONT"].types

    @property
    def ids(self) -> list[str]:
        return self.cameras["FRONT"].ids


@dataclass
class SyntheticTrip:
    """A trip header (name and conditions), with its frames when rendered in memory."""

    name: str  # Waymo context name, e.g. "1234567890123456789_1234_500_1254_500"
    stats: dict  # time_of_day, weather, location
    frames: list[SyntheticFrame] = field(default_factory=list)

    @property
    def segment_name(self) -> str:
        return f"segment-{self.name}_with_camera_labels"
