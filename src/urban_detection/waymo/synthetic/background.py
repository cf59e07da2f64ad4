"""The static street of a camera (sky, skyline, road, sidewalks, facades) and its rain streaks."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from urban_detection.waymo.synthetic.camera import Camera, ground_quad, wall_quad
from urban_detection.waymo.synthetic.shading import Shader
from urban_detection.waymo.synthetic.world import ROAD_LEFT, ROAD_RIGHT, SIDEWALK

_GROUND = {
    "location_sf": (96, 112, 84),
    "location_phx": (196, 172, 130),
    "location_other": (84, 128, 70),
}


_FAR = 400.0  # metres: how far the road, sidewalks and road lines reach


def make_background(cam: Camera, sh: Shader, location: str, rng: np.random.Generator) -> Image.Image:
    """The static street of one camera, drawn once per trip: everything but props and agents."""
    img = _sky_and_ground(cam, sh, location, rng)
    d = ImageDraw.Draw(img)
    _draw_skyline(d, cam, sh, location, rng)
    _draw_street(d, cam, sh)
    _draw_facades(d, cam, sh, location, rng)
    _draw_road_lines(d, cam, sh)
    if sh.night and cam.yaw == 0:  # ego headlights on the road
        _draw_headlights(img, cam)
    return img


def _sky_and_ground(cam: Camera, sh: Shader, location: str, rng: np.random.Generator) -> Image.Image:
    """A sky gradient above the horizon, noisy ground of the location's colour below."""
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
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _draw_skyline(d: ImageDraw.ImageDraw, cam: Camera, sh: Shader, location: str, rng: np.random.Generator):
    """Distant buildings on the horizon."""
    W, H = cam.width, cam.height
    hz = int(round(cam.horizon))
    x = -rng.uniform(0, 30)
    while x < W:
        bw = rng.uniform(0.03, 0.09) * W
        bh = rng.uniform(0.02, 0.12 if location == "location_phx" else 0.2) * H
        col = sh(tuple(rng.integers(90, 170, 3)))
        d.rectangle([int(x), int(hz - bh), int(x + bw), hz], fill=col)
        x += bw * rng.uniform(0.7, 1.1)


def _draw_street(d: ImageDraw.ImageDraw, cam: Camera, sh: Shader):
    """Sidewalks, road, curbs."""
    side = sh((150, 148, 142))
    for quad in (
        ground_quad(cam, ROAD_RIGHT, ROAD_RIGHT + SIDEWALK, -40, _FAR),
        ground_quad(cam, ROAD_LEFT - SIDEWALK, ROAD_LEFT, -40, _FAR),
    ):
        if quad:
            d.polygon(quad, fill=side)
    road = ground_quad(cam, ROAD_LEFT, ROAD_RIGHT, -40, _FAR)
    if road:
        d.polygon(road, fill=sh((78, 78, 82)))


def _draw_facades(d: ImageDraw.ImageDraw, cam: Camera, sh: Shader, location: str, rng: np.random.Generator):
    """Building facades with windows behind both sidewalks."""
    for sign in (-1, 1):
        xw = (ROAD_RIGHT + SIDEWALK + 0.5) if sign > 0 else (ROAD_LEFT - SIDEWALK - 0.5)
        if location == "location_phx":
            xw += sign * 6.0
        z = -30.0
        while z < 180:
            length = rng.uniform(10, 28)
            height = rng.uniform(5, 9 if location == "location_phx" else 22)
            quad = wall_quad(cam, xw, z, z + length - 0.5, height)
            if quad:
                col = tuple(int(c) for c in rng.integers(80, 200, 3))
                d.polygon(quad, fill=sh(col))
                win = (255, 214, 120, 255) if sh.night else sh((60, 80, 100))
                for fy in np.arange(2.0, height - 1.0, 3.0):
                    for fz in np.arange(z + 1.0, z + length - 1.5, 2.5):
                        if sh.night and rng.random() < 0.5:
                            continue
                        wq = wall_quad(cam, xw - sign * 0.01, fz, fz + 1.2, fy + 1.4)
                        wq0 = wall_quad(cam, xw - sign * 0.01, fz, fz + 1.2, fy)
                        if wq and wq0:
                            d.polygon([wq0[3], wq0[2], wq[2], wq[3]], fill=win)
            z += length


def _draw_road_lines(d: ImageDraw.ImageDraw, cam: Camera, sh: Shader):
    """Static road lines: edges and the double yellow centre line."""
    white, yellow = sh((225, 225, 220)), sh((222, 186, 40))
    for x0, x1, col in (
        (ROAD_RIGHT - 0.15, ROAD_RIGHT, white),
        (ROAD_LEFT, ROAD_LEFT + 0.15, white),
        (-1.75 - 0.32, -1.75 - 0.2, yellow),
        (-1.75 - 0.12, -1.75, yellow),
    ):
        quad = ground_quad(cam, x0, x1, -40, _FAR)
        if quad:
            d.polygon(quad, fill=col)


def _draw_headlights(img: Image.Image, cam: Camera):
    """The glow of the ego car's headlights on the road ahead."""
    glow = Image.new("L", (cam.width, cam.height), 0)
    gd = ImageDraw.Draw(glow)
    quad = ground_quad(cam, -2.2, 2.2, 3.0, 30.0)
    if quad:
        gd.polygon(quad, fill=38)
    img.paste((255, 240, 200), (0, 0), glow)


def rain_streaks(cam: Camera, rng: np.random.Generator):
    """Pixel rows and columns of a camera's rain streaks (shifted every frame when rendering)."""
    n = int(cam.width * cam.height / 1400)
    ys, xs = [], []
    for _ in range(n):
        length = int(rng.integers(6, 22))
        x0, y0 = rng.uniform(0, cam.width), rng.uniform(0, cam.height)
        t = np.arange(length, dtype=np.float32)
        ys.append(y0 + t)
        xs.append(x0 + 0.25 * t)
    return np.concatenate(ys).astype(np.int64), np.concatenate(xs).astype(np.int64)
