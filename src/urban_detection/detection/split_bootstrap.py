"""One split's metrics with their trip-bootstrap intervals: overall, per slice of trips and per trip.

:func:`bootstrap_split` matches the split once (COCO's matches of :mod:`.coco_match`, the Waymo-style counts
per trip) and then only re-weights trips (:mod:`.bootstrap`):

* **overall**: ``draws`` resamples of the split's trips;
* **slices**: a named group of trips (``time_of_day=Night``, ``weather=rain``) gets its own
  value (its trips once each: the metric on those frames alone) and its own draws
  (resamples of its trips only); object-size slices are COCO's area metrics
  (``... (small)``), part of every draw;
* **per trip**: each trip's value alone (for spotting an outlier trip).

Draws are fixed by the seed and the trips, so experiments scored on the same frames get the
same draws and can be compared draw by draw (:func:`~.intervals.paired_differences`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from urban_detection.detection.bootstrap import (
    coco_draw_metrics,
    only_trips,
    ranked_matches,
    trip_draws,
    trip_index,
    waymo_draw_metrics,
    waymo_trip_counts,
)
from urban_detection.detection.intervals import LEVEL, intervals
from urban_detection.waymo.example import LABEL_MAP

log = logging.getLogger(__name__)
MIN_TRIPS = 10  # fewer trips than this: the interval is rough, and says so in the log


def frame_trip(frame: Mapping[str, Any]) -> str:
    """The trip of a ground-truth record: its ``trip``, else the name of the file it was read from."""
    return str(frame["trip"]) if frame.get("trip") else Path(str(frame["path"])).stem


def bootstrap_split(ev: Any, gt_frames: Sequence[Mapping[str, Any]], det_frames: Sequence[Mapping[str, Any]],
                    draws: int = 1000, seed: int = 0, level: float = LEVEL, matcher: str = "hungarian",
                    slices: Mapping[str, Sequence[str]] | None = None) -> dict:
    """``ev``: the split's :class:`~.coco_match.CocoEvaluation`. Returns ``{"trips", "draws", "seed", "level",
    "values" (metric -> per-draw array), "intervals" (metric -> low/high/undefined_draws), "slices" (name ->
    {"trips", "metrics", "values", "intervals"}), "per_trip" (trip -> metrics), "seconds"}``.
    ``slices`` maps a slice name to its trips (trips not in the split are ignored; empty slices dropped)."""
    start = time.perf_counter()
    trips, trip_of_image = trip_index(gt_frames, frame_trip)
    n = len(trips)
    ranked = ranked_matches(ev, trip_of_image, n)
    frame_trips = np.array([trip_of_image[int(f["image_id"])] for f in gt_frames], dtype=np.int64)
    waymo = waymo_trip_counts(gt_frames, det_frames, frame_trips, n, matcher=matcher)

    def metrics(weights: np.ndarray, members: list[int] | None = None) -> dict[str, np.ndarray]:
        """Every row's metrics; ``members``: only those trips have weight (their matches alone are ranked)."""
        coco = coco_draw_metrics(ev, ranked, weights, dict(LABEL_MAP)) if members is None else \
            coco_draw_metrics(ev, only_trips(ranked, members), weights[:, members], dict(LABEL_MAP))
        return {**coco, **waymo_draw_metrics(waymo, weights)}

    if n < MIN_TRIPS:
        log.warning("bootstrap over %d trip(s): the intervals are rough (the trip is the unit of independence)", n)
    values = metrics(trip_draws(n, int(draws), int(seed)))
    point = {k: float(v[0]) for k, v in metrics(np.ones((1, n), dtype=np.int64)).items()}
    per_trip = metrics(np.eye(n, dtype=np.int64))
    out_slices = {}
    for name, members in (slices or {}).items():
        position = {t: i for i, t in enumerate(trips)}
        idx = sorted(position[t] for t in set(members) if t in position)
        if not idx:
            continue
        weights = np.zeros((1 + int(draws), n), dtype=np.int64)  # row 0: the slice's trips once each
        weights[0, idx] = 1
        weights[1:, idx] = trip_draws(len(idx), int(draws), int(seed))
        rows = metrics(weights, idx)  # one ranking of the slice's matches serves both
        slice_values = {k: v[1:] for k, v in rows.items()}
        out_slices[name] = {"trips": [trips[i] for i in idx],
                            "metrics": {k: float(v[0]) for k, v in rows.items()},
                            "values": slice_values, "intervals": intervals(slice_values, level)}
    return {"trips": trips, "draws": int(draws), "seed": int(seed), "level": float(level), "point": point,
            "values": values,
            "intervals": intervals(values, level), "slices": out_slices,
            "per_trip": {t: {k: float(v[i]) for k, v in per_trip.items()} for i, t in enumerate(trips)},
            "seconds": time.perf_counter() - start}
