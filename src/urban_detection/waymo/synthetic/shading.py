"""Scene-wide colours of a trip: the time-of-day and weather colour transform."""

from __future__ import annotations

import numpy as np

_LIGHT = {
    "Day": dict(sky=((86, 140, 214), (196, 220, 242)), light=1.0, tint=(1.0, 1.0, 1.0)),
    "Dawn": dict(sky=((84, 92, 150), (246, 186, 150)), light=0.78, tint=(1.06, 0.96, 0.9)),
    "Dusk": dict(sky=((52, 50, 112), (244, 146, 92)), light=0.66, tint=(1.1, 0.92, 0.8)),
    "Night": dict(sky=((6, 8, 22), (30, 36, 58)), light=0.34, tint=(0.9, 0.95, 1.1)),
}


class Shader:
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
        self._shaded: dict = {}  # a trip draws a few dozen colours tens of thousands of times

    def __call__(self, rgb, obj: bool = False, alpha: int = 255) -> tuple[int, int, int, int]:
        key = (tuple(rgb), obj, alpha)
        shaded = self._shaded.get(key)
        if shaded is None:
            shaded = self._shaded[key] = self._shade(rgb, obj, alpha)
        return shaded

    def _shade(self, rgb, obj: bool, alpha: int) -> tuple[int, int, int, int]:
        c = np.asarray(rgb, np.float32)
        if self.desat:
            c = c * (1 - self.desat) + c.mean() * self.desat
        c = np.clip(c * (self.object_scale if obj else self.scale), 0, 255)
        return int(c[0]), int(c[1]), int(c[2]), alpha


def mul(rgb, k: float):
    """A colour scaled by ``k`` (alpha kept), clipped to 0..255."""
    return tuple(int(max(0, min(255, c * k))) for c in rgb[:3]) + tuple(rgb[3:])
