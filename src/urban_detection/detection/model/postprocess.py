"""Inference post-processing: decoded model output to per-image detections in project conventions."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from urban_detection.detection.model.conventions import indices_to_label_ids


def split_detections(boxes, scores, label_ids, num_detections) -> list[dict[str, np.ndarray]]:
    """Padded batch arrays (normalised yxyx ``boxes``, ``scores``, ``label_ids``) to per-image
    records ``{"boxes", "scores", "labels"}`` holding the first ``num_detections`` of each
    image, sorted by score, boxes clipped to [0, 1]."""
    boxes = np.asarray(boxes, np.float32)
    scores = np.asarray(scores, np.float32)
    label_ids = np.asarray(label_ids)
    num = np.asarray(num_detections).reshape(-1)
    out = []
    for i in range(boxes.shape[0]):
        n = int(num[i])
        order = np.argsort(-scores[i, :n], kind="stable")
        out.append(
            {
                "boxes": np.clip(boxes[i, :n][order], 0.0, 1.0).astype(np.float32),
                "scores": scores[i, :n][order].astype(np.float32),
                "labels": label_ids[i, :n][order].astype(np.int32),
            }
        )
    return out


def postprocess_detections(predictions: dict, image_size: int | tuple[int, int]) -> list[dict[str, np.ndarray]]:
    """Turn decoded model output into per-image numpy dicts in project conventions.

    ``predictions`` is what ``model.predict_on_batch``/``model.predict`` returns
    (``boxes`` pixel yxyx, ``confidence``, ``labels`` indices, ``num_detections``).
    Each result has ``boxes`` (N, 4) normalised ``[ymin, xmin, ymax, xmax]``,
    ``scores`` (N,) and ``labels`` (N,) label ids (1, 2, 4), sorted by score.
    """
    h, w = (image_size, image_size) if np.isscalar(image_size) else image_size
    scale = np.asarray([h, w, h, w], np.float32)
    return split_detections(np.asarray(predictions["boxes"], np.float32) / scale, predictions["confidence"],
                            indices_to_label_ids(np.asarray(predictions["labels"])), predictions["num_detections"])


def detect(model, images) -> list[dict[str, np.ndarray]]:
    """Run ``model`` on a batch of ``[B, S, S, 3]`` images (uint8 or float in [0, 255])."""
    images = tf.cast(images, tf.float32)
    preds = model.predict_on_batch(images)
    return postprocess_detections(preds, tuple(images.shape[1:3]))
