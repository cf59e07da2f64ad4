"""One detector API: uint8 images of any size in, :class:`Detections` out.

A trained Keras detector (:class:`~urban_detection.detection.trained.TrainedDetector`) and
an exported SavedModel (:class:`~urban_detection.detection.export.ExportedDetector`) both
answer ``predict(images, score_threshold=...)`` through :func:`predict_images`, with what
the export returns: label-map ids (1 vehicle, 2 pedestrian, 4 cyclist), normalised
``[ymin, xmin, ymax, xmax]`` boxes and scores, best first. Images are resized to the
model's input inside; they must be uint8 RGB (0-255): float images are refused, since
dividing by 255 beforehand would silently give near-zero scores.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from urban_detection.waymo.example import LABEL_MAP

# What the render pipeline draws (`render.score_threshold`) and the served model returns by default.
DEFAULT_SCORE_THRESHOLD = 0.3


@dataclass(frozen=True)
class Detections:
    """The detections of one image: ``boxes`` (N, 4) normalised yxyx, ``labels`` (N,) label-map
    ids, ``scores`` (N,), best first."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray

    @classmethod
    def from_record(cls, record: dict[str, Any], score_threshold: float = 0.0) -> Detections:
        scores = np.asarray(record["scores"], np.float32).reshape(-1)
        keep = scores >= score_threshold
        return cls(boxes=np.asarray(record["boxes"], np.float32).reshape(-1, 4)[keep],
                   labels=np.asarray(record["labels"], np.int32).reshape(-1)[keep], scores=scores[keep])

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def names(self) -> list[str]:
        """Class names of the labels (``vehicle``, ``pedestrian``, ``cyclist``)."""
        return [LABEL_MAP.get(int(label), f"label_{int(label)}") for label in self.labels]

    def pixel_boxes(self, height: int, width: int) -> np.ndarray:
        """Boxes as pixel ``[xmin, ymin, xmax, ymax]`` of an image of ``height`` x ``width``."""
        y0, x0, y1, x1 = (self.boxes.T if len(self) else np.zeros((4, 0), np.float32))
        return np.stack([x0 * width, y0 * height, x1 * width, y1 * height], axis=1).astype(np.float32)

    def as_record(self) -> dict[str, np.ndarray]:
        return {"boxes": self.boxes, "labels": self.labels, "scores": self.scores}

    def __repr__(self) -> str:
        counts = {}
        for name in self.names:
            counts[name] = counts.get(name, 0) + 1
        top = f", best score {self.scores[0]:.3f}" if len(self) else ""
        return f"Detections({len(self)}: {', '.join(f'{n} {c}' for n, c in counts.items()) or 'none'}{top})"


def as_image_list(images: Any) -> tuple[list[np.ndarray], bool]:
    """``images`` (one HxWx3 image, a BxHxWx3 batch or a list of images of any sizes) as a list of
    uint8 arrays, and whether a single image was given. ``TypeError``/``ValueError`` otherwise."""
    single = hasattr(images, "shape") and len(images.shape) == 3
    items = [images] if single else list(images)
    out = []
    for i, image in enumerate(items):
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            raise TypeError(f"image {i}: detectors take uint8 RGB images (0-255), got {arr.dtype}; "
                            "do not divide by 255")
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"image {i}: expected an HxWx3 RGB image, got shape {arr.shape}")
        out.append(arr)
    return out, single


def predict_images(model: Any, images: Any, *, image_size: int | None = None,
                   score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                   batch_size: int = 8) -> Detections | list[Detections]:
    """Detect objects in ``images`` with a Keras detector or an exported one (see the module doc).

    Images of one size are batched together (``batch_size``); results come back in the input
    order: one :class:`Detections`, or a list when a batch or list was given.
    """
    from urban_detection.detection.predict import detect_batch

    items, single = as_image_list(images)
    results: list[Detections | None] = [None] * len(items)
    by_shape: dict[tuple, list[int]] = {}
    for i, image in enumerate(items):
        by_shape.setdefault(image.shape, []).append(i)
    for indices in by_shape.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            records = detect_batch(model, np.stack([items[i] for i in chunk]), image_size, pad_to=batch_size)
            for i, record in zip(chunk, records):
                results[i] = Detections.from_record(record, score_threshold)
    return results[0] if single else results


def counts_by_class(detections: Sequence[Detections]) -> dict[str, int]:
    """How many detections of each class ``detections`` hold together."""
    counts = {name: 0 for name in LABEL_MAP.values()}
    for det in detections:
        for name in det.names:
            counts[name] = counts.get(name, 0) + 1
    return counts
