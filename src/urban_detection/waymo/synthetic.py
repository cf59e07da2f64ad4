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
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

from urban_detection.files import atomic_path
from urban_detection.waymo import frame_proto as fp
from urban_detection.waymo import v2

TIMES_OF_DAY: tuple[str, ...] = ("Day", "Dawn", "Dusk", "Night")
WEATHERS: tuple[str, ...] = ("sunny", "rain")
LOCATIONS: tuple[str, ...] = ("location_sf", "location_phx", "location_other")
FRAME_INTERVAL_MICROS = 100_000  # 10 Hz, like the Waymo cameras

VEHICLE, PEDESTRIAN, SIGN, CYCLIST = (
    int(fp.LabelType.VEHICLE),
    int(fp.LabelType.PEDESTRIAN),
    int(fp.LabelType.SIGN),
    int(fp.LabelType.CYCLIST),
)
_CLASS_OF = {"vehicle": VEHICLE, "pedestrian": PEDESTRIAN, "cyclist": CYCLIST, "sign": SIGN}

# Spawn shares of moving agents (label shares end up near 70/25/4 % after visibility).
_AGENT_P = {"vehicle": 0.575, "pedestrian": 0.41, "cyclist": 0.015}
_TOD_P = (0.58, 0.1, 0.12, 0.2)
_RAIN_P = 0.22
_LOCATION_P = (0.4, 0.35, 0.25)

# Road layout in metres (x to the right of the ego lane centre, z forward).
_LANE = 3.5
_ROAD_LEFT, _ROAD_RIGHT = -8.75, 5.25
_SIDEWALK = 4.0
_CAM_HEIGHT = 1.6
_MIN_DRAW_DEPTH = 2.5  # objects closer than this (camera depth) are not drawn
_DT = FRAME_INTERVAL_MICROS / 1e6


# --------------------------------------------------------------------------- data
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
    name: str  # Waymo context name, e.g. "1234567890123456789_1234_500_1254_500"
    stats: dict  # time_of_day, weather, location
    frames: list[SyntheticFrame] = field(default_factory=list)

    @property
    def segment_name(self) -> str:
        return f"segment-{self.name}_with_camera_labels"


@dataclass
class _Agent:
    id: str
    cls: str  # vehicle | pedestrian | cyclist | sign
    x: float
    z: float
    vx: float
    vz: float
    w: float  # metres, horizontal extent
    h: float  # metres, vertical extent
    style: dict
    lift: float = 0.0  # metres above the ground of the sprite's bottom (signs)
    phase: float = 0.0


@dataclass
class _Prop:
    kind: str  # tree | lamp
    x: float
    s: float  # route position (metres); z = s - odometry
    style: dict


@dataclass
class _Camera:
    name: str
    width: int
    height: int
    f: float
    cx: float
    horizon: float
    yaw: float  # radians, positive = looking left
    background: Image.Image | None = None
    rain: tuple[np.ndarray, np.ndarray] | None = None

    def to_cam(self, x, z):
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return x * c + z * s, -x * s + z * c

    def project(self, x, z, y=0.0):
        """World point (x right, z forward, y up) to pixel (u, v); None if behind."""
        xc, zc = self.to_cam(x, z)
        if zc <= 0.05:
            return None
        return self.cx + self.f * xc / zc, self.horizon + self.f * (_CAM_HEIGHT - y) / zc


# ------------------------------------------------------------------------ palette
_CAR_PAINTS = [
    ((236, 236, 232), 0.2),
    ((28, 28, 32), 0.17),
    ((168, 172, 178), 0.15),
    ((100, 104, 112), 0.1),
    ((170, 28, 30), 0.09),
    ((32, 66, 150), 0.08),
    ((22, 34, 78), 0.05),
    ((40, 96, 58), 0.04),
    ((226, 186, 36), 0.04),
    ((214, 104, 28), 0.03),
    ((196, 182, 148), 0.03),
    ((104, 24, 34), 0.02),
]
_SKIN = [(241, 194, 160), (224, 172, 128), (198, 140, 98), (150, 100, 66), (108, 70, 46), (86, 56, 38)]
_SHIRTS = [
    (200, 40, 40),
    (40, 80, 190),
    (240, 240, 240),
    (30, 30, 30),
    (60, 150, 70),
    (240, 200, 40),
    (150, 60, 160),
    (240, 130, 40),
    (90, 170, 210),
    (120, 120, 120),
    (230, 110, 150),
    (140, 90, 50),
]
_PANTS = [(40, 60, 110), (30, 30, 34), (170, 150, 110), (90, 90, 96), (60, 70, 50), (120, 40, 40)]
_HAIR = [(30, 24, 20), (70, 50, 30), (150, 110, 60), (200, 180, 120), (110, 110, 110)]
_BIKES = [(220, 30, 30), (30, 90, 220), (30, 170, 80), (250, 200, 20), (250, 120, 20), (200, 40, 200), (20, 200, 200)]

_LIGHT = {
    "Day": dict(sky=((86, 140, 214), (196, 220, 242)), light=1.0, tint=(1.0, 1.0, 1.0)),
    "Dawn": dict(sky=((84, 92, 150), (246, 186, 150)), light=0.78, tint=(1.06, 0.96, 0.9)),
    "Dusk": dict(sky=((52, 50, 112), (244, 146, 92)), light=0.66, tint=(1.1, 0.92, 0.8)),
    "Night": dict(sky=((6, 8, 22), (30, 36, 58)), light=0.34, tint=(0.9, 0.95, 1.1)),
}
_GROUND = {
    "location_sf": (96, 112, 84),
    "location_phx": (196, 172, 130),
    "location_other": (84, 128, 70),
}


class _Shader:
    """Scene-wide colour transform for time of day and weather."""

    def __init__(self, time_of_day: str, weather: str):
        p = _LIGHT[time_of_day]
        self.night = time_of_day == "Night"
        self.rain = weather == "rain"
        light = p["light"] * (0.82 if self.rain else 1.0)
        self.scale = np.asarray(p["tint"], np.float32) * light
        self.object_scale = np.asarray(p["tint"], np.float32) * max(light, 0.5)  # street lighting
        self.desat = 0.35 if self.rain else 0.0
        sky_top, sky_bottom = (np.asarray(c, np.float32) for c in p["sky"])
        if self.rain:
            grey = np.float32(150 * (0.3 if self.night else 1.0))
            sky_top, sky_bottom = 0.35 * sky_top + 0.65 * grey, 0.35 * sky_bottom + 0.65 * grey
        self.sky = (sky_top, sky_bottom)

    def __call__(self, rgb, obj: bool = False, alpha: int = 255) -> tuple[int, int, int, int]:
        c = np.asarray(rgb, np.float32)
        if self.desat:
            c = c * (1 - self.desat) + c.mean() * self.desat
        c = np.clip(c * (self.object_scale if obj else self.scale), 0, 255)
        return int(c[0]), int(c[1]), int(c[2]), alpha


def _mul(rgb, k: float):
    return tuple(int(max(0, min(255, c * k))) for c in rgb[:3]) + tuple(rgb[3:])


# ------------------------------------------------------------- drawing primitives
class _Pen:
    """Draws with coordinates given as fractions of a sprite's width/height."""

    def __init__(self, img: Image.Image):
        self.img = img
        self.d = ImageDraw.Draw(img)
        self.w, self.h = img.size

    def _xy(self, fx0, fy0, fx1, fy1):
        w1, h1 = self.w - 1, self.h - 1
        x0, x1 = sorted((round(fx0 * w1), round(fx1 * w1)))
        y0, y1 = sorted((round(fy0 * h1), round(fy1 * h1)))
        return [x0, y0, x1, y1]

    def rect(self, fx0, fy0, fx1, fy1, fill):
        self.d.rectangle(self._xy(fx0, fy0, fx1, fy1), fill=fill)

    def rrect(self, fx0, fy0, fx1, fy1, fill, radius_frac=0.1):
        xy = self._xy(fx0, fy0, fx1, fy1)
        r = int(min(xy[2] - xy[0], xy[3] - xy[1]) * radius_frac)
        if r >= 1:
            self.d.rounded_rectangle(xy, radius=r, fill=fill)
        else:
            self.d.rectangle(xy, fill=fill)

    def ellipse(self, fx0, fy0, fx1, fy1, fill=None, outline=None, width=1):
        self.d.ellipse(self._xy(fx0, fy0, fx1, fy1), fill=fill, outline=outline, width=max(1, int(width)))

    def poly(self, pts, fill):
        w1, h1 = self.w - 1, self.h - 1
        self.d.polygon([(round(x * w1), round(y * h1)) for x, y in pts], fill=fill)

    def line(self, pts, fill, width_frac):
        w1, h1 = self.w - 1, self.h - 1
        width = max(1, round(width_frac * self.w))
        self.d.line([(round(x * w1), round(y * h1)) for x, y in pts], fill=fill, width=width)


def _draw_vehicle(w: int, h: int, st: dict, sh: _Shader) -> Image.Image:
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    p = _Pen(img)
    body = sh(st["paint"], obj=True)
    dark = sh((26, 26, 28), obj=True)
    glass = sh((70, 88, 110), obj=True) if not sh.night else (18, 22, 32, 255)
    front = st["facing"] == "front"
    if st["variant"] in ("van", "truck", "bus"):
        # boxy: tall body with a band of windows, wheels below
        p.rect(0.06, 0.84, 0.26, 1.0, dark)
        p.rect(0.74, 0.84, 0.94, 1.0, dark)
        p.rrect(0.0, 0.0, 1.0, 0.9, body, 0.05)
        top = 0.08 if st["variant"] == "bus" else 0.1
        p.rect(0.06, top, 0.94, 0.42 if front else 0.36, glass)
        if st["variant"] == "bus":
            p.rect(0.0, 0.5, 1.0, 0.56, sh(_mul(st["paint"], 0.6), obj=True))
        p.rect(0.02, 0.78, 0.98, 0.86, sh((50, 50, 54), obj=True))
        light_y = (0.62, 0.72)
    else:
        p.rect(0.07, 0.8, 0.24, 1.0, dark)
        p.rect(0.76, 0.8, 0.93, 1.0, dark)
        p.rrect(0.0, 0.4, 1.0, 0.88, body, 0.15)
        p.poly([(0.14, 0.0), (0.86, 0.0), (0.97, 0.45), (0.03, 0.45)], sh(_mul(st["paint"], 0.88), obj=True))
        if front:
            p.poly([(0.17, 0.04), (0.83, 0.04), (0.92, 0.41), (0.08, 0.41)], glass)
        else:
            p.poly([(0.2, 0.06), (0.8, 0.06), (0.88, 0.37), (0.12, 0.37)], glass)
        p.rect(0.02, 0.74, 0.98, 0.84, sh((48, 48, 52), obj=True))
        light_y = (0.48, 0.59)
    if front:
        p.rect(0.32, light_y[0] + 0.02, 0.68, light_y[1] + 0.04, sh((40, 40, 44), obj=True))  # grille
        head = (255, 250, 225, 255) if sh.night else sh((235, 235, 220), obj=True)
        if sh.night:
            p.ellipse(0.02, light_y[0] - 0.03, 0.28, light_y[1] + 0.05, fill=head)
            p.ellipse(0.72, light_y[0] - 0.03, 0.98, light_y[1] + 0.05, fill=head)
        else:
            p.rect(0.04, light_y[0], 0.24, light_y[1], head)
            p.rect(0.76, light_y[0], 0.96, light_y[1], head)
    else:
        tail = (255, 40, 30, 255) if sh.night else sh((196, 26, 26), obj=True)
        p.rect(0.03, light_y[0], 0.2, light_y[1], tail)
        p.rect(0.8, light_y[0], 0.97, light_y[1], tail)
        p.rect(0.4, light_y[1] + 0.03, 0.6, light_y[1] + 0.12, sh((222, 222, 205), obj=True))  # plate
    return img


def _draw_pedestrian(w: int, h: int, st: dict, sh: _Shader, phase: float) -> Image.Image:
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    p = _Pen(img)
    skin, shirt, pants = sh(st["skin"], True), sh(st["shirt"], True), sh(st["pants"], True)
    hair, shoes = sh(st["hair"], True), sh((24, 22, 22), True)
    if st["view"] == "side":  # walking across: striding legs and swinging arms
        s = 0.42 * abs(math.sin(phase)) + 0.06
        p.line([(0.5, 0.5), (0.5 + s, 0.97)], pants, 0.2)
        p.line([(0.5, 0.5), (0.5 - s, 0.97)], pants, 0.2)
        p.rect(0.5 + s - 0.12, 0.95, 0.5 + s + 0.14, 1.0, shoes)
        p.rect(0.5 - s - 0.14, 0.95, 0.5 - s + 0.12, 1.0, shoes)
        p.rrect(0.3, 0.14, 0.72, 0.54, shirt, 0.2)
        a = 0.3 * math.sin(phase)
        p.line([(0.52, 0.17), (0.52 + a, 0.47)], shirt, 0.14)
        p.ellipse(0.3, 0.0, 0.72, 0.13, fill=skin)
        p.ellipse(0.28, 0.0, 0.7, 0.06, fill=hair)
        if st["direction"] < 0:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img
    d = 0.05 * math.sin(phase)
    p.rect(0.25 + d, 0.5, 0.47 + d, 0.96, pants)
    p.rect(0.53 - d, 0.5, 0.75 - d, 0.96, pants)
    p.rect(0.22 + d, 0.95, 0.47 + d, 1.0, shoes)
    p.rect(0.53 - d, 0.95, 0.78 - d, 1.0, shoes)
    p.rrect(0.18, 0.13, 0.82, 0.54, shirt, 0.2)
    p.rect(0.0, 0.15, 0.17, 0.47, shirt)
    p.rect(0.83, 0.15, 1.0, 0.47, shirt)
    p.rect(0.02, 0.47, 0.15, 0.52, skin)
    p.rect(0.85, 0.47, 0.98, 0.52, skin)
    p.ellipse(0.3, 0.0, 0.7, 0.13, fill=skin)
    if st["facing"] == "away":
        p.ellipse(0.29, 0.0, 0.71, 0.12, fill=hair)
    else:
        p.ellipse(0.29, 0.0, 0.71, 0.05, fill=hair)
    if st.get("bag"):
        p.rect(0.62, 0.3, 0.95, 0.5, sh(st["bag"], True))
    return img


def _draw_cyclist(w: int, h: int, st: dict, sh: _Shader, phase: float) -> Image.Image:
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    p = _Pen(img)
    tyre, frame_c = sh((18, 18, 18), True), sh(st["bike"], True)
    jersey, pants, skin, helmet = (
        sh(st["shirt"], True),
        sh(st["pants"], True),
        sh(st["skin"], True),
        sh(st["helmet"], True),
    )
    r = min(0.21, 0.22 * h / max(w, 1))  # wheel radius as a fraction of the width
    ry = r * w / max(h, 1)  # ... and of the height
    hub_y = 1.0 - ry
    ring = max(1, round(0.035 * w))
    for cx in (r, 1.0 - r):
        p.ellipse(cx - r, 1.0 - 2 * ry, cx + r, 1.0, outline=tyre, width=ring)
        p.ellipse(cx - 0.02, hub_y - 0.02, cx + 0.02, hub_y + 0.02, fill=sh((150, 150, 150), True))
    seat, stem, crank = (0.4, 0.5), (0.7, 0.47), (0.48, hub_y)
    p.line([(r, hub_y), seat, stem, (1.0 - r, hub_y)], frame_c, 0.03)
    p.line([(r, hub_y), crank, seat], frame_c, 0.03)
    p.line([crank, stem], frame_c, 0.03)
    p.line([stem, (0.74, 0.4)], frame_c, 0.025)
    pa = 0.08 * math.cos(phase)
    p.line([(0.4, 0.45), (0.56, 0.62), (crank[0] + pa, hub_y - 0.02)], pants, 0.055)
    p.poly([(0.34, 0.5), (0.46, 0.45), (0.63, 0.17), (0.53, 0.14)], jersey)
    p.line([(0.6, 0.18), (0.74, 0.41)], jersey, 0.04)
    p.ellipse(0.53, 0.005, 0.69, 0.16, fill=skin)
    p.ellipse(0.52, 0.0, 0.7, 0.1, fill=helmet)
    if sh.night:
        p.rect(0.0, 0.55, 0.04, 0.6, (255, 40, 30, 255))
        p.rect(0.72, 0.36, 0.78, 0.41, (255, 250, 220, 255))
    if st["direction"] < 0:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img


def _draw_sign(w: int, h: int, st: dict, sh: _Shader) -> Image.Image:
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    p = _Pen(img)
    shape = st["shape"]
    if shape == "octagon":
        k = 0.29
        pts = [(k, 0), (1 - k, 0), (1, k), (1, 1 - k), (1 - k, 1), (k, 1), (0, 1 - k), (0, k)]
        p.poly(pts, sh((230, 230, 230), True))
        inner = [(0.08 + 0.84 * x, 0.08 + 0.84 * y) for x, y in pts]
        p.poly(inner, sh((200, 24, 30), True))
    elif shape == "circle":
        p.ellipse(0, 0, 1, 1, fill=sh((200, 24, 30), True))
        p.ellipse(0.14, 0.14, 0.86, 0.86, fill=sh((240, 240, 240), True))
    elif shape == "diamond":
        p.poly([(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)], sh((236, 196, 20), True))
        p.poly([(0.5, 0.12), (0.88, 0.5), (0.5, 0.88), (0.12, 0.5)], sh((30, 30, 30), True))
        p.poly([(0.5, 0.18), (0.82, 0.5), (0.5, 0.82), (0.18, 0.5)], sh((236, 196, 20), True))
    else:  # square info / street plate
        colour = (30, 80, 180) if shape == "square" else (20, 120, 60)
        p.rect(0, 0, 1, 1, sh((235, 235, 235), True))
        p.rect(0.07, 0.07, 0.93, 0.93, sh(colour, True))
        p.rect(0.25, 0.4, 0.75, 0.6, sh((235, 235, 235), True))
    return img


# ------------------------------------------------------------------- background
def _ground_quad(cam: _Camera, x0: float, x1: float, z0: float, z1: float, lift: float = 0.0):
    """Pixel polygon of a ground strip [x0,x1] x [z0,z1], clipped to camera depth >= 0.3."""
    s, c = math.sin(cam.yaw), math.cos(cam.yaw)
    pts_near, pts_far = [], []
    for x in (x0, x1):
        zmin = (0.3 + x * s) / c if c > 1e-6 else z0  # depth zc >= 0.3
        za, zb = max(z0, zmin), z1
        if za >= zb:
            return None
        pts_near.append(cam.project(x, za, lift))
        pts_far.append(cam.project(x, zb, lift))
    if None in pts_near or None in pts_far:
        return None
    return [pts_near[0], pts_far[0], pts_far[1], pts_near[1]]


def _wall_quad(cam: _Camera, x: float, z0: float, z1: float, height: float):
    s, c = math.sin(cam.yaw), math.cos(cam.yaw)
    zmin = (0.3 + x * s) / c
    za, zb = max(z0, zmin), z1
    if za >= zb:
        return None
    pts = [cam.project(x, za, 0.0), cam.project(x, zb, 0.0), cam.project(x, zb, height), cam.project(x, za, height)]
    return None if None in pts else pts


def _make_background(cam: _Camera, sh: _Shader, location: str, rng: np.random.Generator) -> Image.Image:
    W, H = cam.width, cam.height
    hz = int(round(cam.horizon))
    arr = np.empty((H, W, 3), np.float32)
    t = np.clip(np.arange(H, dtype=np.float32) / max(hz, 1), 0, 1)[:, None]
    top, bottom = sh.sky
    arr[:] = (top[None, :] * (1 - t) + bottom[None, :] * t)[:, None, :]
    ground = np.asarray(sh(_GROUND[location])[:3], np.float32)
    arr[hz:] = ground
    noise = rng.normal(0, 4.0, size=(H, W, 1)).astype(np.float32)
    arr[hz:] += noise[hz:]
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    far = 400.0
    # distant skyline on the horizon
    x = -rng.uniform(0, 30)
    while x < W:
        bw = rng.uniform(0.03, 0.09) * W
        bh = rng.uniform(0.02, 0.12 if location == "location_phx" else 0.2) * H
        col = sh(tuple(rng.integers(90, 170, 3)))
        d.rectangle([int(x), int(hz - bh), int(x + bw), hz], fill=col)
        x += bw * rng.uniform(0.7, 1.1)
    # sidewalks, road, curbs
    side = sh((150, 148, 142))
    for quad in (
        _ground_quad(cam, _ROAD_RIGHT, _ROAD_RIGHT + _SIDEWALK, -40, far),
        _ground_quad(cam, _ROAD_LEFT - _SIDEWALK, _ROAD_LEFT, -40, far),
    ):
        if quad:
            d.polygon(quad, fill=side)
    road = _ground_quad(cam, _ROAD_LEFT, _ROAD_RIGHT, -40, far)
    if road:
        d.polygon(road, fill=sh((78, 78, 82)))
    # building facades behind the sidewalks
    for sign in (-1, 1):
        xw = (_ROAD_RIGHT + _SIDEWALK + 0.5) if sign > 0 else (_ROAD_LEFT - _SIDEWALK - 0.5)
        if location == "location_phx":
            xw += sign * 6.0
        z = -30.0
        while z < 180:
            length = rng.uniform(10, 28)
            height = rng.uniform(5, 9 if location == "location_phx" else 22)
            quad = _wall_quad(cam, xw, z, z + length - 0.5, height)
            if quad:
                col = tuple(int(c) for c in rng.integers(80, 200, 3))
                d.polygon(quad, fill=sh(col))
                win = (255, 214, 120, 255) if sh.night else sh((60, 80, 100))
                for fy in np.arange(2.0, height - 1.0, 3.0):
                    for fz in np.arange(z + 1.0, z + length - 1.5, 2.5):
                        if sh.night and rng.random() < 0.5:
                            continue
                        wq = _wall_quad(cam, xw - sign * 0.01, fz, fz + 1.2, fy + 1.4)
                        wq0 = _wall_quad(cam, xw - sign * 0.01, fz, fz + 1.2, fy)
                        if wq and wq0:
                            d.polygon([wq0[3], wq0[2], wq[2], wq[3]], fill=win)
            z += length
    # static road lines: edges and the double yellow centre line
    white, yellow = sh((225, 225, 220)), sh((222, 186, 40))
    for x0, x1, col in (
        (_ROAD_RIGHT - 0.15, _ROAD_RIGHT, white),
        (_ROAD_LEFT, _ROAD_LEFT + 0.15, white),
        (-1.75 - 0.32, -1.75 - 0.2, yellow),
        (-1.75 - 0.12, -1.75, yellow),
    ):
        quad = _ground_quad(cam, x0, x1, -40, far)
        if quad:
            d.polygon(quad, fill=col)
    if sh.night and cam.yaw == 0:  # ego headlights on the road
        glow = Image.new("L", (W, H), 0)
        gd = ImageDraw.Draw(glow)
        quad = _ground_quad(cam, -2.2, 2.2, 3.0, 30.0)
        if quad:
            gd.polygon(quad, fill=38)
        img.paste((255, 240, 200), (0, 0), glow)
    return img


def _rain_streaks(cam: _Camera, rng: np.random.Generator):
    n = int(cam.width * cam.height / 1400)
    ys, xs = [], []
    for _ in range(n):
        length = int(rng.integers(6, 22))
        x0, y0 = rng.uniform(0, cam.width), rng.uniform(0, cam.height)
        t = np.arange(length, dtype=np.float32)
        ys.append(y0 + t)
        xs.append(x0 + 0.25 * t)
    return np.concatenate(ys).astype(np.int64), np.concatenate(xs).astype(np.int64)


# ------------------------------------------------------------------- simulation
class _World:
    def __init__(self, rng: np.random.Generator, n_frames: int, trip_tag: str):
        self.rng = rng
        self.trip_tag = trip_tag
        stop_go = rng.random() < 0.15
        self.v_base = rng.uniform(0.0, 1.5) if stop_go else rng.uniform(3.0, 10.0)
        self.v_amp = rng.uniform(0.0, 1.5)
        self.v_period = rng.uniform(6.0, 14.0)
        self.odometry = 0.0
        self.t = 0.0
        self.n_spawned = 0
        self.target = int(rng.integers(12, 20))
        self.agents: list[_Agent] = []
        route = (self.v_base + self.v_amp) * _DT * n_frames + 250.0
        self.props = self._make_props(route)
        self.signs = self._make_signs(route)

    @property
    def v_ego(self) -> float:
        return max(0.0, self.v_base + self.v_amp * math.sin(2 * math.pi * self.t / self.v_period))

    def _new_id(self) -> str:
        self.n_spawned += 1
        return f"{self.trip_tag}_{self.n_spawned:04d}"

    def _make_props(self, route: float) -> list[_Prop]:
        rng, props = self.rng, []
        for sign in (-1, 1):
            edge = _ROAD_RIGHT if sign > 0 else _ROAD_LEFT
            s = rng.uniform(-20, 0)
            while s < route:
                if rng.random() < 0.65:
                    props.append(
                        _Prop(
                            "tree",
                            edge + sign * rng.uniform(2.8, 3.6),
                            s,
                            {
                                "height": rng.uniform(4.5, 8.0),
                                "radius": rng.uniform(1.2, 2.3),
                                "leaf": tuple(
                                    int(c) for c in (rng.integers(30, 80), rng.integers(90, 150), rng.integers(30, 70))
                                ),
                            },
                        )
                    )
                else:
                    props.append(_Prop("lamp", edge + sign * 0.6, s, {"height": rng.uniform(6.0, 7.5), "side": sign}))
                s += rng.uniform(9, 18)
        return props

    def _make_signs(self, route: float) -> list[_Agent]:
        rng, signs = self.rng, []
        if rng.random() < 0.5:
            return signs
        s = rng.uniform(5, 60)
        while s < route:
            side = 1 if rng.random() < 0.7 else -1
            x = (_ROAD_RIGHT + 1.0) if side > 0 else (_ROAD_LEFT - 1.0)
            size = rng.uniform(0.6, 0.9)
            shape = str(rng.choice(["octagon", "circle", "diamond", "square", "plate"]))
            wm = size * (1.6 if shape == "plate" else 1.0)
            hm = size * (0.5 if shape == "plate" else 1.0)
            signs.append(
                _Agent(self._new_id(), "sign", x, s, 0.0, 0.0, wm, hm, {"shape": shape}, lift=rng.uniform(2.0, 2.6))
            )
            s += rng.uniform(90, 220)
        return signs

    # -- agents -------------------------------------------------------------
    def _choose_class(self) -> str:
        names = list(_AGENT_P)
        return str(self.rng.choice(names, p=np.asarray([_AGENT_P[n] for n in names])))

    def _free(self, a: _Agent) -> bool:
        for b in self.agents:
            if b.cls == "vehicle" or a.cls == "vehicle":
                if abs(a.x - b.x) < 1.6 and abs(a.z - b.z) < 7.0:
                    return False
            elif abs(a.x - b.x) < 0.8 and abs(a.z - b.z) < 1.5:
                return False
        return True

    def spawn(self, initial: bool, cls: str | None = None, crossing: bool | None = None) -> _Agent | None:
        rng, v_ego = self.rng, self.v_ego
        cls = cls or self._choose_class()
        near_bias = rng.random() ** 1.4  # more near than far objects

        def depth(lo, hi):
            return lo + (hi - lo) * near_bias

        st: dict = {}
        if cls == "vehicle":
            kind = rng.choice(["same", "oncoming", "parked"], p=[0.45, 0.3, 0.25])
            variant = str(
                rng.choice(["sedan", "suv", "hatch", "van", "truck", "bus"], p=[0.45, 0.26, 0.1, 0.11, 0.05, 0.03])
            )
            w, h = {
                "sedan": (1.82, 1.45),
                "suv": (1.95, 1.75),
                "hatch": (1.72, 1.5),
                "van": (2.0, 2.15),
                "truck": (2.4, 3.0),
                "bus": (2.55, 3.1),
            }[variant]
            w *= rng.uniform(0.95, 1.05)
            h *= rng.uniform(0.95, 1.05)
            paints = [c for c, _ in _CAR_PAINTS]
            probs = np.asarray([q for _, q in _CAR_PAINTS])
            st = {"paint": paints[int(rng.choice(len(paints), p=probs / probs.sum()))], "variant": variant}
            if kind == "same":
                x = float(rng.choice([0.0, _LANE]))
                vz = max(0.0, v_ego + rng.uniform(-1.5, 2.5))
                st["facing"] = "rear"
                lo = 9.0 if x == 0.0 else 4.0
                z = (
                    depth(lo, 42.0)
                    if initial
                    else (rng.uniform(38, 46) if vz <= v_ego or x == 0.0 else rng.uniform(-6, 0))
                )
            elif kind == "oncoming":
                x = float(rng.choice([-_LANE, -2 * _LANE]))
                vz = -rng.uniform(5.0, 11.0)
                st["facing"] = "front"
                z = depth(6.0, 44.0) if initial else rng.uniform(42, 50)
            else:
                right = rng.random() < 0.65
                x = (_ROAD_RIGHT + 1.1) if right else (_ROAD_LEFT - 1.1)
                vz = 0.0
                st["facing"] = "rear" if (right or rng.random() < 0.5) else "front"
                z = depth(5.0, 40.0) if initial else (rng.uniform(36, 44) if v_ego > 0.3 else depth(5.0, 36.0))
            a = _Agent(self._new_id(), cls, x, z, 0.0, vz, w, h, st)
        elif cls == "pedestrian":
            h = rng.uniform(1.55, 1.9) if rng.random() > 0.12 else rng.uniform(1.05, 1.3)
            st = {
                "skin": _SKIN[int(rng.integers(len(_SKIN)))],
                "shirt": _SHIRTS[int(rng.integers(len(_SHIRTS)))],
                "pants": _PANTS[int(rng.integers(len(_PANTS)))],
                "hair": _HAIR[int(rng.integers(len(_HAIR)))],
                "bag": _SHIRTS[int(rng.integers(len(_SHIRTS)))] if rng.random() < 0.25 else None,
            }
            if rng.random() < 0.65:  # along a sidewalk
                right = rng.random() < 0.6
                x = (_ROAD_RIGHT + rng.uniform(0.5, 2.2)) if right else (_ROAD_LEFT - rng.uniform(0.5, 2.2))
                vz = float(rng.choice([-1, 1])) * rng.uniform(0.8, 1.6)
                st.update(view="front", facing="away" if vz > 0 else "toward", direction=1)
                rel = vz - v_ego
                z = depth(6.0, 27.0) if initial else (rng.uniform(23, 29) if rel < 0 else rng.uniform(-3, 1))
                a = _Agent(self._new_id(), cls, x, z, 0.0, vz, h * rng.uniform(0.32, 0.38), h, st)
            else:  # crossing the street
                direction = 1 if rng.random() < 0.5 else -1
                z = depth(7.0, 22.0) + 1.5 * v_ego
                x = -direction * min(0.45 * z, (-_ROAD_LEFT if direction > 0 else _ROAD_RIGHT) + 1.5)
                if initial:
                    x = rng.uniform(_ROAD_LEFT - 1.5, _ROAD_RIGHT + 1.5)
                st.update(view="side", direction=direction)
                a = _Agent(self._new_id(), cls, x, z, direction * rng.uniform(0.9, 1.5), 0.0, h * 0.45, h, st)
            a.phase = rng.uniform(0, 2 * math.pi)
        else:  # cyclist, side view
            direction = 1 if rng.random() < 0.5 else -1
            st = {
                "bike": _BIKES[int(rng.integers(len(_BIKES)))],
                "shirt": _SHIRTS[int(rng.integers(len(_SHIRTS)))],
                "pants": _PANTS[int(rng.integers(len(_PANTS)))],
                "skin": _SKIN[int(rng.integers(len(_SKIN)))],
                "helmet": _BIKES[int(rng.integers(len(_BIKES)))],
                "direction": direction,
            }
            w, h = 1.75 * rng.uniform(0.95, 1.05), 1.72 * rng.uniform(0.95, 1.05)
            if crossing if crossing is not None else rng.random() < 0.5:  # crossing
                z = depth(8.0, 28.0) + 1.5 * v_ego
                x = -direction * min(0.45 * z, (-_ROAD_LEFT if direction > 0 else _ROAD_RIGHT) + 1.0)
                if initial:
                    x = rng.uniform(_ROAD_LEFT, _ROAD_RIGHT)
                a = _Agent(self._new_id(), cls, x, z, direction * rng.uniform(2.5, 4.5), 0.0, w, h, st)
            else:  # along the right edge of the road
                x = _ROAD_RIGHT - 0.8
                rel = float(rng.choice([-1, 1])) * rng.uniform(2.5, 4.5)
                vz = max(2.5, v_ego + rel)
                rel = vz - v_ego
                z = depth(7.0, 34.0) if initial else (rng.uniform(30, 38) if rel < 0 else rng.uniform(-4, 0))
                a = _Agent(self._new_id(), cls, x, z, 0.0, vz, w, h, st)
            a.phase = rng.uniform(0, 2 * math.pi)
        if not self._free(a):
            self.n_spawned -= 1
            return None
        self.agents.append(a)
        return a

    def populate(self, front: _Camera):
        # a guaranteed, unoccluded cyclist in the first frame (so every trip has one)
        for _ in range(50):
            c = self.spawn(initial=True, cls="cyclist", crossing=True)
            if c is not None:
                if self._visible_in(front, c, margin=0.1):
                    break
                self.agents.remove(c)
        else:  # pragma: no cover - the loop above practically always succeeds
            c = None
        for _ in range(self.target * 4):
            if len(self.agents) >= self.target:
                break
            a = self.spawn(initial=True)
            if a is not None and c is not None and a.z < c.z and _overlap(front, a, c):
                self.agents.remove(a)

    def _visible_in(self, cam: _Camera, a: _Agent, margin: float = 0.0) -> bool:
        box = _screen_box(cam, a)
        if box is None:
            return False
        x0, y0, x1, y1 = box
        m = margin * cam.width
        return x0 >= m and x1 <= cam.width - m and y0 >= 0 and y1 <= cam.height and (x1 - x0) >= 12

    def step(self):
        v_ego = self.v_ego
        # simple car following so vehicles in one lane do not drive through each other
        movers = sorted((a for a in self.agents if a.cls == "vehicle" and a.vz != 0.0), key=lambda a: a.z)
        for a in movers:
            for b in movers:
                if b is a or abs(b.x - a.x) > 1.0:
                    continue
                gap = (b.z - a.z) if a.vz > 0 else (a.z - b.z)
                if 0 < gap < 9.0 and abs(a.vz) > abs(b.vz):
                    a.vz = b.vz
            if a.x == 0.0 and a.z < 9.0 and a.vz < v_ego:  # lead car keeps its distance
                a.vz = v_ego + 0.3
        for a in self.agents:
            a.x += a.vx * _DT
            a.z += (a.vz - v_ego) * _DT
            speed = math.hypot(a.vx, a.vz)
            a.phase += speed * _DT * (4.0 if a.cls == "pedestrian" else 2.5)
        for s in self.signs:
            s.z -= v_ego * _DT
        self.odometry += v_ego * _DT
        self.t += _DT
        kept = []
        for a in self.agents:
            gone = a.z < -8.0 or a.z > 75.0
            if a.vx > 0 and a.x > _ROAD_RIGHT + 4.5 or a.vx < 0 and a.x < _ROAD_LEFT - 4.5:
                gone = True
            if not gone:
                kept.append(a)
        self.agents = kept
        for _ in range(2):
            if len(self.agents) < self.target:
                self.spawn(initial=False)


def _screen_box(cam: _Camera, a: _Agent):
    """Float pixel box (x0, y0, x1, y1) of an agent, or None when not drawable."""
    xc, zc = cam.to_cam(a.x, a.z)
    if zc < _MIN_DRAW_DEPTH:
        return None
    u = cam.cx + cam.f * xc / zc
    v_bottom = cam.horizon + cam.f * (_CAM_HEIGHT - a.lift) / zc
    w = cam.f * a.w / zc
    h = cam.f * a.h / zc
    return u - w / 2, v_bottom - h, u + w / 2, v_bottom


def _overlap(cam: _Camera, a: _Agent, b: _Agent) -> bool:
    ba, bb = _screen_box(cam, a), _screen_box(cam, b)
    if ba is None or bb is None:
        return False
    return not (ba[2] <= bb[0] or bb[2] <= ba[0] or ba[3] <= bb[1] or bb[3] <= ba[1])


# --------------------------------------------------------------------- rendering
def _draw_prop(d: ImageDraw.ImageDraw, cam: _Camera, pr: _Prop, z: float, sh: _Shader):
    base = cam.project(pr.x, z, 0.0)
    if base is None:
        return
    _, zc = cam.to_cam(pr.x, z)
    if zc < 1.0:
        return
    k = cam.f / zc
    u, v = base
    if pr.kind == "tree":
        height, radius = pr.style["height"], pr.style["radius"]
        tw = max(1.0, 0.3 * k)
        top = v - height * k
        if u + radius * k < 0 or u - radius * k > cam.width:
            return
        d.rectangle([u - tw / 2, v - height * 0.55 * k, u + tw / 2, v], fill=sh((92, 66, 44)))
        cy = top + radius * k
        d.ellipse([u - radius * k, top, u + radius * k, cy + radius * k], fill=sh(pr.style["leaf"]))
        d.ellipse(
            [u - radius * 0.7 * k, top - 0.1 * k, u + radius * 0.3 * k, cy], fill=sh(_mul(pr.style["leaf"], 1.15))
        )
    else:
        height = pr.style["height"]
        pw = max(1.0, 0.15 * k)
        if u + 2 * k < 0 or u - 2 * k > cam.width:
            return
        top = v - height * k
        d.rectangle([u - pw / 2, top, u + pw / 2, v], fill=sh((70, 72, 76)))
        arm = -pr.style["side"] * 1.5 * k
        d.line([(u, top), (u + arm, top)], fill=sh((70, 72, 76)), width=max(1, int(pw)))
        lamp = (255, 236, 170) if sh.night else sh((200, 200, 190))
        d.ellipse([u + arm - 0.3 * k, top - 0.1 * k, u + arm + 0.3 * k, top + 0.2 * k], fill=lamp)


def _agent_sprite(a: _Agent, w: int, h: int, sh: _Shader) -> Image.Image:
    if a.cls == "vehicle":
        return _draw_vehicle(w, h, a.style, sh)
    if a.cls == "pedestrian":
        return _draw_pedestrian(w, h, a.style, sh, a.phase)
    if a.cls == "cyclist":
        return _draw_cyclist(w, h, a.style, sh, a.phase)
    return _draw_sign(w, h, a.style, sh)


def _render(cam: _Camera, world: _World, sh: _Shader, frame_index: int) -> tuple[Image.Image, CameraFrame]:
    img = cam.background.copy()
    d = ImageDraw.Draw(img)
    W, H = cam.width, cam.height
    # moving dashed lane lines
    white = sh((225, 225, 220))
    phase = world.odometry % 12.0
    for xl in (1.75, -5.25):
        for k in range(-2, 10):
            z0 = k * 12.0 - phase
            quad = _ground_quad(cam, xl - 0.07, xl + 0.07, z0, z0 + 3.0)
            if quad:
                d.polygon(quad, fill=white)
    # everything in depth order, far to near
    items = []
    for pr in world.props:
        z = pr.s - world.odometry
        if -10 < z < 150:
            items.append((cam.to_cam(pr.x, z)[1], 0, pr, z))
    for a in world.signs:
        if -10 < a.z < 150:
            items.append((cam.to_cam(a.x, a.z)[1], 1, a, a.z))
    for a in world.agents:
        items.append((cam.to_cam(a.x, a.z)[1], 1, a, a.z))
    items.sort(key=lambda t: -t[0])
    id_map = np.zeros((H, W), np.int16)
    labelled: list[tuple[_Agent, tuple[int, int, int, int], int]] = []
    for zc, is_agent, obj, z in items:
        if zc < 1.0:
            continue
        if not is_agent:
            _draw_prop(d, cam, obj, z, sh)
            continue
        box = _screen_box(cam, obj)
        if box is None:
            continue
        x0, y0 = int(round(box[0])), int(round(box[1]))
        w, h = int(round(box[2])) - x0, int(round(box[3])) - y0
        if w < 4 or h < 4 or x0 >= W or y0 >= H or x0 + w <= 0 or y0 + h <= 0:
            continue
        if w > 3 * W or h > 3 * H:
            continue
        if obj.cls == "sign":  # the pole is not part of the sign's box
            pole = max(1, int(round(0.08 * cam.f / zc)))
            cxp = x0 + w // 2
            d.rectangle(
                [cxp - pole // 2, y0 + h, cxp + pole // 2, y0 + h + int(round(obj.lift * cam.f / zc))],
                fill=sh((110, 112, 116)),
            )
        sprite = _agent_sprite(obj, w, h, sh)
        img.paste(sprite, (x0, y0), sprite)
        # visible part of the sprite inside the image
        sx0, sy0 = max(0, -x0), max(0, -y0)
        sx1, sy1 = min(w, W - x0), min(h, H - y0)
        alpha = np.asarray(sprite.getchannel("A"))[sy0:sy1, sx0:sx1] > 0
        if not alpha.any():
            continue
        idx = len(labelled) + 1
        id_map[y0 + sy0 : y0 + sy1, x0 + sx0 : x0 + sx1][alpha] = idx
        cols = np.flatnonzero(alpha.any(axis=0))
        rows = np.flatnonzero(alpha.any(axis=1))
        bx0, bx1 = x0 + sx0 + cols[0], x0 + sx0 + cols[-1] + 1
        by0, by1 = y0 + sy0 + rows[0], y0 + sy0 + rows[-1] + 1
        labelled.append((obj, (int(bx0), int(by0), int(bx1), int(by1)), int(alpha.sum())))
    if sh.rain:
        img = img.reduce(2).resize((W, H), Image.Resampling.BILINEAR)
    arr = np.asarray(img)
    if sh.rain and cam.rain is not None:
        arr = arr.copy()
        ys, xs = cam.rain
        yy = (ys + frame_index * 41) % H
        xx = (xs + frame_index * 9) % W
        streak = 120 if sh.night else 215
        arr[yy, xx] = (arr[yy, xx].astype(np.uint16) * 2 + streak) // 3
    counts = np.bincount(id_map.ravel(), minlength=len(labelled) + 1)
    boxes, types, ids = [], [], []
    for k, (obj, (bx0, by0, bx1, by1), total) in enumerate(labelled, start=1):
        visible = counts[k]
        if visible < max(12, 0.15 * total):
            continue  # hidden behind nearer objects: no label
        if bx1 - bx0 < 3 or by1 - by0 < 3:
            continue
        boxes.append(((bx0 + bx1) / 2.0, (by0 + by1) / 2.0, float(bx1 - bx0), float(by1 - by0)))
        types.append(_CLASS_OF[obj.cls])
        ids.append(obj.id)
    if sh.rain:
        img = Image.fromarray(arr)
    cf = CameraFrame(
        image=arr,
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        types=np.asarray(types, np.int32),
        ids=ids,
    )
    return img, cf


def trip_conditions(trip_index: int, seed: int = 0) -> dict:
    """The deterministic ``time_of_day``/``weather``/``location`` of a trip."""
    rng = np.random.default_rng([int(seed), int(trip_index), 7])
    return {
        "time_of_day": str(rng.choice(TIMES_OF_DAY, p=_TOD_P)),
        "weather": "rain" if rng.random() < _RAIN_P else "sunny",
        "location": str(rng.choice(LOCATIONS, p=_LOCATION_P)),
    }


def _trip_name(trip_index: int, seed: int) -> str:
    rng = np.random.default_rng([int(seed), int(trip_index), 11])
    digits = "".join(str(int(x)) for x in rng.integers(0, 10, 19))
    digits = str(int(rng.integers(1, 10))) + digits[1:]
    start = int(rng.integers(0, 9000))
    ms = int(rng.integers(0, 20)) * 50
    return f"{digits}_{start}_{ms:03d}_{start + 20}_{ms:03d}"


def _cameras(width: int, height: int, names: Sequence[str], rngs: Sequence[np.random.Generator]) -> list[_Camera]:
    cams = []
    for name, rng in zip(names, rngs):
        key = name.upper()
        if key == "FRONT":
            w, h, yaw = width, height, 0.0
        elif key in ("FRONT_LEFT", "FRONT_RIGHT"):
            w, h = max(16, width // 2), max(16, height // 2)
            yaw = 0.8 if key == "FRONT_LEFT" else -0.8
        else:
            raise ValueError(f"synthetic trips support FRONT, FRONT_LEFT, FRONT_RIGHT cameras, not {name!r}")
        f = w * rng.uniform(0.86, 0.96)
        horizon = h * rng.uniform(0.42, 0.48)
        cams.append(_Camera(key, w, h, f, w / 2.0, horizon, yaw))
    if not cams or cams[0].name != "FRONT":
        raise ValueError("the first synthetic camera must be FRONT")
    return cams


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
    sh = _Shader(cond["time_of_day"], cond["weather"])
    # separate random streams: the scene does not depend on which cameras are rendered
    cams = _cameras(
        width,
        height,
        cameras,
        [np.random.default_rng([int(seed), int(trip_index), 2, fp.camera_id(c)]) for c in cameras],
    )
    for cam in cams:
        cam_rng = np.random.default_rng([int(seed), int(trip_index), 3, fp.camera_id(cam.name)])
        cam.background = _make_background(cam, sh, cond["location"], cam_rng)
        cam.rain = _rain_streaks(cam, cam_rng) if sh.rain else None
    rng = np.random.default_rng([int(seed), int(trip_index), 1])
    world = _World(rng, frames, trip_tag=trip.name.split("_")[0][-6:])
    world.populate(cams[0])
    t0 = 1_500_000_000_000_000 + int(rng.integers(0, 10**14)) // 100_000 * 100_000

    def gen():
        for i in range(frames):
            if i:
                world.step()
            views, pil = {}, {}
            for cam in cams:
                img, cf = _render(cam, world, sh, i)
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


def _jpeg(img: Image.Image, quality: int) -> bytes:
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


def _write_records(out_dir: Path, segment_name: str, records: list[bytes]) -> Path:
    import tensorflow as tf  # only needed for writing

    path = out_dir / f"{segment_name}.tfrecord"
    # atomic, recorded as the project's; a user's file of that name raises ForeignFileError, untouched
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for rec in records:
            writer.write(rec)
    return path


def write_trip(
    out_dir: str | os.PathLike,
    trip_index: int,
    frames: int,
    width: int = 960,
    height: int = 640,
    seed: int = 0,
    cameras: Sequence[str] = ("FRONT", "FRONT_LEFT"),
    conditions: dict | None = None,
    jpeg_quality: int = 90,
) -> Path:
    """Render one trip and write it as ``segment-..._with_camera_labels.tfrecord``."""
    name, records = trip_records(trip_index, frames, width, height, seed, cameras, conditions, jpeg_quality)
    return _write_records(Path(out_dir), name, records)


def write_synthetic_trips(
    out_dir: str | os.PathLike,
    n_trips: int,
    frames_per_trip: int,
    width: int = 960,
    height: int = 640,
    seed: int = 0,
    cameras: Sequence[str] = ("FRONT", "FRONT_LEFT"),
    jpeg_quality: int = 90,
    first_trip: int = 0,
    progress: bool = False,
    workers: int = 1,
    format: str = "v1",
) -> list[Path]:
    """Write ``n_trips`` deterministic synthetic segments; returns their paths.

    The same ``seed`` and trip index always give the same file (names, frames,
    labels and JPEG bytes). With ``workers > 1`` trips are rendered in spawned
    processes (which import no TensorFlow) and written here, in trip order.
    Files are written atomically and recorded as the project's
    (:mod:`urban_detection.files`); a file of the same name that the project did not
    write is never overwritten (:class:`urban_detection.files.ForeignFileError`).
    ``format="v1"`` writes ``out_dir/segment-..._with_camera_labels.tfrecord`` files of
    Frame protos; ``format="v2"`` writes the Waymo v2 layout
    ``out_dir/{camera_image,camera_box,stats}/<segment>.parquet`` with the same images,
    boxes and conditions, and returns the ``camera_image`` paths.
    """
    from tqdm.auto import tqdm

    if n_trips < 1:
        raise ValueError("n_trips must be >= 1")
    if format not in ("v1", "v2"):
        raise ValueError(f"format must be 'v1' or 'v2', not {format!r}")
    render = trip_records if format == "v1" else trip_components

    def write(name, data) -> Path:
        return _write_records(out_dir, name, data) if format == "v1" else v2.write_segment(out_dir, name, data)

    out_dir = Path(out_dir)
    indices = range(first_trip, first_trip + n_trips)
    args = [(i, frames_per_trip, width, height, seed, tuple(cameras), None, jpeg_quality) for i in indices]
    bar = tqdm(total=n_trips, desc="synthetic trips", unit="trip", disable=not progress)
    paths = []
    if workers > 1 and n_trips > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, n_trips), mp_context=mp.get_context("spawn")) as pool:
            for name, data in pool.map(render, *zip(*args)):
                paths.append(write(name, data))
                bar.update()
    else:
        for a in args:
            paths.append(write(*render(*a)))
            bar.update()
    bar.close()
    return paths


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
    "write_synthetic_trips",
    "write_trip",
]
