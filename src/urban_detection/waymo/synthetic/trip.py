"""A synthetic trip: its conditions and name, and its frames rendered one after the other."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from urban_detection.waymo import frame_proto as fp
from urban_detection.waymo.synthetic.background import make_background, rain_streaks
from urban_detection.waymo.synthetic.camera import make_cameras
from urban_detection.waymo.synthetic.frames import FRAME_INTERVAL_MICROS, SyntheticFrame, SyntheticTrip
from urban_detection.waymo.synthetic.render import render_view
from urban_detection.waymo.synthetic.shading import Shader
from urban_detection.waymo.synthetic.world import World

TIMES_OF_DAY: tuple[str, ...] = ("Day", "Dawn", "Dusk", "Night")
WEATHERS: tuple[str, ...] = ("sunny", "rain")
LOCATIONS: tuple[str, ...] = ("location_sf", "location_phx", "location_other")
_TOD_P = (0.58, 0.1, 0.12, 0.2)
_RAIN_P = 0.22
_LOCATION_P = (0.4, 0.35, 0.25)


def trip_conditions(trip_index: int, seed: int = 0) -> dict:
    """The deterministic ``time_of_day``/``weather``/``location`` of a trip."""
    rng = np.random.default_rng([int(seed), int(trip_index), 7])
    return {
        "time_of_day": str(rng.choice(TIMES_OF_DAY, p=_TOD_P)),
        "weather": "rain" if rng.random() < _RAIN_P else "sunny",
        "location": str(rng.choice(LOCATIONS, p=_LOCATION_P)),
    }


def _trip_name(trip_index: int, seed: int) -> str:
    """The deterministic Waymo context name of a trip."""
    rng = np.random.default_rng([int(seed), int(trip_index), 11])
    digits = "".join(str(int(x)) for x in rng.integers(0, 10, 19))
    digits = str(int(rng.integers(1, 10))) + digits[1:]
    start = int(rng.integers(0, 9000))
    ms = int(rng.integers(0, 20)) * 50
    return f"{digits}_{start}_{ms:03d}_{start + 20}_{ms:03d}"


def iter_trip(
    trip_index: int,
    frames: int,
    width: int = 960,
    height: int = 640,
    seed: int = 0,
    cameras: Sequence[str] = ("FRONT", "FRONT_LEFT"),
    conditions: dict | None = None,
) -> tuple[SyntheticTrip, Iterator[tuple[SyntheticFrame, dict[str, Image.Image]]]]:
    """A trip header plus a lazy iterator of ``(frame, {camera: PIL image})``."""
    if frames < 1 or width < 32 or height < 32:
        raise ValueError("need frames >= 1 and an image of at least 32x32 pixels")
    cond = dict(trip_conditions(trip_index, seed))
    cond.update(conditions or {})
    if cond["time_of_day"] not in TIMES_OF_DAY or cond["weather"] not in WEATHERS or cond["location"] not in LOCATIONS:
        raise ValueError(f"unknown conditions {cond}")
    trip = SyntheticTrip(name=_trip_name(trip_index, seed), stats=cond)
    sh = Shader(cond["time_of_day"], cond["weather"])
    # separate random streams: the scene does not depend on which cameras are rendered
    cams = make_cameras(
        width,
        height,
        cameras,
        [np.random.default_rng([int(seed), int(trip_index), 2, fp.camera_id(c)]) for c in cameras],
    )
    for cam in cams:
        cam_rng = np.random.default_rng([int(seed), int(trip_index), 3, fp.camera_id(cam.name)])
        cam.background = make_background(cam, sh, cond["location"], cam_rng)
        cam.rain = rain_streaks(cam, cam_rng) if sh.rain else None
    rng = np.random.default_rng([int(seed), int(trip_index), 1])
    world = World(rng, frames, trip_tag=trip.name.split("_")[0][-6:])
    world.populate(cams[0])
    t0 = 1_500_000_000_000_000 + int(rng.integers(0, 10**14)) // 100_000 * 100_000

    def gen():
        for i in range(frames):
            if i:
                world.step()
            views, pil = {}, {}
            for cam in cams:
                img, cf = render_view(cam, world, sh, i)
                views[cam.name], pil[cam.name] = cf, img
            yield SyntheticFrame(i, t0 + i * FRAME_INTERVAL_MICROS, views), pil

    return trip, gen()


def render_trip(
    trip_index: int,
    frames: int,
    width: int = 960,
    height: int = 640,
    seed: int = 0,
    cameras: Sequence[str] = ("FRONT", "FRONT_LEFT"),
    conditions: dict | None = None,
) -> SyntheticTrip:
    """Render a whole trip in memory (images as uint8 arrays). Use for small trips."""
    trip, frames_iter = iter_trip(trip_index, frames, width, height, seed, cameras, conditions)
    trip.frames = [frame for frame, _ in frames_iter]
    return trip
