"""Agent sprites: vehicles, pedestrians, cyclists and signs drawn into their own RGBA images."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from urban_detection.waymo.synthetic.shading import Shader, mul
from urban_detection.waymo.synthetic.world import Agent


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


def draw_vehicle(w: int, h: int, st: dict, sh: Shader) -> Image.Image:
    """A car, van, truck or bus seen from the front or the rear."""
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
            p.rect(0.0, 0.5, 1.0, 0.56, sh(mul(st["paint"], 0.6), obj=True))
        p.rect(0.02, 0.78, 0.98, 0.86, sh((50, 50, 54), obj=True))
        light_y = (0.62, 0.72)
    else:
        p.rect(0.07, 0.8, 0.24, 1.0, dark)
        p.rect(0.76, 0.8, 0.93, 1.0, dark)
        p.rrect(0.0, 0.4, 1.0, 0.88, body, 0.15)
        p.poly([(0.14, 0.0), (0.86, 0.0), (0.97, 0.45), (0.03, 0.45)], sh(mul(st["paint"], 0.88), obj=True))
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


def draw_pedestrian(w: int, h: int, st: dict, sh: Shader, phase: float) -> Image.Image:
    """A pedestrian seen from the front/back, or walking across (side view) at a stride ``phase``."""
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


def draw_cyclist(w: int, h: int, st: dict, sh: Shader, phase: float) -> Image.Image:
    """A cyclist on a bike, side view, pedalling at ``phase``."""
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


def draw_sign(w: int, h: int, st: dict, sh: Shader) -> Image.Image:
    """A sign plate (octagon, circle, diamond, square or street plate), without its pole."""
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


def agent_sprite(a: Agent, w: int, h: int, sh: Shader) -> Image.Image:
    """The ``w`` x ``h`` RGBA sprite of an agent."""
    if a.cls == "vehicle":
        return draw_vehicle(w, h, a.style, sh)
    if a.cls == "pedestrian":
        return draw_pedestrian(w, h, a.style, sh, a.phase)
    if a.cls == "cyclist":
        return draw_cyclist(w, h, a.style, sh, a.phase)
    return draw_sign(w, h, a.style, sh)
