"""Nodes of the eda pipeline: class balance, conditions, boxes and images, per split.

Counts come from the frame index alone (no TFRecord is opened). Box sizes and aspect
ratios parse only the box keys of the trip TFRecords; images are decoded only for the
gallery and the per-trip brightness sample. Figures are ``matplotlib.figure.Figure``
objects built without pyplot (the catalog writes them as PNG).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from urban_detection.detection.draw import CLASS_COLOURS, frames_grid_figure
from urban_detection.waymo.read import read_boxes_table, read_frames
from urban_detection.waymo.trips import Trips

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CLASSES = ("vehicle", "pedestrian", "cyclist")
CONDITIONS = ("time_of_day", "weather")
COLOURS = {c: tuple(v / 255 for v in CLASS_COLOURS[c]) for c in CLASSES}
SPLIT_COLOURS = {"train": "#4c72b0", "val": "#dd8452", "test": "#55a868"}
TIME_COLOURS = {"Day": "#f2b701", "Dawn/Dusk": "#e07b39", "Dawn": "#e07b39", "Dusk": "#e07b39", "Night": "#1f2a5a"}
ESTIMATED = " (estimated)"
TIME_COLOURS.update({k + ESTIMATED: v for k, v in list(TIME_COLOURS.items())})


def _split_order(values) -> list[str]:
    present = {str(v) for v in values}
    return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))


def _object_counts(part: pd.DataFrame) -> dict[str, int]:
    return {c: int(part[f"n_{c}"].sum()) for c in CLASSES}


def _parts(frames: pd.DataFrame, with_all: bool = True):
    """(name, rows) for "all" (optional) then every split in train/val/test order."""
    if with_all:
        yield "all", frames
    for split in _split_order(frames["split"].unique()):
        yield split, frames[frames["split"] == split]


# ---------------------------------------------------------------- tables from the index


def frames_with_splits(trips: Trips, split_manifest: pd.DataFrame) -> pd.DataFrame:
    """The trips' frame index with a ``split`` column from the verified split manifest
    (frames of trips not in the manifest: ``unassigned``)."""
    frame_index = trips.index
    if frame_index.empty:
        raise ValueError("the frame index is empty: run the ingest pipeline first")
    splits = split_manifest[["trip", "split"]].drop_duplicates("trip")
    frames = frame_index.drop(columns=["split"], errors="ignore").merge(splits, on="trip", how="left")
    missing = frames["split"].isna()
    if missing.any():
        log.warning("%d frames of %d trips are not in the split manifest; counted as 'unassigned'",
                    int(missing.sum()), frames.loc[missing, "trip"].nunique())
        frames["split"] = frames["split"].fillna("unassigned")
    for col in ("time_of_day", "weather", "location"):
        if col in frames:
            frames[col] = frames[col].fillna("unknown").astype(str)
    if "time_of_day_estimated" in frames:  # estimated from brightness at ingest: say so in every table and plot
        estimated = frames["time_of_day_estimated"].astype(bool)
        frames.loc[estimated, "time_of_day"] = frames.loc[estimated, "time_of_day"] + ESTIMATED
    for c in CLASSES:
        frames[f"n_{c}"] = frames[f"n_{c}"].fillna(0).astype(np.int64)
    frames["n_objects"] = frames[[f"n_{c}" for c in CLASSES]].sum(axis=1)
    log.info("EDA over %d frames of %d trips (%s)", len(frames), frames["trip"].nunique(),
             ", ".join(f"{s}: {n}" for s, n in frames["split"].value_counts().items()))
    return frames


def class_counts(frames: pd.DataFrame) -> pd.DataFrame:
    """One row per split and class: ``split, class, count, share`` (share of the split's objects)."""
    rows = []
    for split, part in _parts(frames, with_all=False):
        counts = _object_counts(part)
        total = sum(counts.values())
        for c in CLASSES:
            rows.append({"split": split, "class": c, "count": counts[c],
                         "share": round(counts[c] / total, 6) if total else 0.0})
    return pd.DataFrame(rows, columns=["split", "class", "count", "share"])


def _summary(part: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    out = part.groupby(keys, sort=True).agg(
        trips=("trip", "nunique"), frames=("trip", "size"),
        **{c: (f"n_{c}", "sum") for c in CLASSES},
    ).reset_index()
    out["objects"] = out[list(CLASSES)].sum(axis=1)
    out["objects_per_frame"] = (out["objects"] / out["frames"]).round(3)
    return out


def class_counts_by_condition(frames: pd.DataFrame) -> pd.DataFrame:
    """Class counts per condition value (time_of_day, weather), for all frames and per split.

    Columns: ``condition, value, split, trips, frames, vehicle, pedestrian, cyclist,
    objects, objects_per_frame``.
    """
    tables = []
    for condition in CONDITIONS:
        for split, part in _parts(frames):
            t = _summary(part, [condition]).rename(columns={condition: "value"})
            t.insert(0, "condition", condition)
            t.insert(2, "split", split)
            tables.append(t)
    return pd.concat(tables, ignore_index=True)


def class_counts_per_trip(frames: pd.DataFrame) -> pd.DataFrame:
    """One row per trip: split, conditions, frames, class counts and objects per frame."""
    first = frames.groupby("trip", sort=True)[["split", "time_of_day", "weather", "location"]].first()
    table = first.join(_summary(frames, ["trip"]).set_index("trip").drop(columns="trips")).reset_index()
    order = {s: i for i, s in enumerate(_split_order(table["split"]))}
    return table.sort_values(["split", "trip"], key=lambda s: s.map(order) if s.name == "split" else s,
                             kind="stable").reset_index(drop=True)


def sampled_class_counts(frames: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Class counts over ``sample_frames`` frames drawn at random with replacement, as the original study did.

    Rows for ``source`` = ``sample`` (this data, seed ``params['seed']``) and
    ``original_study`` (its published numbers, from ``params['original_study']``), with
    columns ``source, frames, class, count, share, per_frame``.
    """
    n = int(params["sample_frames"])
    rng = np.random.default_rng(int(params["seed"]))
    sample = frames.iloc[rng.integers(0, len(frames), size=n)]
    sources = {"sample": (n, _object_counts(sample))}
    study = params.get("original_study")
    if study:
        sources["original_study"] = (int(study["frames"]), {c: int(study[c]) for c in CLASSES})
    rows = []
    for source, (n_frames, counts) in sources.items():
        total = sum(counts.values())
        for c in CLASSES:
            rows.append({"source": source, "frames": n_frames, "class": c, "count": counts[c],
                         "share": round(counts[c] / total, 6) if total else 0.0,
                         "per_frame": round(counts[c] / n_frames, 4) if n_frames else 0.0})
    log.info("sampled %d frames (seed %s): %s", n, params["seed"], sources["sample"][1])
    return pd.DataFrame(rows, columns=["source", "frames", "class", "count", "share", "per_frame"])


# ---------------------------------------------------------------- boxes (no image decode)


def read_boxes(frames: pd.DataFrame) -> pd.DataFrame:
    """Every box of the trip TFRecords listed in the frame index, with the frame's split.

    Parses only the box, label and size keys. Logs a warning when the boxes read do not
    add up to the frame index's class counts.
    """
    split_of_path = frames.groupby("path")["split"].first()
    report: dict = {}
    boxes = read_boxes_table(split_of_path.index, report=report)
    boxes["split"] = boxes["path"].map(split_of_path).fillna("unassigned")
    read = boxes["class"].value_counts().to_dict()
    expected = _object_counts(frames)
    if any(read.get(c, 0) != expected[c] for c in CLASSES):
        log.warning("boxes read from the trip files %s differ from the frame index counts %s",
                    {c: read.get(c, 0) for c in CLASSES}, expected)
    log.info("read %d boxes of %d frames in %d trip files; skipped: %s",
             len(boxes), report.get("frames", 0), report.get("files", 0), report.get("skipped", {}))
    return boxes


def _box_geometry(boxes: pd.DataFrame, resolution: int) -> pd.DataFrame:
    """Width, height, area (pixels of the square ``resolution`` model input) and aspect ratio."""
    w = (boxes["xmax"] - boxes["xmin"]).clip(lower=0).to_numpy(np.float64) * resolution
    h = (boxes["ymax"] - boxes["ymin"]).clip(lower=0).to_numpy(np.float64) * resolution
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.where((w > 0) & (h > 0), w / np.where(h > 0, h, 1), np.nan)
    return pd.DataFrame({"split": boxes["split"].to_numpy(), "class": boxes["class"].to_numpy(),
                         "width_px": w, "height_px": h, "area_px": w * h, "aspect": aspect})


def _size_class(area: np.ndarray, thresholds) -> np.ndarray:
    small, medium = (float(t) ** 2 for t in thresholds)
    return np.where(area < small, "small", np.where(area < medium, "medium", "large"))


def box_size_table(boxes: pd.DataFrame, params: dict) -> pd.DataFrame:
    """COCO size buckets per split and class at the training resolution.

    A box is small below ``coco_area_thresholds[0]``² pixels of area, medium below
    ``coco_area_thresholds[1]``², large above, measured after resizing the frame to the
    square ``train_resolution`` model input.
    """
    res = int(params["train_resolution"])
    geo = _box_geometry(boxes, res)
    geo["size"] = _size_class(geo["area_px"].to_numpy(), params["coco_area_thresholds"])
    rows = []
    for split, part in _parts(geo):
        for c in CLASSES:
            g = part[part["class"] == c]
            n = len(g)
            sizes = g["size"].value_counts()
            row = {"split": split, "class": c, "resolution": res, "boxes": n}
            for s in ("small", "medium", "large"):
                row[s] = int(sizes.get(s, 0))
            for s in ("small", "medium", "large"):
                row[f"{s}_share"] = round(row[s] / n, 4) if n else 0.0
            for col in ("width_px", "height_px", "aspect"):
                row[f"median_{col}"] = round(float(g[col].median()), 2) if n else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- images (decoded)


def _sample_per_trip(frames: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    picks = []
    for _, part in frames.groupby("trip", sort=True):
        idx = rng.choice(len(part), size=min(k, len(part)), replace=False)
        picks.append(part.iloc[np.sort(idx)])
    return pd.concat(picks)


def _source_id(row) -> str:
    return f"{row.trip}/{row.frame}"


def trip_brightness(frames: pd.DataFrame, params: dict, root: str | Path | None = None) -> pd.DataFrame:
    """Mean image brightness (luma 0-255, BT.601) of ``brightness.frames_per_trip`` random frames per trip.

    JPEGs are decoded at ``1/brightness.jpeg_ratio`` of their size: several times faster,
    and the mean moves by under a grey level (at most 0.54 at ratio 4 on the real sample). Columns:
    ``trip, split, time_of_day, weather, frames_sampled, mean_brightness,
    min_brightness, max_brightness`` (min/max over the sampled frames), darkest first.
    """
    bp = params["brightness"]
    sample = _sample_per_trip(frames, int(bp["frames_per_trip"]), int(params["seed"]))
    decoded = read_frames(((r.path, _source_id(r)) for r in sample.itertuples()), root=root,
                          jpeg_ratio=int(bp.get("jpeg_ratio", 1)))
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    per_frame = pd.DataFrame({
        "trip": [f.source_id.rpartition("/")[0] for f in decoded],
        "brightness": [float((f.image.astype(np.float32) @ luma).mean()) for f in decoded],
    })
    info = frames.groupby("trip")[["split", "time_of_day", "weather"]].first()
    table = per_frame.groupby("trip").agg(
        frames_sampled=("brightness", "size"), mean_brightness=("brightness", "mean"),
        min_brightness=("brightness", "min"), max_brightness=("brightness", "max"),
    )
    table = info.join(table, how="inner").reset_index().round(2)
    return table.sort_values("mean_brightness", kind="stable").reset_index(drop=True)[
        ["trip", "split", "time_of_day", "weather", "frames_sampled",
         "mean_brightness", "min_brightness", "max_brightness"]]


def _short_trip(trip: str, n: int = 16) -> str:
    t = str(trip).removeprefix("segment-").removesuffix("_with_camera_labels")
    return t if len(t) <= n else t[: n - 1] + "…"


def gallery_figure(frames: pd.DataFrame, params: dict, root: str | Path | None = None) -> Figure:
    """``gallery.frames`` random frames (seed ``params['seed']``, without replacement) with their boxes.

    Vehicle red, pedestrian green, cyclist blue (legend at the bottom); each tile is titled
    with trip, frame, split, time of day and weather.
    """
    g = params["gallery"]
    n = min(int(g["frames"]), len(frames))
    rng = np.random.default_rng(int(params["seed"]))
    pick = frames.iloc[rng.choice(len(frames), size=n, replace=False)]
    order = {s: i for i, s in enumerate(_split_order(frames["split"].unique()))}
    pick = pick.assign(_o=pick["split"].map(order)).sort_values(["_o", "trip", "frame"])
    decoded = read_frames(((r.path, _source_id(r)) for r in pick.itertuples()), root=root,
                          max_side=int(g.get("tile_px", 400)))
    info = {_source_id(r): r for r in pick.itertuples()}
    titles = []
    for f in decoded:
        r = info[f.source_id]
        titles.append(f"{_short_trip(r.trip)} #{r.frame} ({r.split})\n{r.time_of_day}, {r.weather}, "
                      f"{len(f.labels)} object{'s' if len(f.labels) != 1 else ''}")
    fig = frames_grid_figure([f.image for f in decoded], [f.boxes for f in decoded],
                             [f.labels for f in decoded], titles=titles, ncols=int(g.get("ncols", 4)))
    fig.suptitle(f"{len(decoded)} random frames (seed {params['seed']}): "
                 "vehicle red, pedestrian green, cyclist blue")
    return fig


# ---------------------------------------------------------------- figures


def _plain_log_y(ax) -> None:
    """Log y axis labelled 1, 10, 100, 1,000 rather than 10^k."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def class_counts_figure(class_counts: pd.DataFrame, sampled_counts: pd.DataFrame) -> Figure:
    """Objects per class and split (log scale) beside the class shares, with the original study's."""
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    ax_counts, ax_share = fig.subplots(1, 2, width_ratios=[1.2, 1])
    splits = _split_order(class_counts["split"].unique())
    width = 0.8 / len(CLASSES)
    for i, c in enumerate(CLASSES):
        counts = [int(class_counts.loc[(class_counts["split"] == s) & (class_counts["class"] == c), "count"].sum())
                  for s in splits]
        x = np.arange(len(splits)) + (i - 1) * width
        bars = ax_counts.bar(x, [max(v, 0.8) for v in counts], width, color=COLOURS[c], label=c)
        ax_counts.bar_label(bars, labels=[f"{v:,}" for v in counts], fontsize=7, padding=1)
    _plain_log_y(ax_counts)
    ax_counts.set_xticks(np.arange(len(splits)), splits)
    ax_counts.set_ylabel("objects (log scale)")
    ax_counts.set_title("Objects per class and split")
    ax_counts.legend(frameon=False)

    shares = [(s, class_counts[class_counts["split"] == s].set_index("class")["share"]) for s in splits]
    for source, part in sampled_counts.groupby("source", sort=False):
        frames = int(part["frames"].iloc[0])
        name = f"sample of {frames:,} frames" if source == "sample" else f"original study ({frames:,} frames)"
        shares.append((name, part.set_index("class")["share"]))
    y = np.arange(len(shares))[::-1]
    left = np.zeros(len(shares))
    for c in CLASSES:
        vals = np.array([float(s.get(c, 0.0)) for _, s in shares])
        ax_share.barh(y, vals, left=left, color=COLOURS[c], label=c)
        for yi, v, l0 in zip(y, vals, left):
            if v >= 0.04:
                ax_share.text(l0 + v / 2, yi, f"{v:.1%}", ha="center", va="center", color="white", fontsize=8)
        left += vals
    ax_share.set_yticks(y, [name for name, _ in shares])
    ax_share.set_xlim(0, 1)
    ax_share.set_xlabel("share of objects")
    ax_share.set_title("Class shares (cyclist share printed when >= 4%)")
    cyc = [f"{name}: {float(s.get('cyclist', 0)):.2%}" for name, s in shares]
    ax_share.text(0, -0.18, "cyclist share — " + "; ".join(cyc), transform=ax_share.transAxes,
                  fontsize=7, va="top", wrap=True)
    return fig


def conditions_figure(counts_by_condition: pd.DataFrame) -> Figure:
    """Objects per class for every time of day and weather value (all splits, log scale)."""
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    axes = fig.subplots(1, len(CONDITIONS))
    allp = counts_by_condition[counts_by_condition["split"] == "all"]
    width = 0.8 / len(CLASSES)
    for ax, condition in zip(np.atleast_1d(axes), CONDITIONS):
        t = allp[allp["condition"] == condition].reset_index(drop=True)
        x = np.arange(len(t))
        for i, c in enumerate(CLASSES):
            bars = ax.bar(x + (i - 1) * width, np.maximum(t[c].to_numpy(), 0.8), width, color=COLOURS[c], label=c)
            ax.bar_label(bars, labels=[f"{v:,}" for v in t[c]], fontsize=7, padding=1)
        ax.set_xticks(x, [f"{v}\n{tr} trip{'s' if tr != 1 else ''}, {fr:,} frames"
                          for v, tr, fr in zip(t["value"], t["trips"], t["frames"])],
                      fontsize=8)
        _plain_log_y(ax)
        ax.set_ylabel("objects (log scale)")
        ax.set_title(f"Objects by {condition.replace('_', ' ')} (all splits)")
    np.atleast_1d(axes)[0].legend(frameon=False)
    return fig


def objects_per_frame_figure(frames: pd.DataFrame) -> Figure:
    """Histograms of objects per frame (all classes and each class), one line per split."""
    fig = Figure(figsize=(12, 7), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    columns = [("n_objects", "all objects")] + [(f"n_{c}", c) for c in CLASSES]
    for ax, (col, name) in zip(axes, columns):
        top = int(frames[col].max()) if len(frames) else 0
        bins = np.arange(-0.5, top + 1.5, max(1, int(np.ceil((top + 1) / 60))))
        for split, part in _parts(frames, with_all=False):
            vals = part[col].to_numpy()
            ax.hist(vals, bins=bins, weights=np.full(len(vals), 1 / max(len(vals), 1)), histtype="step",
                    linewidth=1.6, color=SPLIT_COLOURS.get(split, "grey"),
                    label=f"{split}: mean {vals.mean():.1f}, {len(vals):,} frames")
        ax.set_title(f"{name} per frame")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("objects in the frame")
        ax.set_ylabel("share of frames")
        ax.legend(frameon=False, fontsize=8)
    return fig


def box_size_figure(boxes: pd.DataFrame, params: dict) -> Figure:
    """Box size distribution (square root of area at the training resolution) with the COCO thresholds."""
    res = int(params["train_resolution"])
    t_small, t_medium = (float(t) for t in params["coco_area_thresholds"])
    geo = _box_geometry(boxes, res)
    geo = geo[geo["area_px"] > 0]
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    ax, ax_bar = fig.subplots(1, 2, width_ratios=[1.6, 1])
    bins = np.geomspace(0.5, max(res, 2) * 1.05, 60)
    shares = {}
    for c in CLASSES:
        side = np.sqrt(geo.loc[geo["class"] == c, "area_px"].to_numpy())
        if not len(side):
            continue
        size = _size_class(side**2, (t_small, t_medium))
        shares[c] = [float(np.mean(size == s)) for s in ("small", "medium", "large")]
        ax.hist(side, bins=bins, weights=np.full(len(side), 1 / len(side)), histtype="step", linewidth=1.8,
                color=COLOURS[c], label=f"{c} ({len(side):,} boxes)")
    for t in (t_small, t_medium):
        ax.axvline(t, color="black", linestyle="--", linewidth=1)
    ymax = ax.get_ylim()[1]
    for x, text in ((np.sqrt(t_small * 0.5), "small"), (np.sqrt(t_small * t_medium), "medium"),
                    (t_medium * 1.8, "large")):
        ax.text(x, ymax * 0.95, text, ha="center", va="top", fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel(f"sqrt(box area) in pixels of the {res}x{res} model input (log scale)")
    ax.set_ylabel("share of the class's boxes")
    ax.set_title(f"Box sizes; COCO thresholds {t_small:g}² and {t_medium:g}² px at {res}x{res}")
    ax.legend(frameon=False, fontsize=8, loc="upper left")

    names = list(shares)
    left = np.zeros(len(names))
    for k, (s, alpha) in enumerate((("small", 1.0), ("medium", 0.6), ("large", 0.3))):
        vals = np.array([shares[c][k] for c in names])
        ax_bar.barh(names, vals, left=left, color=[COLOURS[c] for c in names], alpha=alpha,
                    edgecolor="black", linewidth=0.5)
        for yi, v, l0 in zip(range(len(names)), vals, left):
            if v >= 0.06:
                ax_bar.text(l0 + v / 2, yi, f"{s[0].upper()} {v:.0%}", ha="center", va="center", fontsize=8)
        left += vals
    ax_bar.set_xlim(0, 1)
    ax_bar.invert_yaxis()
    ax_bar.set_xlabel("share of boxes: S small, M medium, L large")
    ax_bar.set_title("COCO size buckets per class")
    return fig


def aspect_ratio_figure(boxes: pd.DataFrame, params: dict) -> Figure:
    """Box aspect ratios (width / height in the square model input), log scale, one line per class."""
    geo = _box_geometry(boxes, int(params["train_resolution"]))
    geo = geo[np.isfinite(geo["aspect"])]
    fig = Figure(figsize=(8, 4.6), layout="constrained")
    ax = fig.subplots()
    bins = np.geomspace(1 / 16, 16, 65)
    for c in CLASSES:
        a = geo.loc[geo["class"] == c, "aspect"].to_numpy()
        if not len(a):
            continue
        a = np.clip(a, bins[0], bins[-1])
        med = float(np.median(a))
        ax.hist(a, bins=bins, weights=np.full(len(a), 1 / len(a)), histtype="step", linewidth=1.8,
                color=COLOURS[c], label=f"{c}: median {med:.2f} ({len(a):,} boxes)")
        ax.axvline(med, color=COLOURS[c], linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ticks = [1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8]
    ax.set_xticks(ticks, ["1/8", "1/4", "1/2", "1", "2", "4", "8"])
    ax.set_xlabel("width / height (log scale; < 1 tall, > 1 wide)")
    ax.set_ylabel("share of the class's boxes")
    ax.set_title("Box aspect ratios")
    ax.legend(frameon=False, fontsize=8)
    return fig


def brightness_figure(brightness: pd.DataFrame) -> Figure:
    """Mean brightness per trip, darkest first, coloured by the trip's time of day."""
    n = len(brightness)
    fig = Figure(figsize=(max(8.0, min(0.22 * n + 2, 24)), 4.6), layout="constrained")
    ax = fig.subplots()
    colours = [TIME_COLOURS.get(t, "#999999") for t in brightness["time_of_day"]]
    x = np.arange(n)
    ax.bar(x, brightness["mean_brightness"], color=colours, edgecolor="black", linewidth=0.3)
    ax.errorbar(x, brightness["mean_brightness"],
                yerr=[brightness["mean_brightness"] - brightness["min_brightness"],
                      brightness["max_brightness"] - brightness["mean_brightness"]],
                fmt="none", ecolor="black", elinewidth=0.6, capsize=0)
    if n <= 60:
        ax.set_xticks(x, [_short_trip(t, 12) for t in brightness["trip"]], rotation=90, fontsize=6)
    else:
        ax.set_xticks([])
    ax.set_ylim(0, 255)
    k = int(brightness["frames_sampled"].max()) if n else 0
    ax.set_xlabel(f"{n} trips, darkest first; mean of up to {k} random frames each, whiskers span their min-max")
    ax.set_ylabel("mean luma (0-255)")
    ax.set_title("Mean image brightness per trip (day/night evidence)")
    present = list(dict.fromkeys(brightness["time_of_day"]))
    ax.legend(handles=[Patch(facecolor=TIME_COLOURS.get(t, "#999999"), label=f"time_of_day: {t}") for t in present],
              frameon=False, fontsize=8, loc="upper left")
    return fig
