"""Trip bootstrap of the COCO metrics: every draw recomputed exactly, cheaply.

Frames of one trip are near-duplicates, so the unit of independence is the trip: a draw
resamples a split's trips with replacement (a trip drawn twice counts twice) and the
metrics are those pycocotools would give on the drawn frames. They are not averages of
per-trip APs: COCO pools every detection of the split before ranking by score.

The cheap exact way: COCO's evaluation (:mod:`.coco_match`, as pycocotools' ``evaluate()``) matches each
image once per class, area range and IoU threshold, and ``accumulate()`` only concatenates those
matches, sorts them by score and counts. A draw changes how often each trip's matches
count, never the matches, so each draw is a weighted count over one global ranking:
the trip's multiplicity is the weight of each of its detections and ground-truth boxes.
The weighted cumulative counts at the true positives are the same numbers pycocotools
computes on the repeated frames (repeated detections are adjacent in its ranking and
only lower the precision it then takes the upper envelope of), so the metrics agree with
pycocotools on the repeated frames to rounding (tested). One caveat: detections of one
frame with exactly the same score are ranked by record order in pycocotools, so a repeated
frame's tied boxes interleave there; the bootstrap keeps a box's copies together. Scores of
a real detector practically never tie within a frame.

:func:`trip_draws` makes the draws; :func:`coco_draw_metrics` gives every draw's COCO
numbers (maxDets 100): mAP, AP50, AP75, AR@100 and per-class AP and AP50, over all
objects and per COCO size (``... (small)``; COCO's own size metrics are among them). :mod:`.intervals` turns draws into intervals and paired differences.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from urban_detection.detection.coco import PER_CLASS_AP, PER_CLASS_AP50, SUMMARY_METRICS

_EPS = np.spacing(1)  # pycocotools' guard in precision = tp / (tp + fp + eps)
MAP, AP50, AP75, AR100 = SUMMARY_METRICS[0], SUMMARY_METRICS[1], SUMMARY_METRICS[2], SUMMARY_METRICS[8]
SIZES = ("small", "medium", "large")  # COCO's area ranges (< 32², < 96², larger, in image pixels)
COCO_DRAW_METRICS: tuple[str, ...] = (*SUMMARY_METRICS[:6], *SUMMARY_METRICS[8:])


def sized(metric: str, size: str) -> str:
    """The name of ``metric`` on objects of one COCO size: ``DetectionBoxes_Precision/mAP (small)``, as
    COCO's own size metrics are named (``all``: the metric itself)."""
    return metric if size == "all" else f"{metric} ({size})"


def trip_draws(n_trips: int, draws: int, seed: int) -> np.ndarray:
    """``(draws, n_trips)`` multiplicities: each row draws ``n_trips`` trips with replacement."""
    if n_trips < 1 or draws < 1:
        raise ValueError(f"a bootstrap needs at least one trip and one draw (got {n_trips} trips, {draws} draws)")
    picks = np.random.default_rng(seed).integers(0, n_trips, size=(draws, n_trips))
    counts = np.zeros((draws, n_trips), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(draws), n_trips), picks.ravel()), 1)
    return counts


class TripCounts(NamedTuple):
    """One class, area range and IoU threshold of a split, ranked as ``accumulate()`` ranks detections: the trip
    of each true positive (in rank order) and, per trip, the false positives ranked between the previous true
    positive and this one (sparse: memory follows the detections, never trips x true positives). A draw's
    cumulative counts at each true positive are these weighted by the trips' multiplicities and summed."""

    trips: np.ndarray          # (P,) trip index of each true positive
    false_positives: Any       # (P, n_trips) scipy.sparse CSR: false positives of each trip just before it


class RankedMatches(NamedTuple):
    """One class and area range: :class:`TripCounts` per IoU threshold and the ground truth per trip."""

    per_threshold: list[TripCounts]
    ground_truth: np.ndarray  # (n_trips,) not-ignored ground-truth boxes per trip


def _trip_counts(trip: np.ndarray, true_positive: np.ndarray, false_positive: np.ndarray, n_trips: int) -> TripCounts:
    from scipy import sparse

    at = np.flatnonzero(true_positive)  # pycocotools' precision envelope peaks only at true positives
    fp_at = np.flatnonzero(false_positive)
    gap = np.searchsorted(at, fp_at)  # the true positive each false positive comes before (P: after the last)
    before = gap < at.size  # false positives after the last true positive never count at one
    counts = sparse.csr_matrix((np.ones(int(before.sum())), (gap[before], trip[fp_at[before]])),
                               shape=(at.size, n_trips))  # duplicates are summed
    counts.sum_duplicates()
    return TripCounts(trip[at].astype(np.int64), counts)


def ranked_matches(ev: Any, trip_of_image: Mapping[int, int], n_trips: int) -> dict[tuple[int, str], RankedMatches]:
    """Per ``(category id, area label)``: the matches of an evaluated split (:class:`~.coco_match.CocoEvaluation`),
    ranked by descending score, ties in image order (stable, as pycocotools), counted per trip.
    ``trip_of_image`` maps every image id to a trip index."""
    from urban_detection.detection.coco_match import FALSE_POSITIVE, TRUE_POSITIVE

    p = ev.params
    trip_of_position = np.array([trip_of_image[int(img)] for img in p.imgIds], dtype=np.int64)
    out = {}
    for cat in p.catIds:
        m = ev.matches[int(cat)]
        order = np.argsort(-m.score, kind="mergesort")  # the matches hold at most maxDets boxes an image
        trips = trip_of_position[m.image[order]]
        for a, label in enumerate(p.areaRngLbl):
            gt = np.bincount(trip_of_position, weights=m.ground_truth[:, a], minlength=n_trips).astype(np.int64)
            status = m.status[order, a, :]
            per_t = [_trip_counts(trips, status[:, t] == TRUE_POSITIVE, status[:, t] == FALSE_POSITIVE, n_trips)
                     for t in range(len(p.iouThrs))]
            out[(int(cat), label)] = RankedMatches(per_t, gt)
    return out


def only_trips(ranked: Mapping[tuple[int, str], RankedMatches], trips: Sequence[int]
               ) -> dict[tuple[int, str], RankedMatches]:
    """:func:`ranked_matches` of the given trip indices alone (renumbered in that order), for draws that weight
    no other trip (a slice): only these trips' true positives are kept, and the false positives between two of
    them are summed. Every draw's metrics are exactly those of the whole split's matches with the other trips
    weighted 0 (between two kept ranks, the others only add false positives, which never raises the precision
    envelope), at a cost that follows the slice's size, not the split's."""
    from scipy import sparse

    rows = np.asarray(trips, dtype=np.int64)
    new_index = np.full(max([len(m.ground_truth) for m in ranked.values()] or [0]), -1, dtype=np.int64)
    new_index[rows] = np.arange(rows.size)
    out = {}
    for key, m in ranked.items():
        per_t = []
        for c in m.per_threshold:
            kept = np.flatnonzero(new_index[c.trips] >= 0)
            group = np.searchsorted(kept, np.arange(c.trips.size))  # each rank's gaps go to the next kept one
            inside = group < kept.size
            merge = sparse.csr_matrix((np.ones(int(inside.sum())), (group[inside], np.flatnonzero(inside))),
                                      shape=(kept.size, c.trips.size))
            per_t.append(TripCounts(new_index[c.trips[kept]], (merge @ c.false_positives[:, rows]).tocsr()))
        out[key] = RankedMatches(per_t, m.ground_truth[rows])
    return out


def _first_reaching(tp: np.ndarray, npig: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
    """Per row of ``tp`` ``(B, P)`` (cumulative true positives, non-decreasing integers) and recall threshold:
    the first position whose recall ``tp / npig`` is at least the threshold (``P`` if none), exactly as
    pycocotools' ``searchsorted(recall, thresholds, side="left")``, for all rows at once: recall >= thr is
    ``tp >= m`` for the least integer ``m`` with ``m / npig >= thr`` (float division, as pycocotools)."""
    n_rows, n_pos = tp.shape
    n = np.maximum(npig, 1).astype(np.float64)[:, None]
    m = np.ceil(rec_thrs[None, :] * n)
    m = np.where((m - 1) / n >= rec_thrs, m - 1, m)  # rounding of thr * n, both ways
    m = np.where(m / n < rec_thrs, m + 1, m)
    most = tp[:, -1].max(initial=0) if n_pos else 0.0  # rows are non-decreasing: their last values are their largest
    big = float(most + m.max(initial=0) + 1)  # rows stacked apart, still exact integers
    offsets = np.arange(n_rows, dtype=np.float64)[:, None] * big
    flat = np.add(tp, offsets, out=np.empty((n_rows, n_pos))).ravel()  # row after row, whatever tp's layout
    return np.searchsorted(flat, (m + offsets).ravel(), side="left").reshape(n_rows, -1) - np.arange(n_rows)[:, None] * n_pos


def _precision_recall(m: RankedMatches, weights: np.ndarray, rec_thrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``precision (B, T, R)`` and ``recall (B, T)`` of one class and area for each row of ``weights``
    (``(B, n_trips)`` multiplicities); -1 where the draw holds no ground truth, as pycocotools."""
    n_draws, n_t = weights.shape[0], len(m.per_threshold)
    precision = np.zeros((n_draws, n_t, len(rec_thrs)))
    recall = np.zeros((n_draws, n_t))
    npig = weights @ m.ground_truth
    w = np.ascontiguousarray(weights.T, dtype=np.float64)  # (n_trips, B): gathered by rank, (P, B) below
    rows = np.arange(n_draws)[:, None]
    for t, counts in enumerate(m.per_threshold):
        n_pos = counts.trips.size
        if n_pos == 0:
            continue
        tp = np.cumsum(w[counts.trips], axis=0)  # (P, B): exact, integers in float64
        total = np.cumsum(counts.false_positives @ w, axis=0)
        total += tp
        total += _EPS
        pr = np.divide(tp, total, out=total)  # tp / (fp + tp + eps), as pycocotools
        envelope = np.maximum.accumulate(pr[::-1], axis=0)[::-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            recall[:, t] = tp[-1] / npig
        idx = _first_reaching(tp.T, npig, rec_thrs)  # (B, R)
        precision[:, t] = np.where(idx < n_pos, envelope[np.minimum(idx, n_pos - 1), rows], 0.0)
    none = npig == 0
    precision[none], recall[none] = -1.0, -1.0
    return precision, recall


def _mean_defined(values: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    defined = values > -1
    total = np.where(defined, values, 0.0).sum(axis=axes)
    count = defined.sum(axis=axes)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def coco_draw_metrics(ev: Any, ranked: Mapping[tuple[int, str], RankedMatches], weights: np.ndarray,
                      class_names: Mapping[int, str], chunk: int = 250, cells: int = 4_000_000,
                      threads: int | None = None) -> dict[str, np.ndarray]:
    """Every draw's COCO numbers, NaN where undefined: mAP, AP50, AP75, AR@100, per-class AP and AP50,
    over all objects and per size (:func:`sized` names; ``COCO_DRAW_METRICS`` are among them).

    ``ev`` is the split's :class:`~.coco_match.CocoEvaluation` and ``ranked`` its :func:`ranked_matches`; ``weights``
    the ``(draws, n_trips)`` multiplicities (:func:`trip_draws`; a row of ones gives pycocotools' own
    numbers, zeros leave trips out); ``class_names`` maps category ids to names. Draws are processed
    ``chunk`` at a time, fewer when a class has many true positives: a draw's running counts take
    ``cells`` values at most (32 MB each array, shared by the threads), so memory stays bounded at any split
    size. Classes and sizes are counted on ``threads`` threads (default: one per core, at most 4)."""
    threads = threads or min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    p = ev.params
    most = max([c.trips.size for m in ranked.values() for c in m.per_threshold] or [1])
    chunk = max(1, min(chunk, cells // threads // max(most, 1)))  # the threads share the cells
    rec_thrs = np.asarray(p.recThrs, dtype=np.float64)
    t50 = int(np.flatnonzero(np.isclose(p.iouThrs, 0.5))[0])
    t75 = int(np.flatnonzero(np.isclose(p.iouThrs, 0.75))[0])
    cats = [int(c) for c in p.catIds]
    labels = [label for label in p.areaRngLbl if label in ("all", *SIZES)]
    out: dict[str, list[np.ndarray]] = {}
    with ThreadPoolExecutor(max(1, min(threads, len(cats) * len(labels)))) as pool:
        for start in range(0, weights.shape[0], chunk):
            w = weights[start:start + chunk]
            # numpy lets go of the GIL in these large array passes: classes and sizes run side by side
            parts = list(pool.map(lambda key: _precision_recall(ranked[key], w, rec_thrs),
                                  [(c, label) for label in labels for c in cats]))
            for i, label in enumerate(labels):
                _add_numbers(out, label, parts[i * len(cats):(i + 1) * len(cats)], cats, class_names, t50, t75)
    return {key: np.concatenate(values) for key, values in out.items()}


def _add_numbers(out: dict[str, list[np.ndarray]], label: str, parts: Sequence[tuple[np.ndarray, np.ndarray]],
                 cats: list[int], class_names: Mapping[int, str], t50: int, t75: int) -> None:
    """One area range's numbers of a chunk of draws, from each class's :func:`_precision_recall`."""
    precision = np.stack([pr for pr, _ in parts], axis=2)   # (B, T, K, R)
    recall = np.stack([rc for _, rc in parts], axis=2)      # (B, T, K)
    numbers = {MAP: _mean_defined(precision, (1, 2, 3)), AR100: _mean_defined(recall, (1, 2)),
               AP50: _mean_defined(precision[:, t50], (1, 2)), AP75: _mean_defined(precision[:, t75], (1, 2))}
    for k, cat in enumerate(cats):
        name = class_names.get(cat, str(cat))
        numbers[PER_CLASS_AP.format(name)] = _mean_defined(precision[:, :, k], (1, 2))
        numbers[PER_CLASS_AP50.format(name)] = _mean_defined(precision[:, t50, k], (1,))
    for key, value in numbers.items():
        key = sized(key, label)
        out.setdefault(key, []).append(value)


def trip_index(gt_frames: Sequence[Mapping[str, Any]], trip_of: Any) -> tuple[list[str], dict[int, int]]:
    """The split's trips (sorted names) and each frame's trip index; ``trip_of(frame) -> trip name``."""
    names = {int(f["image_id"]): str(trip_of(f)) for f in gt_frames}
    trips = sorted(set(names.values()))
    position = {t: i for i, t in enumerate(trips)}
    return trips, {img: position[t] for img, t in names.items()}


def trip_sums(per_frame: np.ndarray, frame_trip: np.ndarray, n_trips: int) -> np.ndarray:
    """Rows of ``per_frame`` (one per frame) summed per trip: ``(n_trips, ...)``."""
    out = np.zeros((n_trips, *np.shape(per_frame)[1:]), dtype=np.float64)
    np.add.at(out, frame_trip, per_frame)
    return out


class WaymoTripCounts(NamedTuple):
    """One class's Waymo-style matches summed per trip, at each score cutoff."""

    true_positives: np.ndarray   # (n_trips, cutoffs)
    false_positives: np.ndarray  # (n_trips, cutoffs)
    ground_truth: np.ndarray     # (n_trips,)


def waymo_trip_counts(gt_frames: Sequence[Mapping[str, Any]], det_frames: Sequence[Mapping[str, Any]],
                      frame_trip: np.ndarray, n_trips: int, matcher: str = "hungarian") -> dict[int, WaymoTripCounts]:
    """Per label: each frame matched once per score cutoff (:func:`~.waymo_ap.frame_counts`), summed per
    trip. ``frame_trip`` is the trip index of each ground-truth frame, in order."""
    from urban_detection.detection.waymo_ap import frame_counts
    from urban_detection.waymo.example import LABEL_MAP

    out = {}
    for label in LABEL_MAP:
        counts = frame_counts(gt_frames, det_frames, label, matcher=matcher)
        out[label] = WaymoTripCounts(trip_sums(counts.true_positives, frame_trip, n_trips),
                                     trip_sums(counts.false_positives, frame_trip, n_trips),
                                     trip_sums(counts.num_ground_truth, frame_trip, n_trips))
    return out


def waymo_draw_metrics(counts: Mapping[int, WaymoTripCounts], weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every draw's Waymo-style AP per class and ``Waymo2D/mAP`` (mean of the defined classes): a draw
    only re-weights the per-trip counts of :func:`waymo_trip_counts`."""
    from urban_detection.detection.waymo_ap import MAP_KEY, ap_key
    from urban_detection.detection.waymo_pr import aps_from_totals

    out: dict[str, np.ndarray] = {}
    for label, c in counts.items():
        out[ap_key(label)] = aps_from_totals(weights @ c.true_positives, weights @ c.false_positives,
                                             weights @ c.ground_truth)
    per_class = np.stack(list(out.values()), axis=1)
    defined = np.isfinite(per_class)
    total = np.where(defined, per_class, 0.0).sum(axis=1)
    out[MAP_KEY] = np.divide(total, defined.sum(axis=1), out=np.full(len(weights), np.nan),
                             where=defined.sum(axis=1) > 0)
    return out
