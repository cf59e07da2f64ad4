"""Per-class confusion matrix of a detector, with a background row and column. No Kedro here.

Rows are the ground-truth classes then ``background``, columns the predicted classes then
``background`` (``matrix[true, predicted]``):

* a detection matched to a ground-truth box counts at (its box's class, its class): on the
  diagonal when the classes agree, off it for a wrong class;
* a ground-truth box that no detection matched counts in the background column (a miss);
* a detection that matched nothing counts in the background row (a false positive);
* the background/background cell stays 0 (true negatives are not countable).

Matching rule, per frame: only detections with ``score >= score_threshold`` (the
rendering threshold) take part. They are taken in descending score order (stable for
equal scores), and each takes the still-unmatched ground-truth box of largest IoU, if
that IoU is ``>= iou_threshold``: the greedy score-first matching of COCO and Waymo
(:func:`~.waymo_ap.match_score_first`), but across classes, so that a box of the wrong
class is one confusion rather than a false positive plus a miss. (Ultralytics' matrix is
class-agnostic as well but pairs by descending IoU; torchmetrics has no detection
confusion matrix.) Ground-truth boxes of unknown labels or without area are left out, as
in the COCO ground truth; detections of unknown labels are left out with a warning.
Frames pair up by ``image_id``; records are those of :func:`~.predict.predict_split`.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from urban_detection.detection.waymo_ap import box_iou, match_score_first
from urban_detection.waymo.example import CLASS_NAMES, LABEL_MAP

log = logging.getLogger(__name__)

BACKGROUND = "background"


def _frame_arrays(frame: Mapping[str, Any], with_scores: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.asarray(frame.get("boxes", []), dtype=np.float64)
    boxes = np.zeros((0, 4)) if boxes.size == 0 else np.clip(boxes.reshape(-1, 4), 0.0, 1.0)
    labels = np.asarray(frame.get("labels", []), dtype=np.int64).reshape(-1)
    default = np.ones(len(boxes)) if with_scores else np.zeros(len(boxes))
    scores = np.asarray(frame.get("scores", default), dtype=np.float64).reshape(-1)
    if not len(boxes) == len(labels) == len(scores):
        raise ValueError(f"frame {frame.get('source_id', frame.get('image_id'))}: {len(boxes)} boxes, "
                         f"{len(labels)} labels, {len(scores)} scores")
    return boxes, labels, scores


def match_frame(gt: Mapping[str, Any], det: Mapping[str, Any] | None, class_ids: Sequence[int],
                score_threshold: float, iou_threshold: float) -> np.ndarray:
    """The confusion counts of one frame: a ``(C+1, C+1)`` int64 matrix (see the module doc)."""
    index = {int(c): k for k, c in enumerate(class_ids)}
    bg = len(class_ids)
    counts = np.zeros((bg + 1, bg + 1), dtype=np.int64)
    gt_boxes, gt_labels, _ = _frame_arrays(gt, with_scores=False)
    keep = np.isin(gt_labels, list(index)) & (gt_boxes[:, 2] > gt_boxes[:, 0]) & (gt_boxes[:, 3] > gt_boxes[:, 1])
    gt_boxes, gt_labels = gt_boxes[keep], gt_labels[keep]
    boxes, labels, scores = _frame_arrays(det or {}, with_scores=True)
    known = np.isin(labels, list(index))
    if (~known & (scores >= score_threshold)).any():
        log.warning("frame %s: ignoring %d detection(s) of unknown label(s) %s", gt.get("source_id", gt["image_id"]),
                    int((~known & (scores >= score_threshold)).sum()), sorted(set(labels[~known].tolist())))
    keep = known & (scores >= score_threshold)
    boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    boxes, labels = boxes[order], labels[order]
    matches = match_score_first(box_iou(boxes, gt_boxes), iou_threshold)
    for d, g in enumerate(matches):
        row = index[int(gt_labels[g])] if g >= 0 else bg
        counts[row, index[int(labels[d])]] += 1
    missed = np.setdiff1d(np.arange(len(gt_labels)), matches[matches >= 0])
    for g in missed:
        counts[index[int(gt_labels[g])], bg] += 1
    return counts


def confusion_matrix(
    gt_frames: Sequence[Mapping[str, Any]],
    det_frames: Sequence[Mapping[str, Any]],
    score_threshold: float,
    iou_threshold: float = 0.5,
    class_ids: Sequence[int] = tuple(LABEL_MAP),
) -> np.ndarray:
    """Counts ``(C+1, C+1)`` (int64) over all frames: rows ground truth (``class_ids`` order, default
    vehicle, pedestrian, cyclist, then background), columns predictions in the same order."""
    dets: dict[int, Mapping[str, Any]] = {}
    for rec in det_frames:
        image_id = int(rec["image_id"])
        if image_id in dets:
            raise ValueError(f"two detection records for image_id {image_id}")
        dets[image_id] = rec
    ids = {int(g["image_id"]) for g in gt_frames}
    if len(ids) != len(gt_frames):
        raise ValueError("duplicate image_id in ground-truth frames")
    if set(dets) - ids:
        log.warning("confusion matrix: skipping %d detection records whose image_id is not in the ground truth",
                    len(set(dets) - ids))
    total = np.zeros((len(class_ids) + 1,) * 2, dtype=np.int64)
    for gt in gt_frames:
        total += match_frame(gt, dets.get(int(gt["image_id"])), class_ids, score_threshold, iou_threshold)
    return total


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the share of that true class going to each column); NaN for empty rows."""
    matrix = np.asarray(matrix, dtype=np.float64)
    sums = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, sums, out=np.full_like(matrix, np.nan), where=sums > 0)


def _draw(ax, values: np.ndarray, labels: list[str], title: str, fmt: str) -> None:
    shown = np.nan_to_num(values, nan=0.0)
    ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=max(float(shown.max()), 1e-9))
    top = float(shown.max())
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v) and v:
            ax.text(c, r, format(v, fmt), ha="center", va="center", fontsize=9,
                    color="white" if v > 0.6 * top else "black")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=30, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title, fontsize=10)


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str] = CLASS_NAMES, title: str | None = None) -> Figure:
    """Two panels: the counts and the row-normalised matrix (each true class's row sums to 1).

    ``matrix`` is :func:`confusion_matrix`'s; ``class_names`` name its first C rows and
    columns (the last one is ``background``). Built on ``matplotlib.figure.Figure``.
    """
    matrix = np.asarray(matrix)
    labels = [*map(str, class_names), BACKGROUND]
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"matrix of shape {matrix.shape} does not fit {len(class_names)} classes + background")
    fig = Figure(figsize=(10, 4.6), layout="constrained")
    counts_ax, norm_ax = fig.subplots(1, 2)
    _draw(counts_ax, matrix.astype(np.float64), labels, "counts", ".0f")
    _draw(norm_ax, row_normalised(matrix), labels, "row-normalised (share of each true class)", ".2f")
    fig.suptitle(title or "confusion matrix")
    return fig
