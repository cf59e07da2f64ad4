"""Error analysis of one split: the frames with the most missed objects and the most false positives.

At the render threshold (the score the videos draw at) each frame is matched as the
confusion matrix matches (:func:`~.confusion.match_frame`: score-first, IoU >= 0.5, across
classes): a ground-truth box no detection took is *missed*, a detection that took nothing is
a *false positive*, a box taken by a detection of another class is *confused*. The gallery
shows the worst frames, at most one per trip first (one bad trip should not fill it), each
as ground truth beside the predictions with a caption: trip, frame, conditions and counts.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from urban_detection.detection.confusion import match_frame
from urban_detection.detection.split_bootstrap import frame_trip
from urban_detection.waymo.example import LABEL_MAP

KINDS = ("missed", "false_positives")


def frame_errors(gt_frames: Sequence[Mapping[str, Any]], det_frames: Sequence[Mapping[str, Any]],
                 score_threshold: float, iou_threshold: float = 0.5,
                 trip_of: Callable[[Mapping[str, Any]], str] = frame_trip) -> pd.DataFrame:
    """One row per frame: ``image_id, trip, source_id, ground_truth, detections`` (kept at the
    threshold), ``true_positives, confused, missed, false_positives``."""
    dets = {int(d["image_id"]): d for d in det_frames}
    classes = tuple(LABEL_MAP)
    bg = len(classes)
    rows = []
    for gt in gt_frames:
        counts = match_frame(gt, dets.get(int(gt["image_id"])), classes, score_threshold, iou_threshold)
        matched = counts[:bg, :bg]
        rows.append({"image_id": int(gt["image_id"]), "trip": trip_of(gt), "source_id": str(gt.get("source_id", "")),
                     "ground_truth": int(counts[:bg].sum()), "detections": int(counts[:, :bg].sum()),
                     "true_positives": int(np.trace(matched)), "confused": int(matched.sum() - np.trace(matched)),
                     "missed": int(counts[:bg, bg].sum()), "false_positives": int(counts[bg, :bg].sum())})
    return pd.DataFrame(rows, columns=["image_id", "trip", "source_id", "ground_truth", "detections",
                                       "true_positives", "confused", "missed", "false_positives"])


def worst_frames(table: pd.DataFrame, count: int, by: str) -> pd.DataFrame:
    """The ``count`` frames with the most ``by`` errors (``missed`` or ``false_positives``; frames without
    any are left out): the worst frame of each trip first, then the next worst; ties by image id."""
    if by not in KINDS:
        raise ValueError(f"worst_frames by {by!r}: use one of {KINDS}")
    bad = table[table[by] > 0].sort_values([by, "image_id"], ascending=[False, True])
    first = bad.drop_duplicates("trip")
    rest = bad.drop(first.index)
    return pd.concat([first, rest]).head(count)


def _caption(row: pd.Series, kind: str, conditions: Mapping[str, Mapping[str, Any]] | None) -> str:
    cond = dict((conditions or {}).get(row["trip"]) or {})
    if cond.get("time_of_day") and cond.get("time_of_day_estimated"):
        cond["time_of_day"] = f"{cond['time_of_day']} (estimated)"
    where = ", ".join(str(cond[k]) for k in ("time_of_day", "weather") if cond.get(k))
    return (f"{kind.replace('_', ' ')}: trip {row['trip']}, frame {row['source_id']}"
            + (f" ({where})" if where else "")
            + f"\n{row['ground_truth']} objects, {row['detections']} detections: {row['missed']} missed, "
            f"{row['false_positives']} false positives, {row['confused']} of another class")


def error_gallery(gt_frames: Sequence[Mapping[str, Any]], det_frames: Sequence[Mapping[str, Any]],
                  score_threshold: float, count: int = 4, conditions: Mapping[str, Mapping[str, Any]] | None = None,
                  title_prefix: str = "", max_side: int = 640) -> dict[str, Figure]:
    """Figures ``errors_missed_<k>.png`` and ``errors_false_positives_<k>.png`` (k = 1..count): ground truth
    beside the predictions at ``score_threshold``, captioned. ``conditions``: trip -> time_of_day, weather
    (and ``time_of_day_estimated``: lighting estimated from brightness is marked so).
    Images are read back from the frames' TFRecords (``path``, ``source_id``)."""
    from urban_detection.detection.draw import side_by_side_figure
    from urban_detection.waymo.read import read_frames

    table = frame_errors(gt_frames, det_frames, score_threshold)
    chosen = {kind: worst_frames(table, count, kind) for kind in KINDS}
    by_id = {int(g["image_id"]): g for g in gt_frames}
    dets = {int(d["image_id"]): d for d in det_frames}
    wanted = {(str(by_id[i]["path"]), str(by_id[i]["source_id"])) for rows in chosen.values() for i in rows["image_id"]}
    images = {(f.path, f.source_id): f.image for f in read_frames(sorted(wanted), max_side=max_side)}
    figures = {}
    for kind, rows in chosen.items():
        k = 0
        for _, row in rows.iterrows():
            gt, det = by_id[int(row["image_id"])], dets.get(int(row["image_id"])) or {}
            image = images.get((str(gt["path"]), str(gt["source_id"])))
            if image is None:  # unreadable: read_frames has warned and counted it
                continue
            k += 1
            figures[f"errors_{kind}_{k}.png"] = side_by_side_figure(
                image, gt["boxes"], gt["labels"], det.get("boxes", np.zeros((0, 4))), det.get("labels", []),
                det.get("scores", []), score_threshold, title_prefix + _caption(row, kind, conditions))
    return figures
