"""COCO evaluation of one split: the detection records scored with COCO and Waymo-style AP, and the metric names.

Records come from :func:`~.predict.predict_split`; :func:`evaluate_detections`
gives the COCO ground truth and detections, the metrics and the precision-recall
curves, also after the large-box filter. :mod:`.report` lays the numbers of
several experiments out as tables and figures.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from urban_detection.detection.coco import (
    PER_CLASS_AP,
    PER_CLASS_AP50,
    SUMMARY_METRICS,
    CocoResults,
    coco_eval_frames,
    coco_metrics_and_curves,
    filter_large_boxes,
    to_coco_ground_truth,
)
from urban_detection.detection.split_bootstrap import bootstrap_split
from urban_detection.detection.waymo_ap import MAP_KEY as WAYMO_MAP
from urban_detection.detection.waymo_ap import METRIC_NAMES as WAYMO_METRICS
from urban_detection.detection.waymo_ap import waymo_metrics
from urban_detection.waymo.example import CLASS_NAMES
LOSS_METRICS: tuple[str, ...] = ("loss/classification", "loss/localization", "loss/regularization", "loss/total")
PER_CLASS_METRICS: tuple[str, ...] = tuple(PER_CLASS_AP.format(c) for c in CLASS_NAMES) + tuple(
    PER_CLASS_AP50.format(c) for c in CLASS_NAMES
)
AP_METRICS: tuple[str, ...] = SUMMARY_METRICS[:6] + PER_CLASS_METRICS + WAYMO_METRICS
# The metrics a headline shows (with their intervals): COCO mAP, AP50, AP75, AR@100, Waymo-style mAP.
HEADLINE: tuple[str, ...] = (*SUMMARY_METRICS[:3], SUMMARY_METRICS[8], WAYMO_MAP)
FILTERED_PREFIX = "large_box_filter/"
# Row order of the comparison table; other metrics follow in first-seen order.
REPORT_ORDER: tuple[str, ...] = (
    SUMMARY_METRICS
    + PER_CLASS_METRICS
    + WAYMO_METRICS
    + tuple(FILTERED_PREFIX + m for m in SUMMARY_METRICS[:3] + PER_CLASS_METRICS[:3] + (WAYMO_MAP,))
    + LOSS_METRICS
)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_safe(obj: Any) -> Any:
    """NaN/inf floats to ``None`` and numpy scalars/arrays to Python, recursively (for JSON files)."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return _nan_to_none(obj)


def evaluate_detections(
    gt_frames: Sequence[Mapping[str, Any]],
    det_frames: Sequence[Mapping[str, Any]],
    max_area_frac: Mapping[str, float] | None = None,
    pr_iou: float = 0.5,
    bootstrap: Mapping[str, Any] | None = None,
    matcher: str = "hungarian",
    slices: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """COCO evaluation of one split's per-frame records.

    Returns ``ground_truth`` (COCO dict), ``detections`` (COCO results list),
    ``metrics`` (12 standard numbers + per-class AP, NaN where undefined, merged with
    the Waymo-style AP of :func:`~.waymo_ap.waymo_metrics`: ``Waymo2D/mAP``,
    ``Waymo2D/AP@.70IOU/vehicle``, ``Waymo2D/AP@.50IOU/pedestrian|cyclist``) and
    ``pr_curves`` (class -> (recall, precision) at IoU ``pr_iou``). With
    ``max_area_frac`` (class name -> largest plausible box area as a fraction of the
    image) it also evaluates the detections after :func:`~.coco.filter_large_boxes`:
    ``filtered`` = ``{"detections", "metrics", "dropped" (per class), "delta" (filtered
    minus raw, for the AP metrics)}``. With ``bootstrap`` (``{"draws", "seed", "level"}``, draws > 0)
    ``bootstrap`` holds :func:`~.split_bootstrap.bootstrap_split` of the raw detections, with
    ``slices`` (name -> trips). ``matcher`` is the Waymo-style
    AP's (``hungarian``, Waymo's default, or ``score_first``).
    """
    start = time.perf_counter()
    gt = to_coco_ground_truth(gt_frames)
    dets = CocoResults(det_frames, gt)
    ev = coco_eval_frames(gt_frames, det_frames)
    coco, curves = coco_metrics_and_curves(gt, None, pr_iou=pr_iou, ev=ev, frames=(gt_frames, det_frames))
    metrics = {**coco, **waymo_metrics(gt_frames, det_frames, matcher=matcher)}
    result: dict[str, Any] = {"ground_truth": gt, "detections": dets, "metrics": metrics, "pr_curves": curves}
    if bootstrap and int(bootstrap.get("draws") or 0) > 0:
        result["bootstrap"] = bootstrap_split(ev, gt_frames, det_frames, matcher=matcher, slices=slices,
                                              **dict(bootstrap))
    if max_area_frac:
        dropped: dict[str, int] = {}
        filtered_frames = filter_large_boxes(list(det_frames), dict(max_area_frac), dropped)
        if sum(dropped.values()):
            fdets = CocoResults(filtered_frames, gt)
            fmetrics = {**coco_metrics_and_curves(gt, None, ev=coco_eval_frames(gt_frames, filtered_frames))[0],
                        **waymo_metrics(gt_frames, filtered_frames, matcher=matcher)}
        else:  # nothing removed: the same detections, the same numbers
            fdets, fmetrics = dets, dict(metrics)
        result["filtered"] = {
            "detections": fdets,
            "metrics": fmetrics,
            "dropped": {k.removeprefix("large_"): int(v) for k, v in dropped.items()},
            "max_area_frac": {k: float(v) for k, v in max_area_frac.items()},
            "delta": {m: fmetrics[m] - metrics[m] for m in AP_METRICS if m in metrics and m in fmetrics},
        }
    result["coco_seconds"] = time.perf_counter() - start
    return result
