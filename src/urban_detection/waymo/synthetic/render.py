"""Rendering one camera's view of the world: the image and the boxes of the visible objects."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from urban_detection.waymo.synthetic.camera import Camera, ground_quad
from urban_detection.waymo.synthetic.frames import CLASS_OF, CameraFrame
from urban_detection.waymo.synthetic.shading import Shader, mul
from urban_detection.waymo.synthetic.sprites import agent_sprite
from urban_detection.waymo.synthetic.world import Agent, Prop, World, screen_box


def _draw_prop(d: ImageDraw.ImageDraw, cam: Camera, pr: Prop, z: float, sh: Shader):
    """A roadside tree or lamp (not labelled)."""
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
            [u - radius * 0.7 * k, top - 0.1 * k, u + radius * 0.3 * k, cy], fill=sh(mul(pr.style["leaf"], 1.15))
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


def render_view(cam: Camera, world: World, sh: Shader, frame_index: int) -> tuple[Image.Image, CameraFrame]:
    """One camera's view of the world at a frame: its PIL image and its image, boxes and labels."""
    img = cam.background.copy()
    d = ImageDraw.Draw(img)
    _draw_lane_dashes(d, cam, world, sh)
    id_map, labelled = _draw_objects(img, d, cam, world, sh)
    arr = _pixels(img, cam, sh, frame_index)
    boxes, types, ids = _labels(id_map, labelled)
    if sh.rain:
        img = Image.fromarray(arr)
    cf = CameraFrame(
        image=arr,
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        types=np.asarray(types, np.int32),
        ids=ids,
    )
    return img, cf


def _draw_lane_dashes(d: ImageDraw.ImageDraw, cam: Camera, world: World, sh: Shader):
    """The dashed lane lines, moving with the ego car."""
    white = sh((225, 225, 220))
    phase = world.odometry % 12.0
    for xl in (1.75, -5.25):
        for k in range(-2, 10):
            z0 = k * 12.0 - phase
            quad = ground_quad(cam, xl - 0.07, xl + 0.07, z0, z0 + 3.0)
            if quad:
                d.polygon(quad, fill=white)


def _depth_order(cam: Camera, world: World) -> list[tuple[float, int, Prop | Agent, float]]:
    """Props, signs and agents as ``(camera depth, is agent, object, z)``, far to near."""
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
    return items


def _draw_objects(img: Image.Image, d: ImageDraw.ImageDraw, cam: Camera, world: World, sh: Shader):
    """Draw everything far to near: ``(id map of visible agent pixels, [(agent, pixel box, pixel count)])``."""
    id_map = np.zeros((cam.height, cam.width), np.int16)
    labelled: list[tuple[Agent, tuple[int, int, int, int], int]] = []
    for zc, is_agent, obj, z in _depth_order(cam, world):
        if zc < 1.0:
            continue
        if not is_agent:
            _draw_prop(d, cam, obj, z, sh)
            continue
        drawn = _draw_agent(img, d, cam, obj, zc, sh)
        if drawn is None:
            continue
        ox, oy, alpha = drawn
        if not alpha.any():
            continue
        idx = len(labelled) + 1
        id_map[oy : oy + alpha.shape[0], ox : ox + alpha.shape[1]][alpha] = idx
        cols = np.flatnonzero(alpha.any(axis=0))
        rows = np.flatnonzero(alpha.any(axis=1))
        bx0, bx1 = ox + cols[0], ox + cols[-1] + 1
        by0, by1 = oy + rows[0], oy + rows[-1] + 1
        labelled.append((obj, (int(bx0), int(by0), int(bx1), int(by1)), int(alpha.sum())))
    return id_map, labelled


def _draw_agent(img: Image.Image, d: ImageDraw.ImageDraw, cam: Camera, a: Agent, zc: float, sh: Shader):
    """Paste an agent's sprite (a sign with its pole): ``(x, y, alpha mask)`` of its part inside the image, or None."""
    W, H = cam.width, cam.height
    box = screen_box(cam, a)
    if box is None:
        return None
    x0, y0 = int(round(box[0])), int(round(box[1]))
    w, h = int(round(box[2])) - x0, int(round(box[3])) - y0
    if w < 4 or h < 4 or x0 >= W or y0 >= H or x0 + w <= 0 or y0 + h <= 0:
        return None
    if w > 3 * W or h > 3 * H:
        return None
    if a.cls == "sign":  # the pole is not part of the sign's box
        pole = max(1, int(round(0.08 * cam.f / zc)))
        cxp = x0 + w // 2
        d.rectangle(
            [cxp - pole // 2, y0 + h, cxp + pole // 2, y0 + h + int(round(a.lift * cam.f / zc))],
            fill=sh((110, 112, 116)),
        )
    sprite = agent_sprite(a, w, h, sh)
    img.paste(sprite, (x0, y0), sprite)
    # visible part of the sprite inside the image
    sx0, sy0 = max(0, -x0), max(0, -y0)
    sx1, sy1 = min(w, W - x0), min(h, H - y0)
    alpha = np.asarray(sprite.getchannel("A"))[sy0:sy1, sx0:sx1] > 0
    return x0 + sx0, y0 + sy0, alpha


def _pixels(img: Image.Image, cam: Camera, sh: Shader, frame_index: int) -> np.ndarray:
    """The view's RGB pixels; in rain softened and streaked."""
    W, H = cam.width, cam.height
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
    return arr


def _labels(id_map: np.ndarray, labelled: list) -> tuple[list, list, list]:
    """Boxes, types and ids of the agents visible enough (not hidden behind nearer objects)."""
    boxes, types, ids = [], [], []
    for k, (obj, (bx0, by0, bx1, by1), total) in enumerate(labelled, start=1):
        # an agent's pixels lie inside its box: counting them there gives what a bincount of the whole map
        # gives, at a tenth of the cost
        visible = np.count_nonzero(id_map[by0:by1, bx0:bx1] == k)
        if visible < max(12, 0.15 * total):
            continue  # hidden behind nearer objects: no label
        if bx1 - bx0 < 3 or by1 - by0 < 3:
            continue
        boxes.append(((bx0 + bx1) / 2.0, (by0 + by1) / 2.0, float(bx1 - bx0), float(by1 - by0)))
        types.append(CLASS_OF[obj.cls])
        ids.append(obj.id)
    return boxes, types, ids
