"""A synthetic camera: its intrinsics and pose on the ego car, and projection of the street."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

CAM_HEIGHT = 1.6  # metres above the road


@dataclass
class Camera:
    """A pinhole camera on the ego car, with its pre-rendered background and rain streaks."""

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
        return self.cx + self.f * xc / zc, self.horizon + self.f * (CAM_HEIGHT - y) / zc


def make_cameras(
    width: int, height: int, names: Sequence[str], rngs: Sequence[np.random.Generator]
) -> list[Camera]:
    """The named cameras (FRONT first; FRONT_LEFT/FRONT_RIGHT at half resolution, turned 0.8 rad)."""
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
        cams.append(Camera(key, w, h, f, w / 2.0, horizon, yaw))
    if not cams or cams[0].name != "FRONT":
        raise ValueError("the first synthetic camera must be FRONT")
    return cams


def ground_quad(cam: Camera, x0: float, x1: float, z0: float, z1: float, lift: float = 0.0):
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


def wall_quad(cam: Camera, x: float, z0: float, z1: float, height: float):
    """Pixel polygon of a vertical wall at x over [z0,z1], ``height`` metres high; None if not in view."""
    s, c = math.sin(cam.yaw), math.cos(cam.yaw)
    zmin = (0.3 + x * s) / c
    za, zb = max(z0, zmin), z1
    if za >= zb:
        return None
    pts = [cam.project(x, za, 0.0), cam.project(x, zb, 0.0), cam.project(x, zb, height), cam.project(x, za, height)]
    return None if None in pts else pts

