"""The simulated street of a trip: the ego car, moving agents, signs and roadside props."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from urban_detection.waymo.synthetic.camera import CAM_HEIGHT, Camera
from urban_detection.waymo.synthetic.frames import FRAME_INTERVAL_MICROS

# Spawn shares of moving agents (label shares end up near 70/25/4 % after visibility).
_AGENT_P = {"vehicle": 0.575, "pedestrian": 0.41, "cyclist": 0.015}

# Road layout in metres (x to the right of the ego lane centre, z forward).
_LANE = 3.5
ROAD_LEFT, ROAD_RIGHT = -8.75, 5.25
SIDEWALK = 4.0
_MIN_DRAW_DEPTH = 2.5  # objects closer than this (camera depth) are not drawn
_DT = FRAME_INTERVAL_MICROS / 1e6


@dataclass
class Agent:
    """A labelled object: a moving vehicle, pedestrian or cyclist, or a sign (ego-relative metres)."""

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
class Prop:
    """An unlabelled roadside tree or lamp at a fixed route position."""

    kind: str  # tree | lamp
    x: float
    s: float  # route position (metres); z = s - odometry
    style: dict


# Agent styles, picked when an agent spawns.
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


class World:
    """The street of one trip around the ego car; :meth:`step` advances it by one frame."""

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
        self.agents: list[Agent] = []
        route = (self.v_base + self.v_amp) * _DT * n_frames + 250.0
        self.props = self._make_props(route)
        self.signs = self._make_signs(route)

    @property
    def v_ego(self) -> float:
        return max(0.0, self.v_base + self.v_amp * math.sin(2 * math.pi * self.t / self.v_period))

    def _new_id(self) -> str:
        self.n_spawned += 1
        return f"{self.trip_tag}_{self.n_spawned:04d}"

    def _make_props(self, route: float) -> list[Prop]:
        rng, props = self.rng, []
        for sign in (-1, 1):
            edge = ROAD_RIGHT if sign > 0 else ROAD_LEFT
            s = rng.uniform(-20, 0)
            while s < route:
                if rng.random() < 0.65:
                    props.append(
                        Prop(
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
                    props.append(Prop("lamp", edge + sign * 0.6, s, {"height": rng.uniform(6.0, 7.5), "side": sign}))
                s += rng.uniform(9, 18)
        return props

    def _make_signs(self, route: float) -> list[Agent]:
        rng, signs = self.rng, []
        if rng.random() < 0.5:
            return signs
        s = rng.uniform(5, 60)
        while s < route:
            side = 1 if rng.random() < 0.7 else -1
            x = (ROAD_RIGHT + 1.0) if side > 0 else (ROAD_LEFT - 1.0)
            size = rng.uniform(0.6, 0.9)
            shape = str(rng.choice(["octagon", "circle", "diamond", "square", "plate"]))
            wm = size * (1.6 if shape == "plate" else 1.0)
            hm = size * (0.5 if shape == "plate" else 1.0)
            signs.append(
                Agent(self._new_id(), "sign", x, s, 0.0, 0.0, wm, hm, {"shape": shape}, lift=rng.uniform(2.0, 2.6))
            )
            s += rng.uniform(90, 220)
        return signs

    # -- agents -------------------------------------------------------------
    def _choose_class(self) -> str:
        names = list(_AGENT_P)
        return str(self.rng.choice(names, p=np.asarray([_AGENT_P[n] for n in names])))

    def _free(self, a: Agent) -> bool:
        for b in self.agents:
            if b.cls == "vehicle" or a.cls == "vehicle":
                if abs(a.x - b.x) < 1.6 and abs(a.z - b.z) < 7.0:
                    return False
            elif abs(a.x - b.x) < 0.8 and abs(a.z - b.z) < 1.5:
                return False
        return True

    def spawn(self, initial: bool, cls: str | None = None, crossing: bool | None = None) -> Agent | None:
        """Add a new agent (of a random class unless given) if it has room; None if it has not."""
        cls = cls or self._choose_class()
        near_bias = self.rng.random() ** 1.4  # more near than far objects

        def depth(lo, hi):
            return lo + (hi - lo) * near_bias

        if cls == "vehicle":
            a = self._spawn_vehicle(cls, initial, depth)
        elif cls == "pedestrian":
            a = self._spawn_pedestrian(cls, initial, depth)
        else:  # cyclist, side view
            a = self._spawn_cyclist(cls, initial, crossing, depth)
        if not self._free(a):
            self.n_spawned -= 1
            return None
        self.agents.append(a)
        return a

    def _spawn_vehicle(self, cls: str, initial: bool, depth) -> Agent:
        """A car, van, truck or bus driving ahead, oncoming or parked."""
        rng, v_ego = self.rng, self.v_ego
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
            x = (ROAD_RIGHT + 1.1) if right else (ROAD_LEFT - 1.1)
            vz = 0.0
            st["facing"] = "rear" if (right or rng.random() < 0.5) else "front"
            z = depth(5.0, 40.0) if initial else (rng.uniform(36, 44) if v_ego > 0.3 else depth(5.0, 36.0))
        return Agent(self._new_id(), cls, x, z, 0.0, vz, w, h, st)

    def _spawn_pedestrian(self, cls: str, initial: bool, depth) -> Agent:
        """A pedestrian walking along a sidewalk or crossing the street."""
        rng, v_ego = self.rng, self.v_ego
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
            x = (ROAD_RIGHT + rng.uniform(0.5, 2.2)) if right else (ROAD_LEFT - rng.uniform(0.5, 2.2))
            vz = float(rng.choice([-1, 1])) * rng.uniform(0.8, 1.6)
            st.update(view="front", facing="away" if vz > 0 else "toward", direction=1)
            rel = vz - v_ego
            z = depth(6.0, 27.0) if initial else (rng.uniform(23, 29) if rel < 0 else rng.uniform(-3, 1))
            a = Agent(self._new_id(), cls, x, z, 0.0, vz, h * rng.uniform(0.32, 0.38), h, st)
        else:  # crossing the street
            direction = 1 if rng.random() < 0.5 else -1
            z = depth(7.0, 22.0) + 1.5 * v_ego
            x = -direction * min(0.45 * z, (-ROAD_LEFT if direction > 0 else ROAD_RIGHT) + 1.5)
            if initial:
                x = rng.uniform(ROAD_LEFT - 1.5, ROAD_RIGHT + 1.5)
            st.update(view="side", direction=direction)
            a = Agent(self._new_id(), cls, x, z, direction * rng.uniform(0.9, 1.5), 0.0, h * 0.45, h, st)
        a.phase = rng.uniform(0, 2 * math.pi)
        return a

    def _spawn_cyclist(self, cls: str, initial: bool, crossing: bool | None, depth) -> Agent:
        """A cyclist (side view) crossing the street or riding along its right edge."""
        rng, v_ego = self.rng, self.v_ego
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
            x = -direction * min(0.45 * z, (-ROAD_LEFT if direction > 0 else ROAD_RIGHT) + 1.0)
            if initial:
                x = rng.uniform(ROAD_LEFT, ROAD_RIGHT)
            a = Agent(self._new_id(), cls, x, z, direction * rng.uniform(2.5, 4.5), 0.0, w, h, st)
        else:  # along the right edge of the road
            x = ROAD_RIGHT - 0.8
            rel = float(rng.choice([-1, 1])) * rng.uniform(2.5, 4.5)
            vz = max(2.5, v_ego + rel)
            rel = vz - v_ego
            z = depth(7.0, 34.0) if initial else (rng.uniform(30, 38) if rel < 0 else rng.uniform(-4, 0))
            a = Agent(self._new_id(), cls, x, z, 0.0, vz, w, h, st)
        a.phase = rng.uniform(0, 2 * math.pi)
        return a

    def populate(self, front: Camera):
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
            if a is not None and c is not None and a.z < c.z and overlap(front, a, c):
                self.agents.remove(a)

    def _visible_in(self, cam: Camera, a: Agent, margin: float = 0.0) -> bool:
        box = screen_box(cam, a)
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
            if a.vx > 0 and a.x > ROAD_RIGHT + 4.5 or a.vx < 0 and a.x < ROAD_LEFT - 4.5:
                gone = True
            if not gone:
                kept.append(a)
        self.agents = kept
        for _ in range(2):
            if len(self.agents) < self.target:
                self.spawn(initial=False)


def screen_box(cam: Camera, a: Agent):
    """Float pixel box (x0, y0, x1, y1) of an agent, or None when not drawable."""
    xc, zc = cam.to_cam(a.x, a.z)
    if zc < _MIN_DRAW_DEPTH:
        return None
    u = cam.cx + cam.f * xc / zc
    v_bottom = cam.horizon + cam.f * (CAM_HEIGHT - a.lift) / zc
    w = cam.f * a.w / zc
    h = cam.f * a.h / zc
    return u - w / 2, v_bottom - h, u + w / 2, v_bottom


def overlap(cam: Camera, a: Agent, b: Agent) -> bool:
    ba, bb = screen_box(cam, a), screen_box(cam, b)
    if ba is None or bb is None:
        return False
    return not (ba[2] <= bb[0] or bb[2] <= ba[0] or ba[3] <= bb[1] or bb[3] <= ba[1])
