"""Waymo's precision, recall and AP (``ComputeMeanAveragePrecision``) of many rows of counts at once.

A row is one class's TP and FP at each score cutoff and its ground-truth boxes: summed over the
frames of a split (:mod:`.waymo_ap`) or re-weighted by a bootstrap draw of its trips (:mod:`.bootstrap`,
a thousand rows in one call). :mod:`.waymo_ap`'s module docstring describes the curve.
"""
from __future__ import annotations

import numpy as np

RECALL_DELTA = 0.05  # Config.desired_recall_delta default


def precision_recall_rows(true_positives: np.ndarray, false_positives: np.ndarray, num_ground_truth: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Waymo's precision and recall of each row of ``(B, C)`` TP and FP counts (one per score cutoff) with
    ``(B,)`` ground-truth boxes: precision 0 when nothing is kept, 1 where recall is 0."""
    tp = np.asarray(true_positives, np.float64)
    kept = tp + np.asarray(false_positives, np.float64)
    precision = np.divide(tp, kept, out=np.zeros_like(tp), where=kept > 0)
    gt = np.asarray(num_ground_truth, np.float64)[:, None]
    recall = np.divide(tp, gt, out=np.zeros_like(tp), where=gt > 0)
    precision[recall == 0] = 1.0
    return precision, recall


def average_precisions(precisions: np.ndarray, recalls: np.ndarray, recall_delta: float = RECALL_DELTA) -> np.ndarray:
    """The area under Waymo's interpolated precision-recall curve (``ComputeMeanAveragePrecision``) of each
    row of ``(B, C)`` precisions and recalls, all rows at once: ``(B,)``, 0 for a row without recall above 0.

    Each row's points, with ``(recall 0, precision 1)`` added, are walked from high to low recall
    (points of equal recall are one, at their best precision) keeping the running maximum ``P`` of
    the precision. From one recall ``r`` to the next lower ``s``, Waymo inserts ``k`` points every
    ``recall_delta`` at the precision ``P(r)`` while more than ``recall_delta`` (+1e-6) remains, then
    the point ``(s, P(s))``: the trapezoids add up to ``P(r) k d + (r - k d - s) (P(r) + P(s)) / 2``.
    The last point (recall 0) takes its neighbour's precision ``P(r)``."""
    if not 0.0 < recall_delta <= 1.0:
        raise ValueError(f"recall_delta must be in (0, 1], got {recall_delta}")
    rows = np.asarray(recalls, np.float64).shape[0]
    recall = np.concatenate([np.asarray(recalls, np.float64), np.zeros((rows, 1))], axis=1)
    precision = np.concatenate([np.asarray(precisions, np.float64), np.ones((rows, 1))], axis=1)
    order = np.argsort(-recall, axis=1, kind="stable")
    recall = np.take_along_axis(recall, order, axis=1)
    running = np.maximum.accumulate(np.take_along_axis(precision, order, axis=1), axis=1)
    last = np.ones(recall.shape, dtype=bool)  # the last of each run of equal recall: one point, best precision
    last[:, :-1] = recall[:, 1:] != recall[:, :-1]
    row, col = np.nonzero(last)  # every row's points, high to low recall; recall 0 is each row's last
    r, best = recall[row, col], running[row, col]
    hi = np.flatnonzero(row[:-1] == row[1:])  # consecutive points of one row: from hi to hi + 1
    lo = hi + 1
    final = np.append(row[1:] != row[:-1], True)[lo]  # the segment ending at recall 0
    gap = r[hi] - r[lo]
    k = np.maximum(0.0, np.ceil((gap - recall_delta - 1e-6) / recall_delta))
    p_lo = np.where(final, best[hi], best[lo])
    area = best[hi] * k * recall_delta + 0.5 * (gap - k * recall_delta) * (best[hi] + p_lo)
    return np.bincount(row[hi], weights=area, minlength=rows)


def aps_from_totals(true_positives: np.ndarray, false_positives: np.ndarray, num_ground_truth: np.ndarray,
                    recall_delta: float = RECALL_DELTA) -> np.ndarray:
    """The AP of each row of ``(B, C)`` TP and FP counts with ``(B,)`` ground-truth boxes (e.g. one row per
    bootstrap draw), all rows at once: ``(B,)``, NaN where a row has no ground truth."""
    gt = np.asarray(num_ground_truth, np.float64)
    ap = average_precisions(*precision_recall_rows(true_positives, false_positives, gt), recall_delta)
    return np.where(gt > 0, ap, np.nan)
