"""A matplotlib grid of augmented frames with their boxes, to look at an augmenter's output."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import tensorflow as tf

from urban_detection.waymo.example import LABEL_MAP

_PREVIEW_COLOURS = {1: "red", 2: "green", 4: "blue"}


def augmentation_preview(images, boxes, labels, augmenter: Callable, n: int = 8, seed: int = 0):
    """A grid of ``n`` augmented frames with boxes in class colours (vehicle red,
    pedestrian green, cyclist blue, other ids yellow).

    ``images``/``boxes``/``labels`` are sequences (one entry per frame) that are cycled
    through; frame ``i`` uses seed ``[seed, i]`` when the augmenter takes a ``seed``.
    Returns a ``matplotlib.figure.Figure`` with exactly ``n`` axes (not saved).
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(images) == 0:
        raise ValueError("augmentation_preview needs at least one image")
    try:
        takes_seed = "seed" in inspect.signature(augmenter).parameters
    except (TypeError, ValueError):
        takes_seed = False
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.2 * cols, 2.4 * rows), layout="constrained")
    for i in range(n):
        j = i % len(images)
        kwargs = {"seed": tf.constant([seed, i], tf.int32)} if takes_seed else {}
        image, frame_boxes, frame_labels = augmenter(
            images[j], tf.reshape(tf.cast(boxes[j], tf.float32), [-1, 4]),
            tf.cast(labels[j], tf.int32), **kwargs
        )
        image = tf.cast(tf.clip_by_value(tf.cast(image, tf.float32), 0, 255), tf.uint8).numpy()
        h, w = image.shape[:2]
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(image)
        for (y0, x0, y1, x1), label in zip(
            frame_boxes.numpy().tolist(), frame_labels.numpy().tolist(), strict=True
        ):
            ax.add_patch(
                Rectangle(
                    (x0 * w, y0 * h), (x1 - x0) * w, (y1 - y0) * h, fill=False, linewidth=1.2,
                    edgecolor=_PREVIEW_COLOURS.get(int(label), "yellow"),
                )
            )
        names = sorted({LABEL_MAP.get(int(v), str(v)) for v in frame_labels.numpy().tolist()})
        ax.set_title(f"#{i} ({len(frame_labels)} boxes: {', '.join(names) or '-'})", fontsize=8)
        ax.set_axis_off()
    return fig
