"""Evaluation of a trained detector on a split: detections, COCO metrics, losses, reports.

No Kedro here. The flow for one split is::

    gt_frames, det_frames = predict_split(model, paths, image_size, batch_size)
    result = evaluate_detections(gt_frames, det_frames, max_area_frac)   # COCO JSON + metrics
    losses = evaluation_losses(model, make_dataset(paths, ..., training=False))

Per-frame records follow :mod:`.coco`: ground truth ``{image_id, source_id, path,
height, width, boxes, labels}``, detections ``{image_id, source_id, height, width,
boxes, labels, scores}`` with normalised ``[ymin, xmin, ymax, xmax]`` boxes and
label-map ids (1 vehicle, 2 pedestrian, 4 cyclist). Image ids are ``1..N`` in the
order the frames are read (files in the order given, records in file order), so
the same files always give the same ids.

Across experiments, :func:`comparison_table` lays the numbers out as the original
study did (rows: metrics, columns: experiments), and :func:`comparison_markdown` /
:func:`comparison_figure` render that table.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
from matplotlib.figure import Figure

from urban_detection.detection.coco import (
    PER_CLASS_AP,
    PER_CLASS_AP50,
    SUMMARY_METRICS,
    coco_metrics,
    coco_metrics_and_curves,
    filter_large_boxes,
    to_coco_detections,
    to_coco_ground_truth,
)
from urban_detection.detection.waymo_ap import MAP_KEY as WAYMO_MAP
from urban_detection.detection.waymo_ap import METRIC_NAMES as WAYMO_METRICS
from urban_detection.detection.waymo_ap import waymo_metrics
from urban_detection.waymo.example import CLASS_NAMES

log = logging.getLogger(__name__)

LOSS_METRICS: tuple[str, ...] = ("loss/classification", "loss/localization", "loss/regularization", "loss/total")
PER_CLASS_METRICS: tuple[str, ...] = tuple(PER_CLASS_AP.format(c) for c in CLASS_NAMES) + tuple(
    PER_CLASS_AP50.format(c) for c in CLASS_NAMES
)
AP_METRICS: tuple[str, ...] = SUMMARY_METRICS[:6] + PER_CLASS_METRICS + WAYMO_METRICS
FILTERED_PREFIX = "large_box_filter/"
# Row order of the comparison table; other metrics follow in first-seen order.
REPORT_ORDER: tuple[str, ...] = (
    SUMMARY_METRICS
    + PER_CLASS_METRICS
    + WAYMO_METRICS
    + tuple(FILTERED_PREFIX + m for m in SUMMARY_METRICS[:3] + PER_CLASS_METRICS[:3] + (WAYMO_MAP,))
    + LOSS_METRICS
)


# --------------------------------------------------------------------------- loading


def load_trained_model(
    arch: str,
    image_size: int,
    weights_file: str | Path | None = None,
    checkpoint: str | None = None,
    overrides: Mapping[str, Any] | None = None,
):
    """Build ``arch`` at ``image_size`` (float32) and load trained weights into it.

    ``weights_file`` (a complete ``.weights.h5`` / ``.keras`` file, e.g. the train
    pipeline's ``final.weights.h5``) is preferred; otherwise the tf.train
    ``checkpoint`` prefix (which holds every weight by path) is restored.
    """
    from urban_detection.detection.model import build_detector, load_initial_weights

    model = build_detector(arch, image_size=int(image_size), **dict(overrides or {}))
    if weights_file is not None:
        load_initial_weights(model, str(weights_file))
    elif checkpoint is not None:
        load_initial_weights(model, checkpoint)
    else:
        raise ValueError("load_trained_model needs weights_file or checkpoint")
    return model


# --------------------------------------------------------------------------- inference


def is_keras_model(model: Any) -> bool:
    return hasattr(model, "predict_on_batch")


def detect_batch(model: Any, images: Any, image_size: int | None = None,
                 pad_to: int | None = None) -> list[dict[str, np.ndarray]]:
    """Detections of one batch ``[B, H, W, 3]`` (uint8, or float in [0, 255]) in project conventions.

    ``model`` is a Keras detector (images are resized to its ``image_size`` input when
    needed) or an exported detector, i.e. a callable on uint8 images returning the
    Object Detection API outputs (``detection_boxes``, ``detection_scores``,
    ``detection_classes``, ``num_detections``) such as
    :class:`urban_detection.detection.train.ExportedDetector`. Each result has
    ``boxes`` (N, 4) normalised yxyx, ``scores`` (N,) and ``labels`` (N,) label ids,
    best first. ``pad_to`` pads a short (last) batch with blank images for a Keras
    model so that its predict function is not traced again for a new batch shape.
    """
    if is_keras_model(model):
        from urban_detection.detection.model import detect

        x = tf.cast(tf.convert_to_tensor(images), tf.float32)
        size = image_size or model.input_shape[1]
        if size and tuple(x.shape[1:3]) != (size, size):
            x = tf.clip_by_value(tf.image.resize(x, [size, size]), 0.0, 255.0)
        n = int(x.shape[0])
        if pad_to and n < pad_to:
            x = tf.concat([x, tf.zeros([pad_to - n, *x.shape[1:]], x.dtype)], axis=0)
        return detect(model, x)[:n]
    x = tf.convert_to_tensor(images)
    if x.dtype != tf.uint8:
        x = tf.cast(tf.clip_by_value(tf.round(tf.cast(x, tf.float32)), 0.0, 255.0), tf.uint8)
    out = model(x)
    return od_api_to_records(out)


def od_api_to_records(outputs: Mapping[str, Any]) -> list[dict[str, np.ndarray]]:
    """Object Detection API style outputs (padded batch arrays) to per-image records."""
    from urban_detection.detection.model import split_detections

    return split_detections(outputs["detection_boxes"], outputs["detection_scores"],
                            outputs["detection_classes"], outputs["num_detections"])


def predict_split(
    model: Any,
    tfrecord_paths: str | Path | Sequence[str | Path],
    image_size: int,
    batch_size: int,
    max_frames: int | None = None,
    progress_every_s: float = 10.0,
) -> tuple[list[dict], list[dict]]:
    """Run ``model`` over every frame of ``tfrecord_paths``; return ``(gt_frames, det_frames)``.

    Frames are resized to ``image_size`` squared for the model (as in training);
    boxes come back normalised, so they apply to the original frame. Ground truth is
    taken from the records unchanged (clipped to [0, 1]); unknown labels are left for
    :func:`~.coco.to_coco_ground_truth` to count. Records that do not parse are
    skipped with a warning by :func:`~.data.make_inference_dataset`. ``max_frames``
    stops early (for quick checks). Progress (frames, frames/s) is logged.
    """
    from urban_detection.detection.data import make_inference_dataset

    paths = [str(tfrecord_paths)] if isinstance(tfrecord_paths, (str, Path)) else [str(p) for p in tfrecord_paths]
    if not paths:
        raise ValueError("no TFRecord paths to predict on")
    gt_frames: list[dict] = []
    det_frames: list[dict] = []
    start = last = time.perf_counter()
    for path in paths:
        if max_frames is not None and len(gt_frames) >= max_frames:
            break
        ds = make_inference_dataset([path], image_size, batch_size)
        for images, meta in ds:
            if max_frames is not None and len(gt_frames) >= max_frames:
                break
            dets = detect_batch(model, images, image_size, pad_to=batch_size)
            num = meta["num_boxes"].numpy()
            for i, det in enumerate(dets):
                if max_frames is not None and len(gt_frames) >= max_frames:
                    break
                image_id = len(gt_frames) + 1
                n = int(num[i])
                common = {
                    "image_id": image_id,
                    "source_id": meta["source_id"][i].numpy().decode(errors="replace"),
                    "height": int(meta["height"][i]),
                    "width": int(meta["width"][i]),
                }
                gt_frames.append(
                    {
                        **common,
                        "path": path,
                        "boxes": meta["boxes"][i, :n].numpy().astype(np.float32),
                        "labels": meta["labels"][i, :n].numpy().astype(np.int32),
                    }
                )
                det_frames.append({**common, **det})
            now = time.perf_counter()
            if now - last >= progress_every_s:
                last = now
                log.info("predicted %d frames (%.1f frames/s)", len(gt_frames), len(gt_frames) / (now - start))
    elapsed = time.perf_counter() - start
    log.info("predicted %d frames from %d file(s) in %.1fs", len(gt_frames), len(paths), elapsed)
    return gt_frames, det_frames


def evaluation_losses(model: Any, dataset: tf.data.Dataset, max_batches: int | None = None, **loss_kwargs) -> dict:
    """Mean classification, localization, regularization and total loss over ``dataset``.

    ``dataset`` yields ``(images, {"boxes", "labels"})`` as
    :func:`~.data.make_dataset` with ``training=False``. The model is compiled with
    the training losses (:func:`~.train.compile_detector`; ``loss_kwargs`` are its
    ``focal_alpha``, ``focal_gamma``, ``smooth_l1_beta``) and evaluated in inference
    mode, exactly as the validation losses during training. Keys ``loss/classification``,
    ``loss/localization``, ``loss/regularization``, ``loss/total`` (and ``batches``).
    """
    import keras

    from urban_detection.detection.train import compile_detector, evaluate_losses

    compile_detector(model, keras.optimizers.SGD(learning_rate=0.0), **loss_kwargs)
    return evaluate_losses(model, dataset, max_batches)


# --------------------------------------------------------------------------- COCO


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
    minus raw, for the AP metrics)}``.
    """
    start = time.perf_counter()
    gt = to_coco_ground_truth(gt_frames)
    dets = to_coco_detections(det_frames, gt)
    coco, curves = coco_metrics_and_curves(gt, dets, pr_iou=pr_iou)
    metrics = {**coco, **waymo_metrics(gt_frames, det_frames)}
    result: dict[str, Any] = {"ground_truth": gt, "detections": dets, "metrics": metrics, "pr_curves": curves}
    if max_area_frac:
        dropped: dict[str, int] = {}
        filtered_frames = filter_large_boxes(list(det_frames), dict(max_area_frac), dropped)
        if sum(dropped.values()):
            fdets = to_coco_detections(filtered_frames, gt)
            fmetrics = {**coco_metrics(gt, fdets), **waymo_metrics(gt_frames, filtered_frames)}
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
    the ground-truth records, see :func:`predict_split`). Keys are
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


# --------------------------------------------------------------------------- reports


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
                        notes: Sequence[str] = ()) -> str:
    """The table as GitHub Markdown: one section per split when the index is ``(split, metric)``,
    best value of each row in bold (highest, lowest for losses), undefined values as ``n/a``."""
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes]
    if notes:
        lines.append("")
    if isinstance(table.index, pd.MultiIndex):
        groups = [(str(k), table.xs(k, level=0)) for k in table.index.get_level_values(0).unique()]
    else:
        groups = [(None, table)]
    for name, part in groups:
        if name is not None:
            lines += [f"## {name}", ""]
        header = ["metric", *[str(c) for c in part.columns]]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" + "---:|" * len(part.columns))
        for key, row in part.iterrows():
            best = _best_columns(row, _lower_is_better(key))
            cells = []
            for col, value in row.items():
                text = "n/a" if pd.isna(value) else f"{value:.{digits}f}"
                cells.append(f"**{text}**" if col in best else text)
            lines.append(f"| {_row_label(key)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


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
