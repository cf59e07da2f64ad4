"""Waymo-style 2D detection AP: vehicle at IoU 0.7, pedestrian and cyclist at IoU 0.5.

COCO's AP@[.5:.95] does not line up with the Waymo Open Dataset leaderboards, which
rank detectors by one AP per class at a class-specific IoU threshold. This module
computes those numbers from the per-frame records :func:`.evaluate.predict_split`
returns (the same records the COCO evaluation uses: ground truth ``{image_id, boxes,
labels}``, detections ``{image_id, boxes, labels, scores}``, normalised
``[ymin, xmin, ymax, xmax]`` boxes, label-map ids).

What is implemented, following ``waymo_open_dataset/metrics`` (``detection_metrics.cc``,
``matcher.cc``, ``metrics_utils.cc``, ``protos/metrics.proto``):

* **Operating points.** For each score cutoff ``c`` the detections with
  ``score >= c`` (scores compared as float32, as Waymo stores them) are matched to
  the ground truth of each frame and class; TP, FP and FN are summed over frames.
  The default cutoffs are those of Waymo's ``compute_detection_metrics_main``:
  ``0.00, 0.01, ..., 0.99, 1.0``. ``score_cutoffs=None`` uses every distinct
  detection score instead (the finest curve the detections allow).
* **Matching** is Waymo's ``TYPE_SCORE_FIRST`` matcher (COCO-style greedy): in each
  frame and class, detections in descending score order (ties: record order) take
  the not yet matched ground truth of largest IoU among those with
  ``IoU >= threshold``; a ground truth is matched at most once, so a duplicate is a
  false positive. Waymo's own tool defaults to ``TYPE_HUNGARIAN`` (maximum total
  IoU, scores ignored within a cutoff); the two differ only where one detection
  overlaps several ground-truth boxes above the threshold. IoU is of axis-aligned
  boxes (Waymo's ``TYPE_AA_2D``); it is the same in normalised and pixel units.
* **Precision/recall per cutoff** as ``ToDetectionMetrics``: precision
  ``TP / (TP + FP)`` (0 when nothing is kept), recall ``TP / (TP + FN)``, and
  precision 1 wherever recall is 0.
* **AP** as ``ComputeMeanAveragePrecision`` with ``desired_recall_delta = 0.05``:
  per recall the best precision, with ``(recall 0, precision 1)`` added; walking from
  high to low recall, precision is the running maximum (the best precision at this
  or any higher recall), and wherever two points are more than 0.05 recall apart,
  points every 0.05 are inserted at the running maximum of the higher recalls; the
  point at recall 0 takes the precision of its neighbour; AP is the trapezoidal area
  under these points. Nothing is counted beyond the highest recall reached.

Difficulty: Waymo reports LEVEL_1 (only LEVEL_1 boxes count as missed) and LEVEL_2
(every box counts). The 2D camera labels we read carry no difficulty, so every box
is treated as LEVEL_1: LEVEL_1 and LEVEL_2 would coincide, and this is that number
(``LEVEL_1``-like over all boxes). No-label zones are not applied (2D camera labels
have none).

Ground truth and detections are clipped to the image; ground-truth boxes of an
unknown label or with no area after clipping are left out, as
:func:`.coco.to_coco_ground_truth` does. A class without ground truth has no AP
(NaN; ``None`` in JSON) and is left out of the mean; a class with ground truth but
no detection has AP 0.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from urban_detection.waymo.example import LABEL_MAP

log = logging.getLogger(__name__)

# Waymo's Label.Type ids are our label-map ids; its IoU thresholds per type.
IOU_THRESHOLDS: dict[int, float] = {1: 0.7, 2: 0.5, 4: 0.5}
if set(IOU_THRESHOLDS) != set(LABEL_MAP):
    raise RuntimeError(f"Waymo IoU thresholds {sorted(IOU_THRESHOLDS)} do not cover the label map {sorted(LABEL_MAP)}")
# Score cutoffs of Waymo's compute_detection_metrics_main: i * 0.01 for i < 100, then 1.0 (float32 as in its proto).
WAYMO_SCORE_CUTOFFS: np.ndarray = np.append(np.arange(100) * 0.01, 1.0).astype(np.float32)
RECALL_DELTA = 0.05  # Config.desired_recall_delta default

PREFIX = "Waymo2D/"
AP_KEY = PREFIX + "AP@{iou}IOU/{name}"
MAP_KEY = PREFIX + "mAP"


def iou_tag(iou: float) -> str:
    """``0.7`` -> ``.70``, as in the Object Detection API's ``mAP@.50IOU``."""
    return f"{iou:.2f}".removeprefix("0")


def ap_key(label: int) -> str:
    """Metric name of class ``label``'s AP, e.g. ``Waymo2D/AP@.70IOU/vehicle``."""
    return AP_KEY.format(iou=iou_tag(IOU_THRESHOLDS[label]), name=LABEL_MAP[label])


METRIC_NAMES: tuple[str, ...] = (MAP_KEY, *(ap_key(label) for label in LABEL_MAP))


class MatchCounts(NamedTuple):
    """TP and FP of one class at each score cutoff, and its number of ground-truth boxes."""

    score_cutoffs: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    num_ground_truth: int


# --------------------------------------------------------------------------- matching


def _boxes(boxes: Any) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    return np.zeros((0, 4)) if arr.size == 0 else np.clip(arr.reshape(-1, 4), 0.0, 1.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(N, M)`` of axis-aligned ``[ymin, xmin, ymax, xmax]`` boxes (0 where the union is empty)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    h = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    w = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = h * w
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_score_first(iou: np.ndarray, threshold: float) -> np.ndarray:
    """Waymo's score-first matching of one frame and class.

    ``iou`` is ``(detections, ground truth)`` with detections already in descending
    score order. Each detection in turn takes the unmatched ground truth of largest
    IoU with ``IoU >= threshold``. Returns the matched ground-truth index per
    detection, -1 for a false positive.
    """
    matches = np.full(iou.shape[0], -1, dtype=np.int64)
    if iou.size == 0:
        return matches
    candidates = np.where(iou >= threshold, iou, -1.0)
    for d in np.flatnonzero((candidates >= 0).any(axis=1)):  # in score order; others can not match
        g = int(np.argmax(candidates[d]))
        if candidates[d, g] >= 0:
            matches[d] = g
            candidates[:, g] = -1.0
    return matches


def _class_boxes(frame: Mapping[str, Any], label: int, with_scores: bool) -> tuple[np.ndarray, np.ndarray]:
    boxes = _boxes(frame.get("boxes", []))
    labels = np.asarray(frame.get("labels", []), dtype=np.int64).reshape(-1)
    if len(labels) != len(boxes):
        raise ValueError(f"frame {frame.get('source_id', frame.get('image_id'))}: "
                         f"{len(boxes)} boxes but {len(labels)} labels")
    keep = labels == label
    if not with_scores:  # ground truth: boxes with no area are left out (as in the COCO ground truth)
        keep &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return boxes[keep], np.ones(int(keep.sum()), np.float32)
    scores = np.asarray(frame.get("scores", np.ones(len(boxes))), dtype=np.float32).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"image_id {frame.get('image_id')}: {len(boxes)} boxes but {len(scores)} scores")
    return boxes[keep], scores[keep]


def _paired_frames(gt_frames: Sequence[Mapping[str, Any]],
                   det_frames: Iterable[Mapping[str, Any]]) -> list[tuple[Mapping, list[Mapping]]]:
    """Each ground-truth frame with the detection records of its ``image_id``."""
    dets: dict[int, list[Mapping]] = {int(g["image_id"]): [] for g in gt_frames}
    if len(dets) != len(gt_frames):
        raise ValueError("duplicate image_id in ground-truth frames")
    unknown = 0
    for rec in det_frames:
        image_id = int(rec["image_id"])
        if image_id in dets:
            dets[image_id].append(rec)
        else:
            unknown += 1
    if unknown:
        log.warning("Waymo AP: skipping %d detection records whose image_id is not in the ground truth", unknown)
    return [(g, dets[int(g["image_id"])]) for g in gt_frames]


def _frame_matches(gt: Mapping, dets: Sequence[Mapping], label: int, iou_threshold: float):
    """Scores of the frame's detections of ``label`` and whether each is a true positive."""
    gt_boxes, _ = _class_boxes(gt, label, with_scores=False)
    parts = [_class_boxes(d, label, with_scores=True) for d in dets]
    boxes = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 4))
    scores = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float32)
    order = np.argsort(-scores, kind="stable")
    matched = match_score_first(box_iou(boxes[order], gt_boxes), iou_threshold) >= 0
    return scores[order], matched, len(gt_boxes)


def count_matches(
    gt_frames: Sequence[Mapping[str, Any]],
    det_frames: Iterable[Mapping[str, Any]],
    label: int,
    iou_threshold: float | None = None,
    score_cutoffs: Sequence[float] | None = WAYMO_SCORE_CUTOFFS,
) -> MatchCounts:
    """TP and FP of class ``label`` at every score cutoff, summed over frames.

    Score-first matching of the detections kept by a cutoff equals the full matching
    restricted to them (a detection's match depends only on higher-scored ones), so
    each frame is matched once. ``iou_threshold`` defaults to Waymo's for the class;
    ``score_cutoffs=None`` uses every distinct score of the class's detections.
    """
    threshold = IOU_THRESHOLDS[label] if iou_threshold is None else float(iou_threshold)
    all_scores, all_tp, num_gt = [], [], 0
    for gt, dets in _paired_frames(gt_frames, det_frames):
        scores, tp, n = _frame_matches(gt, dets, label, threshold)
        all_scores.append(scores)
        all_tp.append(tp)
        num_gt += n
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0, np.float32)
    tp = np.concatenate(all_tp) if all_tp else np.zeros(0, bool)
    cutoffs = np.unique(scores) if score_cutoffs is None else np.asarray(score_cutoffs, np.float32).reshape(-1)
    order = np.argsort(scores, kind="stable")
    scores, tp = scores[order], tp[order]
    tp_from = np.concatenate([np.cumsum(tp[::-1])[::-1], [0]])  # TPs among scores[i:]
    first = np.searchsorted(scores, cutoffs, side="left")  # first kept index per cutoff (score >= cutoff)
    kept = len(scores) - first
    tps = tp_from[first].astype(np.int64)
    return MatchCounts(cutoffs, tps, (kept - tps).astype(np.int64), int(num_gt))


# --------------------------------------------------------------------------- AP


def precision_recall(counts: MatchCounts) -> tuple[np.ndarray, np.ndarray]:
    """Waymo's precision and recall per cutoff: precision 0 when nothing is kept, 1 where recall is 0."""
    tp = counts.true_positives.astype(np.float64)
    kept = tp + counts.false_positives
    precision = np.divide(tp, kept, out=np.zeros_like(tp), where=kept > 0)
    recall = tp / counts.num_ground_truth if counts.num_ground_truth > 0 else np.zeros_like(tp)
    precision[recall == 0] = 1.0
    return precision, recall


def average_precision(precisions: Sequence[float], recalls: Sequence[float],
                      recall_delta: float = RECALL_DELTA) -> float:
    """Area under Waymo's interpolated precision-recall curve (``ComputeMeanAveragePrecision``).

    See the module docstring. Returns 0 when no point has recall above 0.
    """
    if not 0.0 < recall_delta <= 1.0:
        raise ValueError(f"recall_delta must be in (0, 1], got {recall_delta}")
    best: dict[float, float] = {0.0: 1.0}
    for p, r in zip(np.asarray(precisions, np.float64), np.asarray(recalls, np.float64)):
        best[float(r)] = max(best.get(float(r), 0.0), float(p))
    if len(best) < 2:
        return 0.0
    points: list[list[float]] = []  # [recall, precision], from high recall to low
    running, last = 0.0, None
    for r in sorted(best, reverse=True):
        while last is not None and last - r > recall_delta + 1e-6:
            last -= recall_delta
            points.append([last, running])
        running = max(running, best[r])
        points.append([r, running])
        last = r
    points[-1][1] = points[-2][1]  # recall 0 takes its neighbour's precision, not the added 1.0
    pts = np.asarray(points)
    return float(np.sum(0.5 * (pts[:-1, 0] - pts[1:, 0]) * (pts[:-1, 1] + pts[1:, 1])))


def class_average_precision(counts: MatchCounts, recall_delta: float = RECALL_DELTA) -> float:
    """AP of one class from its counts; NaN when the class has no ground truth."""
    if counts.num_ground_truth == 0:
        return math.nan
    return average_precision(*precision_recall(counts), recall_delta=recall_delta)


def waymo_metrics(
    gt_frames: Sequence[Mapping[str, Any]],
    det_frames: Iterable[Mapping[str, Any]],
    score_cutoffs: Sequence[float] | None = WAYMO_SCORE_CUTOFFS,
    recall_delta: float = RECALL_DELTA,
) -> dict[str, float]:
    """Waymo-style AP per class and their mean, under :data:`METRIC_NAMES`.

    ``Waymo2D/AP@.70IOU/vehicle``, ``Waymo2D/AP@.50IOU/pedestrian``,
    ``Waymo2D/AP@.50IOU/cyclist`` and ``Waymo2D/mAP`` (mean over the classes with
    ground truth; NaN when none has any). MLflow logs them as
    ``Waymo2D/AP_at_.70IOU/vehicle`` etc. (:func:`urban_detection.tracking.mlflow_key`).
    """
    det_frames = list(det_frames)
    per_class = {
        ap_key(label): class_average_precision(count_matches(gt_frames, det_frames, label, None, score_cutoffs),
                                               recall_delta)
        for label in LABEL_MAP
    }
    defined = [v for v in per_class.values() if not math.isnan(v)]
    return {MAP_KEY: float(np.mean(defined)) if defined else math.nan, **per_class}
