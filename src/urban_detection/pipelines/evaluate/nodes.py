"""Nodes of the evaluate pipeline: export, evaluate on val/test, compare experiments.

Per experiment (one Kedro namespace each, like the train pipeline):

* ``export_<name>``: the newest checkpoint as ``model.keras`` and a TF SavedModel in
  ``data/06_models/<name>/export`` (``<name>.export_info``);
* ``evaluate_<name>``: detections and ground truth as COCO JSON
  (``<name>.coco_files`` -> ``data/07_model_output/<name>/``), COCO metrics, per-class
  AP, losses and the large-box filter's effect (``<name>.metrics`` ->
  ``data/08_reporting/<name>/metrics.json``), PR curves and example frames
  (``<name>.evaluation_figures``). Everything also goes to the experiment's MLflow
  child run.

Experiments without a checkpoint (not trained) return a small "skipped" dict at once.
``compare_experiments`` then lays out all evaluated experiments side by side.
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from urban_detection.pipelines.common import is_selected, load_partition

log = logging.getLogger(__name__)




def checkpoint_step(checkpoint: str | None) -> int | None:
    """``.../ckpt-400`` -> 400."""
    match = re.search(r"-(\d+)$", str(checkpoint or ""))
    return int(match.group(1)) if match else None


def model_source(name: str, train_result: dict | None, experiment_configs: dict | None, models_dir: str | Path) -> dict:
    """Where experiment ``name``'s trained weights are and how to build its model.

    Prefers the complete weights file the train pipeline writes at the end of training
    (``<model_dir>/final.weights.h5``) unless a newer checkpoint exists (an interrupted
    run), else the newest checkpoint. Returns ``{"available": True, "weights_file" |
    "checkpoint", "step", "model" (arch, image_size, overrides), "train", "model_dir"}``
    or ``{"available": False, "reason"}`` when nothing was trained or the config is missing.
    """
    import tensorflow as tf

    result = train_result or {}
    model_dir = Path(result.get("model_dir") or Path(models_dir) / name)
    checkpoint_dir = Path(result.get("checkpoint_dir") or model_dir / "checkpoints")
    checkpoint = tf.train.latest_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None
    weights = Path(result.get("weights") or model_dir / "final.weights.h5")
    weights = weights if weights.is_file() else None
    if checkpoint is None and weights is None:
        why = "not selected for training" if result.get("selected") is False else "training produced none"
        return {"available": False, "reason": f"no checkpoint in {checkpoint_dir} ({why})"}
    config = result.get("config")
    if config is None and experiment_configs and name in experiment_configs:
        config = load_partition(experiment_configs[name])
    spec = dict((config or {}).get("model") or {})
    spec.setdefault("arch", result.get("arch"))
    spec.setdefault("image_size", result.get("image_size"))
    if not spec.get("arch") or not spec.get("image_size"):
        return {"available": False, "reason": f"no resolved config for {name} (data/05_model_input/experiment_configs)"}
    if weights is not None and checkpoint is not None:
        index = Path(checkpoint + ".index")
        if index.exists() and index.stat().st_mtime > weights.stat().st_mtime + 1:
            log.warning("experiment %s: checkpoint %s is newer than %s (interrupted training?); using the checkpoint",
                        name, checkpoint, weights)
            weights = None
    step = checkpoint_step(checkpoint) if checkpoint else None
    if weights is not None and result.get("final_step") is not None:
        step = int(result["final_step"])
    source = {"available": True, "step": step, "model": spec, "train": dict((config or {}).get("train") or {}),
              "model_dir": str(model_dir)}
    source.update({"weights_file": str(weights)} if weights is not None else {"checkpoint": checkpoint})
    return source


def load_model(source: dict):
    """The experiment's detector (float32) with its trained weights."""
    from urban_detection.detection.evaluate import load_trained_model

    spec = source["model"]
    return load_trained_model(spec["arch"], spec["image_size"], weights_file=source.get("weights_file"),
                              checkpoint=source.get("checkpoint"), overrides=spec.get("overrides"))


def split_paths(split_manifest: pd.DataFrame, frame_index: pd.DataFrame, split: str) -> list[str]:
    """The trip TFRecords of ``split`` (sorted; empty when the split has no trip)."""
    trips = set(split_manifest.loc[split_manifest["split"] == split, "trip"])
    return sorted(frame_index.loc[frame_index["trip"].isin(trips), "path"].astype(str).unique())


def _skipped(name: str, reason: str) -> dict:
    log.info("experiment %s: %s; skipped", name, reason)
    return {"experiment": name, "evaluated": False, "reason": reason}


# --------------------------------------------------------------------------- export


def make_export_node(name: str) -> Callable:
    """The export node of experiment ``name``."""

    def export(train_result: dict, experiment_configs: dict, params: dict, paths: dict) -> dict:
        from urban_detection.detection.train import export_model

        params = params or {}
        if not is_selected(name, params):
            return {"experiment": name, "exported": False, "reason": "not in evaluate.experiments"}
        source = model_source(name, train_result, experiment_configs, paths["models"])
        if not source["available"]:
            log.info("experiment %s: %s; nothing to export", name, source["reason"])
            return {"experiment": name, "exported": False, "reason": source["reason"]}
        start = time.perf_counter()
        model = load_model(source)
        out_dir = Path(source["model_dir"]) / "export"
        files = export_model(model, out_dir, image_size=source["model"]["image_size"])
        info = {
            "experiment": name, "exported": True, "weights": source.get("weights_file") or source.get("checkpoint"),
            "step": source["step"],
            "arch": source["model"]["arch"], "image_size": int(source["model"]["image_size"]),
            "export_dir": str(out_dir), **files, "seconds": round(time.perf_counter() - start, 2),
        }
        log.info("experiment %s: exported step %s to %s", name, source["step"], out_dir)
        if (params.get("export") or {}).get("log_to_mlflow", True):
            _log_export(name, source["model_dir"], info)
        return info

    export.__name__ = export.__qualname__ = f"export_{name}"
    return export


def _log_export(name: str, model_dir: str, info: dict) -> None:
    import mlflow

    from urban_detection.tracking import experiment_run

    with experiment_run(name, model_dir):
        mlflow.log_dict(info, "export/export_info.json")
        mlflow.log_artifact(info["keras"], "export")
        mlflow.log_artifacts(info["saved_model"], "export/saved_model")


# --------------------------------------------------------------------------- evaluate


def flat_split_metrics(split_doc: dict) -> dict[str, float | None]:
    """The numbers of one split of a ``metrics.json``: COCO metrics, AP after the large-box filter
    (mAP, AP50, AP75, per-class AP), losses."""
    from urban_detection.detection.evaluate import FILTERED_PREFIX, REPORT_ORDER

    flat = dict(split_doc.get("metrics") or {})
    filtered = (split_doc.get("large_box_filter") or {}).get("metrics") or {}
    flat.update({FILTERED_PREFIX + k: v for k, v in filtered.items() if FILTERED_PREFIX + k in REPORT_ORDER})
    flat.update({k: v for k, v in (split_doc.get("losses") or {}).items() if k.startswith("loss/")})
    return flat


def make_evaluate_node(name: str) -> Callable:
    """The evaluation node of experiment ``name``."""

    def evaluate(train_result: dict, experiment_configs: dict, split_manifest: pd.DataFrame,
                 frame_index: pd.DataFrame, params: dict, paths: dict) -> tuple[dict, dict, dict]:
        params = params or {}
        if not is_selected(name, params):
            return _skipped(name, "not in evaluate.experiments"), {}, {}
        source = model_source(name, train_result, experiment_configs, paths["models"])
        if not source["available"]:
            return _skipped(name, source["reason"]), {}, {}
        model = load_model(source)
        doc, files, figures = evaluate_model(model, name, source, split_manifest, frame_index, params)
        _log_evaluation(name, source["model_dir"], doc, files, figures)
        return doc, files, figures

    evaluate.__name__ = evaluate.__qualname__ = f"evaluate_{name}"
    return evaluate


def evaluate_model(model, name: str, source: dict, split_manifest: pd.DataFrame, frame_index: pd.DataFrame,
                   params: dict) -> tuple[dict, dict, dict]:
    """Evaluate ``model`` on each split of ``params["splits"]``; returns ``(metrics doc, COCO files, figures)``."""
    from urban_detection.detection.coco import pr_curve_figure
    from urban_detection.detection.data import make_dataset
    from urban_detection.detection.evaluate import (
        evaluate_detections,
        evaluation_losses,
        example_figures,
        json_safe,
        predict_split,
    )

    size = int(source["model"]["image_size"])
    batch_size = int(params.get("batch_size", 8))
    box_filter = params.get("large_box_filter") or {}
    max_area = dict(box_filter.get("max_area_frac") or {}) if box_filter.get("enabled") else None
    examples = params.get("examples") or {}
    loss_kwargs = {k: source["train"][k] for k in ("focal_alpha", "focal_gamma", "smooth_l1_beta") if k in source["train"]}
    doc: dict[str, Any] = {"experiment": name, "evaluated": True,
                           "weights": source.get("weights_file") or source.get("checkpoint"),
                           "step": source["step"], "arch": source["model"]["arch"], "image_size": size, "splits": {}}
    files: dict[str, Any] = {}
    figures: dict[str, Any] = {}
    for split in params.get("splits") or ["val", "test"]:
        paths = split_paths(split_manifest, frame_index, split)
        if not paths:
            log.warning("experiment %s: split %s has no trip; not evaluated", name, split)
            continue
        start = time.perf_counter()
        gt_frames, det_frames = predict_split(model, paths, size, batch_size, max_frames=params.get("max_frames"))
        inference_s = time.perf_counter() - start
        if not gt_frames:
            log.warning("experiment %s: split %s has no readable frame; not evaluated", name, split)
            continue
        result = evaluate_detections(gt_frames, det_frames, max_area, pr_iou=float(params.get("pr_iou", 0.5)))
        start = time.perf_counter()
        loss_batches = params.get("loss_batches")
        if params.get("max_frames") and not loss_batches:
            loss_batches = -(-int(params["max_frames"]) // batch_size)
        losses = evaluation_losses(model, make_dataset(paths, size, batch_size, training=False), loss_batches,
                                   **loss_kwargs)
        loss_s = time.perf_counter() - start
        split_doc: dict[str, Any] = {
            "trips": len(paths),
            "frames": len(gt_frames),
            "ground_truth_boxes": len(result["ground_truth"]["annotations"]),
            "detections": len(result["detections"]),
            "metrics": result["metrics"],
            "losses": losses,
            "pr_curves": {cls: p for cls, (_, p) in result["pr_curves"].items()},
            "skipped_ground_truth": result["ground_truth"]["info"]["skipped"],
            "timing": {"inference_s": inference_s, "coco_s": result["coco_seconds"], "losses_s": loss_s,
                       "frames_per_sec": len(gt_frames) / inference_s if inference_s > 0 else None},
        }
        files[f"{split}_ground_truth"] = result["ground_truth"]
        files[f"{split}_detections"] = result["detections"]
        if "filtered" in result:
            filtered = result["filtered"]
            split_doc["large_box_filter"] = {k: filtered[k] for k in ("metrics", "dropped", "delta", "max_area_frac")}
            files[f"{split}_detections_filtered"] = filtered["detections"]
        figures[f"pr_curves_{split}.png"] = pr_curve_figure(result["pr_curves"], title=f"{name} {split}: IoU 0.5")
        if split == examples.get("split", "test") and int(examples.get("count", 4)) > 0:
            shown = example_figures(gt_frames, det_frames, int(examples.get("count", 4)),
                                    float(examples.get("score_threshold", 0.3)), title_prefix=f"{name} {split}: ")
            figures.update({f"{split}_{k}": fig for k, fig in shown.items()})
        doc["splits"][split] = split_doc
        m = result["metrics"]
        log.info("experiment %s %s (%d frames): mAP %.4f, AP50 %.4f, AR@100 %.4f, loss %.4f; inference %.1fs, COCO %.1fs",
                 name, split, len(gt_frames), m["DetectionBoxes_Precision/mAP"],
                 m["DetectionBoxes_Precision/mAP@.50IOU"], m["DetectionBoxes_Recall/AR@100"], losses["loss/total"],
                 inference_s, result["coco_seconds"])
    if not doc["splits"]:
        doc.update(evaluated=False, reason=f"no frames in splits {params.get('splits')}")
    return json_safe(doc), files, figures


def _log_evaluation(name: str, model_dir: str, doc: dict, files: dict, figures: dict) -> None:
    import mlflow

    from urban_detection.tracking import experiment_run, log_metrics

    with experiment_run(name, model_dir):
        for split, split_doc in doc.get("splits", {}).items():
            numbers = flat_split_metrics(split_doc)
            numbers.update({f"large_box_filter/dropped/{k}": v
                            for k, v in ((split_doc.get("large_box_filter") or {}).get("dropped") or {}).items()})
            numbers.update({f"timing/{k}": v for k, v in split_doc["timing"].items()})
            log_metrics({f"{split}/{k}": v for k, v in numbers.items()}, step=doc.get("step"))
        mlflow.log_dict(doc, "evaluation/metrics.json")
        for key, obj in files.items():
            mlflow.log_dict(obj, f"evaluation/coco/{key}.json")
        for key, fig in figures.items():
            mlflow.log_figure(fig, f"evaluation/figures/{key}")


# --------------------------------------------------------------------------- comparison


def compare_experiments(params: dict, *metrics_docs: dict):
    """All evaluated experiments side by side: table (rows: split and metric, columns:
    experiments) as CSV rows and Markdown, the table as a figure, and PR curves per class."""
    from urban_detection.detection.evaluate import (
        comparison_figure,
        comparison_markdown,
        comparison_table,
        pr_comparison_figure,
    )

    docs = [d for d in metrics_docs if d and d.get("evaluated")]
    skipped = [d.get("experiment", "?") for d in metrics_docs if d and not d.get("evaluated")]
    splits = list(dict.fromkeys(s for s in (params or {}).get("splits") or ["val", "test"]))
    parts = {}
    curves: dict[str, dict] = {}
    for split in splits:
        by_exp = {d["experiment"]: flat_split_metrics(d["splits"][split]) for d in docs if split in d.get("splits", {})}
        if by_exp:
            parts[split] = comparison_table(by_exp)
            curves[split] = {d["experiment"]: d["splits"][split].get("pr_curves") or {}
                             for d in docs if split in d.get("splits", {})}
    if parts:
        table = pd.concat(parts, names=["split", "metric"])
    else:
        table = pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=["split", "metric"]))
    notes = [f"{d['experiment']}: step {d.get('step')}, {d.get('arch')} at {d.get('image_size')} px, "
             + ", ".join(f"{s} {v['frames']} frames" for s, v in d["splits"].items()) for d in docs]
    if skipped:
        notes.append("not evaluated (no checkpoint): " + ", ".join(skipped))
    if not docs:
        notes.append("no experiment was evaluated")
    markdown = comparison_markdown(table, notes=notes)
    figure = comparison_figure(table)
    pr_figure = pr_comparison_figure(curves)
    log.info("comparison of %d experiment(s): %s", len(docs), ", ".join(d["experiment"] for d in docs) or "none")
    return table.reset_index(), markdown, figure, pr_figure
