"""Cleaning of one frame's image and boxes: decode, resize and encode the JPEG; drop or clip bad labels and boxes.

The checks return counts under the skip reasons of
:data:`urban_detection.waymo.trip_result.SKIP_REASONS`; they log nothing themselves.

Box rules (sizes in pixels of the *output* image): non-finite coordinates
(``box_non_finite``), zero or negative extent (``box_zero_area``), wholly outside the
image (``box_outside``), partly outside (clipped to the image, kept, counted as
``box_clipped``), area below ``min_box_px ** 2`` after clipping (``box_zero_area``).
Labels other than vehicle/pedestrian/cyclist are dropped (``label_sign``,
``label_unknown``).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from urban_detection.waymo import frame_proto as fp

# Waymo Label.Type -> seed label id (the numbers coincide: 1 vehicle, 2 pedestrian, 4 cyclist)
WAYMO_TO_LABEL: dict[int, int] = {1: 1, 2: 2, 4: 4}
_SIGN = int(fp.LabelType.SIGN)


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def open_image(data: bytes, out_w: int, out_h: int) -> tuple[Image.Image, int, int]:
    """Decode an encoded image (DCT-scaled when much larger than the output); original size."""
    im = Image.open(io.BytesIO(data))
    width, height = im.size
    if im.format == "JPEG":
        im.draft("RGB", (out_w, out_h))  # decode at 1/2, 1/4... scale while still >= output
    if im.mode != "RGB":
        im = im.convert("RGB")  # decodes
    else:
        im.load()  # full decode; raises on broken data
    return im, width, height


def resize(im: Image.Image, out_w: int, out_h: int) -> Image.Image:
    """Area averaging when shrinking (anti-aliased and fast), bilinear when enlarging."""
    if im.size == (out_w, out_h):
        return im
    shrink = out_w <= im.width and out_h <= im.height
    return im.resize((out_w, out_h), Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR)


def validate_jpeg(data: bytes) -> tuple[int, int, str, Image.Image]:
    """Check that the bitstream decodes (at 1/8 scale, cheap); return width, height, format, decoded image."""
    im = Image.open(io.BytesIO(data))
    width, height = im.size
    fmt = im.format or ""
    if fmt == "JPEG":
        im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
    im.load()
    return width, height, fmt, im


def clean_boxes(x0, y0, x1, y1, img_w: float, img_h: float, px_x: float, px_y: float, min_area: float):
    """Validate/clip boxes given in image units (pixels, or 1.0 for normalised input).

    ``px_x``/``px_y`` convert image units to output pixels. Returns ``(keep mask,
    clipped x0, y0, x1, y1, reason counts)``.
    """
    x0, y0, x1, y1 = (np.asarray(v, np.float64) for v in (x0, y0, x1, y1))
    counts: dict[str, int] = {}
    finite = np.isfinite(x0) & np.isfinite(y0) & np.isfinite(x1) & np.isfinite(y1)
    with np.errstate(invalid="ignore", over="ignore"):
        zero = finite & ((x1 <= x0) | (y1 <= y0))
        outside = finite & ~zero & ((x1 <= 0) | (x0 >= img_w) | (y1 <= 0) | (y0 >= img_h))
        cand = finite & ~zero & ~outside
        clipped = cand & ((x0 < 0) | (y0 < 0) | (x1 > img_w) | (y1 > img_h))
        cx0, cx1 = np.clip(x0, 0, img_w), np.clip(x1, 0, img_w)
        cy0, cy1 = np.clip(y0, 0, img_h), np.clip(y1, 0, img_h)
        area = (cx1 - cx0) * px_x * (cy1 - cy0) * px_y
        small = cand & ~(area >= min_area)
    keep = cand & ~small
    counts["box_non_finite"] = int((~finite).sum())
    counts["box_zero_area"] = int(zero.sum() + small.sum())
    counts["box_outside"] = int(outside.sum())
    counts["box_clipped"] = int((clipped & keep).sum())
    return keep, cx0, cy0, cx1, cy1, counts


def label_reasons(types: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Mask of usable label ids (1, 2, 4) and counts of the others."""
    types = np.asarray(types, np.int64)
    ok = np.isin(types, list(WAYMO_TO_LABEL))
    sign = types == _SIGN
    return ok, {"label_sign": int(sign.sum()), "label_unknown": int((~ok & ~sign).sum())}
