"""COCO metrics of a model while it trains, and the best checkpoint so far. No Kedro here.

A fixed subset of validation frames is decoded once, resized to the model's input and
kept in memory; at every checkpoint the model runs over it and the project's COCO
evaluation (:mod:`.coco`, the same numbers as the evaluate pipeline) scores it::

    frames = load_frames(val_paths, image_size, max_frames=128)        # once
    metrics = val_coco_metrics(model, frames, image_size)             # at each checkpoint
    if best.update(step, metrics, checkpoint=path): ...               # new best

The subset is spread evenly over all frames of the files (in file order), so the same
files always give the same frames, whatever the order of training. Ground truth records
have the shape of :func:`~.predict.predict_split`'s (``image_id`` 1..N in subset order).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from urban_detection.detection.best_metric import DIRECTIONS, metric_direction
from urban_detection.detection.coco import coco_metrics, to_coco_detections, to_coco_ground_truth
from urban_detection.detection.data import parse_example
from urban_detection.detection.predict import detect_batch
from urban_detection.waymo.records import RecordReadError, iter_records

log = logging.getLogger(__name__)

MAP = "DetectionBoxes_Precision/mAP"
MAP50 = "DetectionBoxes_Precision/mAP@.50IOU"
MODES = DIRECTIONS


# --------------------------------------------------------------------------- the fixed subset


def count_records(path: str | Path) -> int:
    """Number of readable records in one TFRecord file (read, not parsed; a damaged tail is not counted, with a
    warning naming the file and record)."""
    return sum(1 for _ in _readable_records(str(path)))


def _readable_records(path: str, warn: bool = True) -> Iterator[bytes]:
    """The records of ``path`` up to where it stops being readable (TensorFlow's record reader, no pipeline)."""
    try:
        for _, data in iter_records(path):
            yield data
    except RecordReadError as e:
        if warn:
            log.warning("%s: record %d: %s (%s); the records from there on are not read", path, e.index, e.message,
                        e.kind)


def spread_indices(total: int, max_frames: int | None) -> np.ndarray:
    """``max_frames`` indices spread evenly over ``range(total)`` (all of them when fewer)."""
    if max_frames is None or total <= max_frames:
        return np.arange(total, dtype=np.int64)
    if max_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, total - 1, max_frames)).astype(np.int64))


def _prepared(serialized: list[bytes], image_size: int) -> tf.data.Dataset:
    """The records parsed and resized as for evaluation, with their position in ``serialized`` (records that do
    not parse are skipped with a warning)."""

    def prepare(record, position):
        ex = parse_example(record)
        image = tf.image.resize(tf.cast(ex["image"], tf.float32), [image_size, image_size])
        image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
        return image, ex["boxes"], ex["labels"], ex["source_id"], ex["height"], ex["width"], position

    positions = tf.range(len(serialized), dtype=tf.int64)
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(serialized, tf.string), positions))
    return ds.map(prepare).ignore_errors(log_warning=True)


def load_frames(
    tfrecord_paths: str | Path | Sequence[str | Path],
    image_size: int,
    max_frames: int | None = 128,
) -> tuple[np.ndarray, list[dict]]:
    """Decode a fixed, evenly spread subset of at most ``max_frames`` frames of ``tfrecord_paths``.

    Returns ``(images, ground_truth)``: ``images`` uint8 ``[N, image_size, image_size, 3]``
    (resized as for evaluation), ``ground_truth`` one record per image as
    :func:`~.predict.predict_split` gives (``image_id`` 1..N, ``source_id``, ``path``,
    ``height``/``width`` of the original frame, ``boxes`` normalised yxyx clipped to
    [0, 1], ``labels`` label ids). Records that do not parse are skipped with a warning.
    """
    paths = [str(tfrecord_paths)] if isinstance(tfrecord_paths, (str, Path)) else [str(p) for p in tfrecord_paths]
    if not paths:
        raise ValueError("no TFRecord paths to load validation frames from")
    start = time.perf_counter()
    counts = [count_records(p) for p in paths]
    chosen = spread_indices(sum(counts), max_frames)
    offsets = np.cumsum([0, *counts])
    serialized, files = [], []  # a second pass keeps only the chosen records (counting warned of damage)
    for k, path in enumerate(paths):
        local = set((chosen[(chosen >= offsets[k]) & (chosen < offsets[k + 1])] - offsets[k]).tolist())
        if local:
            kept = [data for i, data in enumerate(_readable_records(path, warn=False)) if i in local]
            serialized += kept
            files += [path] * len(kept)
    images: list[np.ndarray] = []
    ground_truth: list[dict] = []
    for image, boxes, labels, source_id, height, width, position in (_prepared(serialized, image_size)
                                                                      if serialized else []):
        images.append(image.numpy())
        ground_truth.append({
            "image_id": len(ground_truth) + 1,
            "source_id": source_id.numpy().decode(errors="replace"),
            "path": files[int(position)],
            "height": int(height),
            "width": int(width),
            "boxes": np.clip(boxes.numpy(), 0.0, 1.0).astype(np.float32).reshape(-1, 4),
            "labels": labels.numpy().astype(np.int32),
        })
    if not images:
        raise ValueError(f"no readable frame in {len(paths)} file(s), e.g. {paths[0]}")
    log.info("loaded %d validation frames of %d (%d file(s)) in %.1fs", len(images), sum(counts), len(paths),
             time.perf_counter() - start)
    return np.stack(images), ground_truth


# --------------------------------------------------------------------------- metrics


def detect_frames(model: Any, images: np.ndarray, ground_truth: Sequence[Mapping[str, Any]], image_size: int,
                  batch_size: int = 8) -> list[dict]:
    """Detections of ``model`` on in-memory ``images``, as :func:`~.predict.predict_split`'s detection records
    (``image_id``, ``source_id``, ``height``, ``width`` of the matching ground truth record, plus ``boxes``,
    ``scores``, ``labels``). ``model`` is a Keras or exported detector (see :func:`~.predict.detect_batch`)."""
    if len(images) != len(ground_truth):
        raise ValueError(f"{len(images)} images but {len(ground_truth)} ground truth records")
    det_frames: list[dict] = []
    for i in range(0, len(images), batch_size):
        dets = detect_batch(model, images[i:i + batch_size], image_size, pad_to=batch_size)
        for gt, det in zip(ground_truth[i:i + batch_size], dets):
            common = {k: gt[k] for k in ("image_id", "source_id", "height", "width")}
            det_frames.append({**common, **det})
    return det_frames


def val_coco_metrics(model: Any, frames: tuple[np.ndarray, Sequence[Mapping[str, Any]]], image_size: int,
                     batch_size: int = 8) -> dict[str, float]:
    """COCO metrics of ``model`` on the frames of :func:`load_frames`.

    Returns :func:`~.coco.coco_metrics`' dict (the 12 Object Detection API numbers, e.g.
    ``DetectionBoxes_Precision/mAP`` and ``.../mAP@.50IOU``, plus per-class AP; NaN where
    COCO cannot define a value).
    """
    images, ground_truth = frames
    start = time.perf_counter()
    det_frames = detect_frames(model, images, ground_truth, image_size, batch_size)
    gt = to_coco_ground_truth(ground_truth)
    metrics = coco_metrics(gt, to_coco_detections(det_frames, gt))
    log.info("val COCO on %d frames in %.1fs: mAP %.4f, mAP@.50IOU %.4f", len(images), time.perf_counter() - start,
             metrics[MAP], metrics[MAP50])
    return metrics


# --------------------------------------------------------------------------- best checkpoint


@dataclass
class BestCheckpoint:
    """Which step has the best value of ``metric`` so far (``mode`` ``"max"`` or ``"min"``; by default
    the metric's own direction, :func:`~.best_metric.metric_direction`: AP and AR up, losses down).

    Ties keep the earlier step; a missing or NaN value is never best. :meth:`to_dict` /
    :meth:`from_dict` carry the state through a resumed run.
    """

    metric: str = MAP
    mode: str | None = None
    best_value: float | None = None
    best_step: int | None = None
    best_checkpoint: str | None = None

    def __post_init__(self):
        if self.mode is None:
            self.mode = metric_direction(self.metric)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    def is_better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def update(self, step: int, metrics: Mapping[str, Any], checkpoint: str | None = None) -> bool:
        """Record ``metrics`` of ``step``; True when this step is the new best."""
        value = metrics.get(self.metric)
        try:
            value = float(value)
        except (TypeError, ValueError):
            log.warning("step %d: no value of %s to compare (got %r)", step, self.metric, value)
            return False
        if not math.isfinite(value) or not self.is_better(value):
            return False
        self.best_value, self.best_step, self.best_checkpoint = value, int(step), checkpoint
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> BestCheckpoint:
        return cls(**{k: state[k] for k in ("metric", "mode", "best_value", "best_step", "best_checkpoint")
                      if k in state})
