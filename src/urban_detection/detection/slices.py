"""Slices of a split: by time of day, weather and object size, and per trip, as tables and a figure.

The numbers come from :func:`~.split_bootstrap.bootstrap_split`: a condition slice holds the
split's trips of that condition (its own value and trip-bootstrap interval); a size slice is
COCO's area range over every trip (``DetectionBoxes_Precision/mAP (small)``...). Lighting that
was estimated from image brightness (processed files carry no time of day) is marked
``(estimated)`` in the slice name.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from urban_detection.detection.bootstrap import SIZES, sized
from urban_detection.detection.evaluate import HEADLINE
from urban_detection.detection.intervals import error_bar_extents
from urban_detection.waymo.example import CLASS_NAMES

SLICED_BY = ("time_of_day", "weather")


def trip_slices(conditions: pd.DataFrame) -> dict[str, list[str]]:
    """``{"time_of_day=Night": [trips], "weather=rain": [...], ...}`` from a ``trip, time_of_day, weather``
    table (``time_of_day_estimated`` optional: any estimated trip marks its slice ``(estimated)``)."""
    out: dict[str, list[str]] = {}
    for column in SLICED_BY:
        if column not in conditions:
            continue
        for value, rows in conditions.groupby(conditions[column].fillna("unknown").astype(str), sort=True):
            estimated = column == "time_of_day" and bool(rows.get("time_of_day_estimated", pd.Series(False)).any())
            out[f"{column}={value}" + (" (estimated)" if estimated else "")] = sorted(rows["trip"].astype(str))
    return out


def slice_rows(split: str, metrics: Mapping[str, Any], boot: Mapping[str, Any], frames_per_trip: Mapping[str, int],
               ) -> list[dict]:
    """One row per slice of a split (``all``, the trip slices, the COCO sizes): trips, frames, and each
    headline metric with ``ci95_low|high``."""
    def row(name: str, trips: Sequence[str], values: Mapping, cis: Mapping, suffix: str = "all") -> dict:
        out = {"split": split, "slice": name, "trips": len(trips), "frames": int(sum(frames_per_trip.get(t, 0)
                                                                               for t in trips))}
        for m in HEADLINE:
            key = sized(m, suffix)
            ci = cis.get(key) or {}
            out.update({m: values.get(key), f"{m} ci95_low": ci.get("low"), f"{m} ci95_high": ci.get("high")})
        return out

    everything = list(boot.get("trips") or [])
    rows = [row("all", everything, metrics, boot.get("intervals") or {})]
    for name, s in (boot.get("slices") or {}).items():
        rows.append(row(name, s["trips"], s["metrics"], s["intervals"]))
    rows += [row(f"size={size}", everything, metrics, boot.get("intervals") or {}, size) for size in SIZES]
    return rows


def per_trip_rows(split: str, boot: Mapping[str, Any], gt_frames: Sequence[Mapping[str, Any]],
                  trip_of: Any, conditions: pd.DataFrame | None = None) -> list[dict]:
    """One row per trip: its conditions, frames, objects per class, and its AP50 / mAP / Waymo mAP alone."""
    from urban_detection.waymo.example import LABEL_MAP

    counts: dict[str, dict[str, int]] = {}
    for frame in gt_frames:
        c = counts.setdefault(trip_of(frame), {"frames": 0, **{k: 0 for k in CLASS_NAMES}})
        c["frames"] += 1
        labels = np.asarray(frame.get("labels", []), dtype=np.int64).reshape(-1)
        for label, name in LABEL_MAP.items():
            c[name] += int((labels == label).sum())
    info = conditions.set_index("trip") if conditions is not None and len(conditions) else None
    rows = []
    for trip, values in (boot.get("per_trip") or {}).items():
        row = {"split": split, "trip": trip}
        if info is not None and trip in info.index:
            row.update({k: info.at[trip, k] for k in SLICED_BY if k in info})
        row.update(counts.get(trip, {}))
        row.update({m: values.get(m) for m in HEADLINE[:2] + HEADLINE[-1:]})
        rows.append(row)
    return rows


def slice_figure(table: pd.DataFrame, metrics: Sequence[str] = HEADLINE[:2], title: str = "") -> Figure:
    """Each slice's value with its 95% interval (horizontal bars), one panel per metric."""
    from urban_detection.detection.report import short_metric_name

    fig = Figure(figsize=(4.2 * len(metrics), 0.32 * max(len(table), 1) + 1.2), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    labels = [f"{r['slice']} ({r['trips']} trips)" for _, r in table.iterrows()]
    y = np.arange(len(table))
    for ax, metric in zip(axes, metrics):
        value = table[metric].astype(float).to_numpy()
        low = table[f"{metric} ci95_low"].astype(float).to_numpy()
        high = table[f"{metric} ci95_high"].astype(float).to_numpy()
        err = error_bar_extents(value, low, high)
        ax.errorbar(value, y, xerr=err, fmt="o", capsize=3, color="tab:blue")
        ax.set_yticks(y, labels if ax is axes[0] else [""] * len(y), fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(short_metric_name(metric), fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig
