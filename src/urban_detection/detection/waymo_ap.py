"""Waymo-style 2D detection AP: vehicle at IoU 0.7, pedestrian and cyclist at IoU 0.5.

COCO's AP@[.5:.95] does not line up with the Waymo Open Dataset leaderboards, which
rank detectors by one AP per class at a class-specific IoU threshold. This module
computes those numbers from the per-frame records :func:`.predict.predict_split`
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
* **Matching** (``matcher``), in each frame and class, of the detections kept by a
  cutoff to the ground truth; a pair with ``IoU < threshold`` is never a match and a
  ground truth is matched at most once (a duplicate is a false positive):

  - ``"hungarian"`` (the default, as Waymo's ``Config.matcher_type`` default
    ``TYPE_HUNGARIAN``, :func:`match_hungarian`): the one-to-one assignment of largest
    total IoU over the pairs with ``IoU >= threshold``. As ``matcher.cc`` does, the
    IoU of a pair is quantised to ``round(IoU * 10**6)`` before summing; where two
    assignments tie on that total, the one with more matches is taken (Waymo's own
    Kuhn-Munkres leaves the choice to its search order). Scores play no part within
    a cutoff, so the matching can change from one cutoff to the next: each frame is
    matched again at each of its own distinct scores of the class (the cutoffs that
    change its kept set), and every cutoff takes the matching of the lowest of
    those scores it keeps. Only the connected groups of detections and ground truth
    linked by pairs above the threshold that have two or more of each need a solve.
  - ``"score_first"`` (Waymo's ``TYPE_SCORE_FIRST``, COCO-style greedy,
    :func:`match_score_first`; ``evaluate.waymo_matcher: score_first``): detections
    in descending score order (ties: record order) take the not yet matched ground
    truth of largest IoU among those with ``IoU >= threshold``. The matching of the
    detections kept by a cutoff is the full matching restricted to them, so each
    frame is matched once.

  The two differ only where a detection overlaps several ground-truth boxes above
  the threshold: there score-first may spend a high-scoring detection on a box a
  lower-scoring one needed, which the Hungarian assignment avoids (more TPs).
  IoU is of axis-aligned boxes (Waymo's ``TYPE_AA_2D``), computed in float64 and
  compared with the threshold as ``IoU >= threshold``; it is the same in normalised
  and pixel units.
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

Per frame: :func:`frame_counts` gives each frame's TP and FP at every cutoff and its
number of ground-truth boxes (for a bootstrap over frames or trips);
:func:`count_matches` is their sum over frames, and :func:`ap_from_totals` turns any
(re-weighted) sums back into an AP.

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
from scipy.optimize import linear_sum_assignment

from urban_detection.detection.waymo_pr import RECALL_DELTA, aps_from_totals, average_precisions, precision_recall_rows
from urban_detection.waymo.example import LABEL_MAP

log = logging.getLogger(__name__)

# Waymo's Label.Type ids are our label-map ids; its IoU thresholds per type.
IOU_THRESHOLDS: dict[int, float] = {1: 0.7, 2: 0.5, 4: 0.5}
if set(IOU_THRESHOLDS) != set(LABEL_MAP):
    raise RuntimeError(f"Waymo IoU thresholds {sorted(IOU_THRESHOLDS)} do not cover the label map {sorted(LABEL_MAP)}")
# Score cutoffs of Waymo's compute_detection_metrics_main: i * 0.01 for i < 100, then 1.0 (float32 as in its proto).
WAYMO_SCORE_CUTOFFS: np.ndarray = np.append(np.arange(100) * 0.01, 1.0).astype(np.float32)
MATCHERS: tuple[str, ...] = ("hungarian", "score_first")  # Waymo's TYPE_HUNGARIAN (its default), TYPE_SCORE_FIRST
DEFAULT_MATCHER = "hungarian"
MAX_IOU = 1_000_000  # matcher.cc's kMaxIoU: the Hungarian matcher sums round(IoU * kMaxIoU)

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


class FrameCounts(NamedTuple):
    """TP and FP of one class per frame (rows in ground-truth frame order) and score cutoff.

    ``score_cutoffs`` ``(C,)``; ``true_positives`` and ``false_positives`` ``(F, C)``
    int64; ``num_ground_truth`` ``(F,)`` int64. Summed over frames they are
    :func:`count_matches`.
    """

    score_cutoffs: np.ndarray
    true_positives: np.ndarray   # (frames, cutoffs)
    false_positives: np.ndarray  # (frames, cutoffs)
    num_ground_truth: np.ndarray  # (frames,)


def _check_matcher(matcher: str) -> None:
    if matcher not in MATCHERS:
        raise ValueError(f"unknown Waymo AP matcher {matcher!r}; use one of {', '.join(MATCHERS)}")


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


def quantised_iou(iou: np.ndarray) -> np.ndarray:
    """``matcher.cc``'s ``QuantizedIoU``: ``std::round(float(IoU) * kMaxIoU)`` (float32 product), as float64."""
    return np.floor(np.asarray(iou, np.float32) * np.float32(MAX_IOU) + 0.5).astype(np.float64)


def _assignment_weights(iou: np.ndarray, threshold: float, max_matches: int) -> np.ndarray:
    """Edge weights whose maximum-weight assignment is the Hungarian matcher's.

    A pair below the threshold weighs 0 (and is dropped after the solve), a pair at or
    above it ``quantised IoU * (max_matches + 1) + 1``: the assignment maximises the
    total quantised IoU first and, among ties, the number of matches (at most
    ``max_matches``, so the +1s never outweigh one quantum of IoU). All integers far
    below 2**53, so the float64 sums are exact.
    """
    return np.where(iou >= threshold, quantised_iou(iou) * (max_matches + 1) + 1.0, 0.0)


def _solve(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-weight one-to-one assignment: its (row, column) pairs of positive weight only."""
    rows, cols = linear_sum_assignment(weights, maximize=True)
    keep = weights[rows, cols] > 0
    return rows[keep], cols[keep]


def match_hungarian(iou: np.ndarray, threshold: float) -> np.ndarray:
    """Waymo's Hungarian matching (``TYPE_HUNGARIAN``) of one frame, class and set of kept detections.

    ``iou`` is ``(detections, ground truth)``; scores play no part. Among the
    one-to-one assignments of pairs with ``IoU >= threshold`` it takes one of largest
    total quantised IoU (``round(IoU * 10**6)``, as ``matcher.cc``) and, among those,
    one with the most pairs. A pair below the threshold is never a match, even where
    the full assignment has to pair it. Returns the matched ground-truth index per
    detection, -1 for a false positive.
    """
    iou = np.asarray(iou, np.float64)
    matches = np.full(iou.shape[0], -1, dtype=np.int64)
    if iou.size == 0:
        return matches
    rows, cols = _solve(_assignment_weights(iou, threshold, min(iou.shape)))
    matches[rows] = cols
    return matches


def _hungarian_gains(iou: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Per detection (descending score order): by how much the frame's Hungarian TP count grows when
    it joins the kept set.

    The TP count of the detections with ``score >= c`` is the sum of their gains
    (within a run of equal scores only the run's total is meaningful: a cutoff keeps
    all or none of it). A detection with no pair above the threshold never matches;
    the others fall into connected groups (detections and ground truth linked by such
    pairs), matched independently. A group with one detection or one ground truth has
    one match from its first kept detection on; a larger group is solved again at each
    of its distinct scores, until all its ground truth is matched (the number of pairs
    never drops when a detection is added: the old and new optimum differ by one
    alternating path starting at it).
    """
    gains = np.zeros(len(scores), dtype=np.int64)
    valid = iou >= threshold
    rows = np.flatnonzero(valid.any(axis=1))
    if rows.size == 0:
        return gains
    cols = np.flatnonzero(valid.any(axis=0))
    sub = valid[np.ix_(rows, cols)]
    if (sub.sum(axis=1) == 1).all() and (sub.sum(axis=0) == 1).all():  # nothing contested: every valid pair matches
        gains[rows] = 1
        return gains
    n_rows = len(rows)
    parent = list(range(n_rows + len(cols)))  # union-find over detections 0.. and ground truth n_rows..

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for r, c in zip(*np.nonzero(sub)):
        a, b = find(int(r)), find(n_rows + int(c))
        if a != b:
            parent[b] = a
    groups: dict[int, tuple[list[int], list[int]]] = {}
    for i in range(n_rows):  # ascending, so each group's detections are in score order
        groups.setdefault(find(i), ([], []))[0].append(i)
    for j in range(len(cols)):
        groups[find(n_rows + j)][1].append(j)
    weights = _assignment_weights(iou[np.ix_(rows, cols)], threshold, len(cols))
    for g_rows, g_cols in groups.values():
        if len(g_rows) == 1 or len(g_cols) == 1:
            gains[rows[g_rows[0]]] += 1
            continue
        g_scores = scores[rows[g_rows]]
        g_weights = weights[np.ix_(g_rows, g_cols)]
        matched = 0
        for k in range(1, len(g_rows) + 1):
            if k < len(g_rows) and g_scores[k] == g_scores[k - 1]:
                continue  # not a cutoff boundary
            now = len(_solve(g_weights[:k])[0])
            gains[rows[g_rows[k - 1]]] += now - matched
            matched = now
            if matched == len(g_cols):
                break
    return gains


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


def _frame_gains(gt: Mapping, dets: Sequence[Mapping], label: int, threshold: float,
                 matcher: str) -> tuple[np.ndarray, np.ndarray, int]:
    """One frame and class: its detection scores in descending order, each detection's TP gain (the
    TP count of the detections with ``score >= c`` is the sum of their gains; score-first: 1 for a
    TP of the full matching, else 0) and its number of ground-truth boxes."""
    gt_boxes, _ = _class_boxes(gt, label, with_scores=False)
    parts = [_class_boxes(d, label, with_scores=True) for d in dets]
    boxes = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 4))
    scores = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float32)
    order = np.argsort(-scores, kind="stable")
    scores = scores[order]
    if not len(scores) or not len(gt_boxes):
        return scores, np.zeros(len(scores), np.int64), len(gt_boxes)
    iou = box_iou(boxes[order], gt_boxes)
    if matcher == "score_first":  # the matching of a kept prefix is the full matching restricted to it
        return scores, (match_score_first(iou, threshold) >= 0).astype(np.int64), len(gt_boxes)
    return scores, _hungarian_gains(iou, scores, threshold), len(gt_boxes)


def _all_frame_gains(gt_frames, det_frames, label: int, iou_threshold: float | None, matcher: str):
    _check_matcher(matcher)
    threshold = IOU_THRESHOLDS[label] if iou_threshold is None else float(iou_threshold)
    return [_frame_gains(gt, dets, label, threshold, matcher) for gt, dets in _paired_frames(gt_frames, det_frames)]


def _cutoffs(score_cutoffs: Sequence[float] | None, scores: list[np.ndarray]) -> np.ndarray:
    if score_cutoffs is None:  # every distinct score
        return np.unique(np.concatenate(scores)) if scores else np.zeros(0, np.float32)
    return np.asarray(score_cutoffs, np.float32).reshape(-1)


def frame_counts(
    gt_frames: Sequence[Mapping[str, Any]],
    det_frames: Iterable[Mapping[str, Any]],
    label: int,
    iou_threshold: float | None = None,
    score_cutoffs: Sequence[float] | None = WAYMO_SCORE_CUTOFFS,
    matcher: str = DEFAULT_MATCHER,
) -> FrameCounts:
    """TP and FP of class ``label`` at every score cutoff, per frame (rows in the order of ``gt_frames``).

    At a cutoff ``c`` a frame keeps its detections with ``score >= c`` (float32).
    ``matcher``: ``hungarian`` (Waymo's default; matched again at each of the frame's
    own distinct scores) or ``score_first``. ``iou_threshold`` defaults to Waymo's for
    the class; ``score_cutoffs=None`` uses every distinct score of the class's
    detections (the arrays are then frames x distinct scores: large on a large split).
    :func:`count_matches` is the sum over frames; a trip bootstrap re-weights the rows
    (:mod:`.bootstrap`).
    """
    per_frame = _all_frame_gains(gt_frames, det_frames, label, iou_threshold, matcher)
    cutoffs = _cutoffs(score_cutoffs, [scores for scores, _, _ in per_frame])
    tp = np.zeros((len(per_frame), len(cutoffs)), np.int64)
    kept = np.zeros_like(tp)
    for i, (scores, gains, _) in enumerate(per_frame):
        if len(scores):
            kept[i] = len(scores) - np.searchsorted(scores[::-1], cutoffs, side="left")  # detections >= cutoff
            tp[i] = np.concatenate([[0], np.cumsum(gains)])[kept[i]]
    num_gt = np.array([n for _, _, n in per_frame], dtype=np.int64)
    return FrameCounts(cutoffs, tp, kept - tp, num_gt)


def count_matches(
    gt_frames: Sequence[Mapping[str, Any]],
    det_frames: Iterable[Mapping[str, Any]],
    label: int,
    iou_threshold: float | None = None,
    score_cutoffs: Sequence[float] | None = WAYMO_SCORE_CUTOFFS,
    matcher: str = DEFAULT_MATCHER,
) -> MatchCounts:
    """TP and FP of class ``label`` at every score cutoff, summed over frames.

    The sum over the rows of :func:`frame_counts` (same arguments), computed without
    its frames x cutoffs arrays (which ``score_cutoffs=None`` would make large).
    """
    per_frame = _all_frame_gains(gt_frames, det_frames, label, iou_threshold, matcher)
    scores = np.concatenate([p[0] for p in per_frame]) if per_frame else np.zeros(0, np.float32)
    gains = np.concatenate([p[1] for p in per_frame]) if per_frame else np.zeros(0, np.int64)
    cutoffs = _cutoffs(score_cutoffs, [scores])
    order = np.argsort(scores, kind="stable")
    scores, gains = scores[order], gains[order]
    tp_from = np.concatenate([np.cumsum(gains[::-1])[::-1], [0]])  # TPs of the detections scores[i:]
    first = np.searchsorted(scores, cutoffs, side="left")  # first kept index per cutoff (score >= cutoff)
    kept = len(scores) - first
    tps = tp_from[first].astype(np.int64)
    return MatchCounts(cutoffs, tps, (kept - tps).astype(np.int64), int(sum(n for _, _, n in per_frame)))


# --------------------------------------------------------------------------- AP


def precision_recall(counts: MatchCounts) -> tuple[np.ndarray, np.ndarray]:
    """Waymo's precision and recall per cutoff: precision 0 when nothing is kept, 1 where recall is 0."""
    precision, recall = precision_recall_rows(counts.true_positives[None], counts.false_positives[None],
                                              np.array([counts.num_ground_truth], np.float64))
    return precision[0], recall[0]


def average_precision(precisions: Sequence[float], recalls: Sequence[float],
                      recall_delta: float = RECALL_DELTA) -> float:
    """Area under Waymo's interpolated precision-recall curve (``ComputeMeanAveragePrecision``).

    See the module docstring. Returns 0 when no point has recall above 0.
    """
    return float(average_precisions(np.asarray(precisions, np.float64).reshape(1, -1),
                                    np.asarray(recalls, np.float64).reshape(1, -1), recall_delta)[0])


def class_average_precision(counts: MatchCounts, recall_delta: float = RECALL_DELTA) -> float:
    """AP of one class from its counts; NaN when the class has no ground truth."""
    if counts.num_ground_truth <= 0:
        return math.nan
    return average_precision(*precision_recall(counts), recall_delta=recall_delta)


def ap_from_totals(true_positives: Sequence[float], false_positives: Sequence[float], num_ground_truth: float,
                   recall_delta: float = RECALL_DELTA) -> float:
    """AP of one class from its TP and FP at each score cutoff ``(C,)`` and its number of ground-truth
    boxes: sums over frames, possibly re-weighted (floats are fine). NaN when ``num_ground_truth`` is 0."""
    return float(aps_from_totals(np.asarray(true_positives, np.float64)[None],
                                 np.asarray(false_positives, np.float64)[None],
                                 np.array([num_ground_truth], np.float64), recall_delta)[0])


def waymo_metrics(
    gt_frames: Sequence[Mapping[str, Any]],
    det_frames: Iterable[Mapping[str, Any]],
    score_cutoffs: Sequence[float] | None = WAYMO_SCORE_CUTOFFS,
    recall_delta: float = RECALL_DELTA,
    matcher: str = DEFAULT_MATCHER,
) -> dict[str, float]:
    """Waymo-style AP per class and their mean, under :data:`METRIC_NAMES`.

    ``Waymo2D/AP@.70IOU/vehicle``, ``Waymo2D/AP@.50IOU/pedestrian``,
    ``Waymo2D/AP@.50IOU/cyclist`` and ``Waymo2D/mAP`` (mean over the classes with
    ground truth; NaN when none has any), matched by ``matcher`` (``hungarian``, Waymo's default, or
    ``score_first``). MLflow logs them as
    ``Waymo2D/AP_at_.70IOU/vehicle`` etc. (:func:`urban_detection.tracking.mlflow_key`).
    The dict does not record the matcher.
    """
    _check_matcher(matcher)
    det_frames = list(det_frames)
    per_class = {
        ap_key(label): class_average_precision(
            count_matches(gt_frames, det_frames, label, None, score_cutoffs, matcher), recall_delta)
        for label in LABEL_MAP
    }
    defined = [v for v in per_class.values() if not math.isnan(v)]
    return {MAP_KEY: float(np.mean(defined)) if defined else math.nan, **per_class}
