"""Reports: example figures of a split, and the experiments' metrics as a table, Markdown and figures.

Across experiments, :func:`comparison_table` lays the numbers out as the original
study did (rows: metrics, columns: experiments), and :func:`comparison_markdown` /
:func:`comparison_figure` render that table.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from urban_detection.detection.evaluate import FILTERED_PREFIX, REPORT_ORDER
from urban_detection.detection.intervals import error_bar_extents
from urban_detection.waymo.example import CLASS_NAMES


def select_examples(gt_frames: Sequence[Mapping[str, Any]], n: int) -> list[int]:
    """Indices of up to ``n`` frames worth showing: the busiest frame of each file first
    (files ordered by that frame's box count), then the next busiest frames overall."""
    if n <= 0 or not gt_frames:
        return []
    counts = [len(np.asarray(f.get("labels", []))) for f in gt_frames]
    best_per_file: dict[str, int] = {}
    for i, f in enumerate(gt_frames):
        key = str(f.get("path", ""))
        if key not in best_per_file or counts[i] > counts[best_per_file[key]]:
            best_per_file[key] = i
    chosen = sorted(best_per_file.values(), key=lambda i: (-counts[i], i))[:n]
    for i in sorted(range(len(gt_frames)), key=lambda i: (-counts[i], i)):
        if len(chosen) >= n:
            break
        if i not in chosen:
            chosen.append(i)
    return chosen


def example_figures(
    gt_frames: Sequence[Mapping[str, Any]],
    det_frames: Sequence[Mapping[str, Any]],
    num_examples: int = 4,
    score_threshold: float = 0.3,
    max_side: int | None = 640,
    title_prefix: str = "",
) -> dict[str, Figure]:
    """Figures of chosen frames: ground truth beside predictions (``score >= score_threshold``).

    The images are read back from the frames' TFRecords (``path`` and ``source_id`` of
    the ground-truth records, see :func:`~.predict.predict_split`). Keys are
    ``example_<nn>_<image_id>.png``.
    """
    from urban_detection.detection.draw import side_by_side_figure
    from urban_detection.waymo.read import read_frames

    chosen = select_examples(gt_frames, num_examples)
    wanted = [(str(gt_frames[i]["path"]), str(gt_frames[i]["source_id"])) for i in chosen]
    images = {(f.path, f.source_id): f.image for f in read_frames(wanted, max_side=max_side)}
    figures = {}
    for k, i in enumerate(chosen):
        gt, det = gt_frames[i], det_frames[i]
        image = images.get(wanted[k])
        if image is None:
            continue
        title = f"{title_prefix}{gt['source_id']}"
        figures[f"example_{k:02d}_{int(gt['image_id'])}.png"] = side_by_side_figure(
            image, gt["boxes"], gt["labels"], det["boxes"], det["labels"], det["scores"], score_threshold, title
        )
    return figures


def _order_rows(names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    known = [m for m in REPORT_ORDER if m in names]
    return known + [m for m in names if m not in REPORT_ORDER]


def comparison_table(metrics_by_experiment: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Rows: metrics, columns: experiments (the original study's layout).

    ``metrics_by_experiment`` maps an experiment name to a flat ``{metric: value}``
    dict. Rows follow the Object Detection API order (the 12 COCO numbers, per-class
    AP), then the Waymo-style AP, AP of the large-box filter, losses, then any other metric. Non-numeric
    values are left out; missing or undefined values are NaN.
    """
    columns = list(metrics_by_experiment)
    rows: list[str] = []
    data: dict[str, dict[str, float]] = {}
    for exp, metrics in metrics_by_experiment.items():
        col = {}
        for name, value in (metrics or {}).items():
            if isinstance(value, bool) or value is None:
                value = float("nan") if value is None else value
            try:
                col[name] = float(value)
            except (TypeError, ValueError):
                continue
            rows.append(name)
        data[exp] = col
    index = _order_rows(rows)
    table = pd.DataFrame({exp: [data[exp].get(m, np.nan) for m in index] for exp in columns}, index=index, dtype=float)
    table.index.name = "metric"
    table.columns.name = "experiment"
    return table


def _row_label(key: Any) -> str:
    return " | ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)


def _lower_is_better(key: Any) -> bool:
    name = key[-1] if isinstance(key, tuple) else key
    return str(name).startswith("loss/")


def _best_columns(row: pd.Series, lower: bool) -> set:
    values = row.dropna()
    if values.empty or len(row) < 2:
        return set()
    best = values.min() if lower else values.max()
    return set(values.index[np.isclose(values.to_numpy(), best)])


def comparison_markdown(table: pd.DataFrame, title: str = "Experiment comparison", digits: int = 3,
                        notes: Sequence[str] = (), formatted: pd.DataFrame | None = None,
                        split_titles: Mapping[str, str] | None = None) -> str:
    """The table as GitHub Markdown: one section per split when the index is ``(split, metric)``,
    best value of each row in bold (highest, lowest for losses), undefined values as ``n/a``.
    ``formatted`` (same index and columns) gives the cells' text, e.g. values with intervals;
    ``split_titles`` the section titles of some splits."""
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes]
    if notes:
        lines.append("")
    if isinstance(table.index, pd.MultiIndex):
        groups = [(str(k), table.xs(k, level=0), None if formatted is None else formatted.xs(k, level=0))
                  for k in table.index.get_level_values(0).unique()]
    else:
        groups = [(None, table, formatted)]
    for name, part, texts in groups:
        if name is not None:
            lines += [f"## {(split_titles or {}).get(name, name)}", ""]
        header = ["metric", *[str(c) for c in part.columns]]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" + "---:|" * len(part.columns))
        for key, row in part.iterrows():
            best = _best_columns(row, _lower_is_better(key))
            cells = []
            for col, value in row.items():
                text = "n/a" if pd.isna(value) else f"{value:.{digits}f}"
                text = text if texts is None else str(texts.loc[key, col])
                cells.append(f"**{text}**" if col in best else text)
            lines.append(f"| {_row_label(key)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def paired_markdown(paired: pd.DataFrame, reference: str | None, digits: int = 3) -> str:
    """Per split: rows metrics, columns experiments, cells ``difference [interval] verdict`` (from the
    reference); empty without paired rows."""
    if paired is None or paired.empty:
        return ""
    lines = []
    for split, part in paired.groupby("split", sort=False):
        names = list(dict.fromkeys(part["experiment"]))
        lines += [f"## {split}: difference from {reference} (paired trip bootstrap)", "",
                  "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for metric in _order_rows(part["metric"]):
            cells = []
            for name in names:
                hit = part[(part["metric"] == metric) & (part["experiment"] == name)]
                if hit.empty:
                    cells.append("")
                    continue
                r = hit.iloc[0]
                interval = ("" if pd.isna(r["ci95_low"]) else
                            f" [{r['ci95_low']:+.{digits}f}, {r['ci95_high']:+.{digits}f}]")
                diff = "n/a" if pd.isna(r["difference"]) else f"{r['difference']:+.{digits}f}"
                verdict = f"**{r['verdict']}**" if r["verdict"] != "not distinguishable" else r["verdict"]
                cells.append(f"{diff}{interval} {verdict}")
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def paired_difference_figure(rows: pd.DataFrame, title: str = "difference from the reference") -> Figure:
    """One panel per metric: each experiment's difference from the reference as a point with its
    interval (green better, red worse, grey not distinguishable), 0 marked."""
    metrics = list(dict.fromkeys(rows["metric"])) if len(rows) else []
    fig = Figure(figsize=(3.2 * max(len(metrics), 1), 0.5 * max(rows["experiment"].nunique() if len(rows) else 1, 1)
                          + 1.6), layout="constrained")
    axes = fig.subplots(1, max(len(metrics), 1), squeeze=False)[0]
    if not metrics:
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, "one experiment: nothing to pair", ha="center", va="center")
    colours = {"better": "tab:green", "worse": "tab:red"}
    for ax, metric in zip(axes, metrics):
        part = rows[rows["metric"] == metric].reset_index(drop=True)
        for i, r in part.iterrows():
            colour = colours.get(r["verdict"], "tab:gray")
            ax.errorbar(r["difference"], i, xerr=error_bar_extents(r["difference"], r["ci95_low"], r["ci95_high"]),
                        fmt="o", color=colour, capsize=3)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_yticks(range(len(part)), [str(e) for e in part["experiment"]])
        ax.set_ylim(-0.7, len(part) - 0.3)
        ax.set_title(short_metric_name(str(metric)), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return fig


def short_metric_name(name: str) -> str:
    """Compact label for figures: ``DetectionBoxes_Precision/mAP@.50IOU`` -> ``mAP@.50IOU``,
    ``DetectionBoxes_PerformanceByCategory/mAP/vehicle`` -> ``mAP/vehicle``, filtered -> ``filtered mAP``."""
    prefix = ""
    if name.startswith(FILTERED_PREFIX):
        prefix, name = "filtered ", name[len(FILTERED_PREFIX):]
    for long in ("DetectionBoxes_PerformanceByCategory/", "DetectionBoxes_Precision/", "DetectionBoxes_Recall/"):
        if name.startswith(long):
            name = name[len(long):]
            break
    return prefix + name


def comparison_figure(table: pd.DataFrame, title: str = "Experiment comparison", digits: int = 3) -> Figure:
    """The table drawn as an image: one row per metric (short names), one column per experiment,
    cells shaded by their rank in the row (greener is better; lower is better for losses), best in
    bold. Save with ``bbox_inches="tight"``."""
    labels = [" | ".join([*map(str, k[:-1]), short_metric_name(str(k[-1]))]) if isinstance(k, tuple)
              else short_metric_name(str(k)) for k in table.index]
    n_rows = max(len(table), 1)
    fig = Figure(figsize=(2.2 + 1.1 * max(len(table.columns), 1), 0.19 * n_rows + 0.5))
    ax = fig.add_axes((0.0, 0.0, 1.0, 0.95))
    ax.axis("off")
    fig.suptitle(title)
    if table.empty:
        ax.text(0.5, 0.5, "no evaluated experiment", ha="center", va="center")
        return fig
    cell_text, colours, bold = [], [], []
    for key, row in table.iterrows():
        lower = _lower_is_better(key)
        values = row.to_numpy(dtype=float)
        finite = np.isfinite(values)
        span = (np.nanmax(values) - np.nanmin(values)) if finite.any() else 0.0
        texts, cols = [], []
        for v in values:
            texts.append("n/a" if not np.isfinite(v) else f"{v:.{digits}f}")
            if not np.isfinite(v) or span <= 0:
                cols.append((1.0, 1.0, 1.0))
            else:
                good = (v - np.nanmin(values)) / span
                good = 1.0 - good if lower else good
                shade = 1.0 - 0.45 * good
                cols.append((shade, 1.0 - 0.2 * good, shade))
        cell_text.append(texts)
        colours.append(cols)
        bold.append(_best_columns(row, lower))
    tab = ax.table(cellText=cell_text, cellColours=colours, rowLabels=labels,
                   colLabels=[str(c) for c in table.columns], loc="upper center", cellLoc="right")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.auto_set_column_width(list(range(-1, len(table.columns))))
    for r, cols in enumerate(bold):
        for c, name in enumerate(table.columns):
            if name in cols:
                tab[r + 1, c].get_text().set_fontweight("bold")
    return fig


def pr_comparison_figure(curves_by_split: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]]) -> Figure:
    """Precision-recall curves at IoU 0.5 per class (columns) and split (rows), one line per experiment.

    ``curves_by_split[split][experiment][class]`` is COCO's interpolated precision at
    its 101 recall points (as stored in ``metrics.json`` under ``pr_curves``).
    """
    splits = list(curves_by_split) or ["-"]
    classes = list(CLASS_NAMES)
    fig = Figure(figsize=(4.2 * len(classes), 3.4 * len(splits) + 0.4), layout="constrained")
    axes = fig.subplots(len(splits), len(classes), squeeze=False)
    recall = np.linspace(0.0, 1.0, 101)
    for r, split in enumerate(splits):
        by_exp = curves_by_split.get(split, {})
        for c, cls in enumerate(classes):
            ax = axes[r, c]
            drawn = 0
            for exp, curves in by_exp.items():
                precision = curves.get(cls)
                if precision is None:
                    continue
                p = np.asarray([np.nan if v is None else v for v in precision], dtype=float)
                x = recall if len(p) == len(recall) else np.linspace(0, 1, len(p))
                ax.plot(x, p, lw=1.8, label=f"{exp} (AP50 {np.nanmean(p):.3f})")
                drawn += 1
            if not drawn:
                ax.text(0.5, 0.5, "no ground truth", ha="center", va="center")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            ax.set_title(f"{split}: {cls}", fontsize=10)
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
            if drawn:
                ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("precision-recall at IoU 0.5")
    return fig
