"""Drawing detections: vehicle red, pedestrian green, cyclist blue.

Boxes follow the project convention (normalised ``[ymin, xmin, ymax, xmax]``), labels
the seed label-map ids (1 vehicle, 2 pedestrian, 4 cyclist). Figures are built on
``matplotlib.figure.Figure`` directly (no pyplot state, safe in loops and threads).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image, ImageDraw, ImageFont

from urban_detection.waymo.example import LABEL_MAP

CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "vehicle": (255, 0, 0),
    "pedestrian": (0, 255, 0),
    "cyclist": (0, 0, 255),
}
UNKNOWN_COLOUR: tuple[int, int, int] = (255, 255, 0)


def class_name(label: int) -> str:
    """Class name of a label-map id (``class_<id>`` when unknown)."""
    return LABEL_MAP.get(int(label), f"class_{int(label)}")


def colour_for_label(label: int) -> tuple[int, int, int]:
    """RGB colour of a label-map id (yellow for unknown ids)."""
    return CLASS_COLOURS.get(class_name(label), UNKNOWN_COLOUR)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # no FreeType: fixed bitmap font
        return ImageFont.load_default()


def to_uint8_rgb(image: Any) -> np.ndarray:
    """An HxW (grey) or HxWx3/4 array as contiguous-channel uint8 RGB, values clipped to [0, 255]."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an HxWx3 image, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def draw_detections(
    image: Any,
    boxes: Any,
    labels: Any,
    scores: Any = None,
    score_threshold: float = 0.0,
    line_width: int = 2,
    show_labels: bool = True,
) -> np.ndarray:
    """Return a copy of ``image`` (uint8 HxWx3) with boxes drawn in their class colour.

    Boxes with ``score < score_threshold`` are skipped (all boxes are drawn when
    ``scores`` is None). The box outline lies inside the box, ``line_width`` pixels
    thick. With ``show_labels`` a caption ("vehicle 0.87", or "vehicle" without
    scores) on a class-coloured band sits above the box (inside it at the top edge).
    """
    arr = to_uint8_rgb(image)
    height, width = arr.shape[:2]
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    lab = np.asarray(labels).reshape(-1)
    sc = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(lab) != len(b) or (sc is not None and len(sc) != len(b)):
        raise ValueError("boxes, labels and scores must have the same length")

    pil = Image.fromarray(arr.copy())
    draw = ImageDraw.Draw(pil)
    font = _font(max(10, min(height, width) // 40)) if show_labels else None
    order = np.argsort(sc) if sc is not None else np.arange(len(b))  # best drawn last
    for i in order:
        if sc is not None and sc[i] < score_threshold:
            continue
        ymin, xmin, ymax, xmax = np.clip(b[i], 0.0, 1.0)
        x0, y0 = min(int(round(xmin * width)), width - 1), min(int(round(ymin * height)), height - 1)
        x1, y1 = int(round(xmax * width)) - 1, int(round(ymax * height)) - 1
        if x1 < x0 or y1 < y0:
            continue
        colour = colour_for_label(lab[i])
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=max(1, int(line_width)))
        if show_labels:
            text = class_name(lab[i]) if sc is None else f"{class_name(lab[i])} {sc[i]:.2f}"
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            tw, th = right - left + 4, bottom - top + 4
            ty = y0 - th if y0 - th >= 0 else y0 + max(1, int(line_width))
            tx = min(x0, max(0, width - tw))
            draw.rectangle([tx, ty, tx + tw - 1, ty + th - 1], fill=colour)
            luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
            text_colour = (0, 0, 0) if luminance > 128 else (255, 255, 255)
            draw.text((tx + 2 - left, ty + 2 - top), text, fill=text_colour, font=font)
    return np.asarray(pil, dtype=np.uint8)


def _legend_handles() -> list[Patch]:
    return [
        Patch(facecolor=np.asarray(c) / 255.0, edgecolor="none", label=name)
        for name, c in CLASS_COLOURS.items()
    ]


def frames_grid_figure(
    images: Sequence[Any],
    boxes_list: Sequence[Any],
    labels_list: Sequence[Any],
    titles: Sequence[str] | None = None,
    ncols: int = 5,
    scores_list: Sequence[Any] | None = None,
    score_threshold: float = 0.0,
) -> Figure:
    """A grid of images with their boxes drawn, with a legend of the class colours.

    Meant for EDA galleries. ``titles`` (one per image) are shown above each tile;
    ``scores_list`` optionally adds scores and thresholding as in :func:`draw_detections`.
    With no images the figure just says so.
    """
    n = len(images)
    if len(boxes_list) != n or len(labels_list) != n:
        raise ValueError("images, boxes_list and labels_list must have the same length")
    if titles is not None and len(titles) != n:
        raise ValueError("titles must have one entry per image")
    ncols = max(1, min(int(ncols), n)) if n else 1
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(3.2 * ncols, 2.4 * nrows + 0.6), layout="constrained")
    if n == 0:
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "no images", ha="center", va="center")
        return fig
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        scores = None if scores_list is None else scores_list[i]
        ax.imshow(
            draw_detections(
                images[i], boxes_list[i], labels_list[i], scores, score_threshold,
                show_labels=scores is not None,
            )
        )
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    fig.legend(handles=_legend_handles(), loc="outside lower center", ncols=3, frameon=False)
    return fig


def side_by_side_figure(
    image: Any,
    gt_boxes: Any,
    gt_labels: Any,
    pred_boxes: Any,
    pred_labels: Any,
    pred_scores: Any,
    score_threshold: float = 0.5,
    title: str | None = None,
) -> Figure:
    """Ground truth (left) beside predictions with ``score >= score_threshold`` (right)."""
    scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    n_pred = int(np.sum(scores >= score_threshold))
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax_gt, ax_pred = fig.subplots(1, 2)
    ax_gt.imshow(draw_detections(image, gt_boxes, gt_labels, show_labels=False))
    ax_gt.set_title(f"ground truth ({len(np.asarray(gt_labels).reshape(-1))} boxes)")
    ax_pred.imshow(
        draw_detections(image, pred_boxes, pred_labels, scores, score_threshold)
    )
    ax_pred.set_title(f"predictions, score >= {score_threshold:g} ({n_pred} boxes)")
    for ax in (ax_gt, ax_pred):
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.legend(handles=_legend_handles(), loc="outside lower center", ncols=3, frameon=False)
    return fig
