"""Nodes of the evaluate pipeline: export, evaluate on val/test, compare experiments.

Per selected experiment (one Kedro namespace each, like the train pipeline):

* ``export_<name>``: ``<name>.model`` -> ``<name>.export`` (``model.keras`` and a TF
  SavedModel, written by the export dataset);
* ``evaluate_<name>``: detections and ground truth as COCO JSON (``<name>.coco_files``),
  COCO metrics, per-class AP, losses and the large-box filter's effect
  (``<name>.metrics``), PR curves and example frames (``<name>.evaluation_figures``).
  The model's provenance must match the current config, training data and selection (val) frames, else the
  node refuses: an old model's numbers never appear under a new run. Everything also
  goes to the MLflow run the model was trained in.

``compare_experiments`` (:mod:`.compare`) then lays out the run's experiments side by side.
"""
from __future__ import annotations

import io
import logging
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from urban_detection import files
from urban_detection.datasets.folders import FolderWrite, source_params
from urban_detection.detection.provenance import StaleModelError, check_provenance, short
from urban_detection.detection.trained import TrainedDetector
from urban_detection.pipelines.evaluate.compare import HEADLINE, SELECTION_SPLIT, flat_split_metrics
from urban_detection.waymo.ingest import ingest_files
from urban_detection.waymo.trips import SplitLeakError, Trips

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- export


def make_export_node(name: str) -> Callable:
    """The export node of experiment ``name``."""

    def export(model: TrainedDetector) -> TrainedDetector:
        """Hand the trained detector to ``<name>.export``, which writes ``model.keras`` and the SavedModel."""
        log.info("experiment %s: exporting step %d (%s)", name, model.step, short(model.fingerprint))
        return model

    export.__name__ = export.__qualname__ = f"export_{name}"
    return export


# --------------------------------------------------------------------------- evaluate


def make_evaluate_node(name: str) -> Callable:
    """The evaluation node of experiment ``name``."""

    def evaluate(model: TrainedDetector, config: dict, trips: Trips, eval_trips: Trips,
                 split_manifest: pd.DataFrame, params: dict) -> tuple:
        check_provenance(model, config, trips, split_manifest)
        return _outputs(model, *evaluate_model(model, eval_trips, split_manifest, params or {}, ingested=trips),
                        params or {})

    evaluate.__name__ = evaluate.__qualname__ = f"evaluate_{name}"
    return evaluate


def make_stored_reference_node(name: str) -> Callable:
    """The evaluation node of ``evaluate.reference`` when this run does not train it: its stored model,
    checked against the current training data and selection frames under its own stored config."""

    def evaluate_stored(model: TrainedDetector, trips: Trips, eval_trips: Trips, split_manifest: pd.DataFrame,
                        params: dict) -> tuple:
        check_provenance(model, model.config, trips, split_manifest)
        log.info("reference %s: the stored model %s (step %d), not trained in this run", name, short(model.fingerprint),
                 model.step)
        doc, files, figures, tables = evaluate_model(model, eval_trips, split_manifest, params or {}, ingested=trips)
        doc["stored_reference"] = True
        return _outputs(model, doc, files, figures, tables, params or {})

    evaluate_stored.__name__ = evaluate_stored.__qualname__ = f"evaluate_stored_{name}"
    return evaluate_stored


def _outputs(model: TrainedDetector, doc: dict, files: dict, figures: dict, tables: dict, params: dict) -> tuple:
    """An evaluation node's outputs: each figure drawn once as PNG, everything logged to the model's MLflow run."""
    figures = png_figures(figures, params.get("figure_dpi", 110))
    _log_evaluation(model, doc, files, figures, tables, log_files=bool(params.get("log_coco_files", False)))
    return doc, files, figures, tables["draws"], tables["slices"], tables["per_trip"]


def evaluate_model(trained: TrainedDetector, trips: Trips, split_manifest: pd.DataFrame,
                   params: dict, ingested: Trips | None = None) -> tuple[dict, dict, dict, dict[str, pd.DataFrame]]:
    """Evaluate ``model`` on each split of ``params["splits"]``; returns ``(metrics doc, COCO files, figures,
    tables)``. ``tables``: ``draws`` (one row per split, slice and trip draw of ``evaluate.bootstrap``, one
    column per metric, for paired comparisons between experiments), ``slices`` (headline metrics with
    intervals per time of day, weather and object size) and ``per_trip`` (each trip alone).

    COCO metrics, PR curves, confusion matrices, examples and the losses (the training losses, from the
    same forward pass as the detections) come from every frame of ``trips`` (the evaluation frames).
    ``ingested``: the ingested trips, whose index tells which trips' time of day was estimated (else
    ``trips``'s)."""
    from urban_detection.detection.coco import pr_curve_figure
    from urban_detection.detection.confusion import confusion_figure, confusion_matrix
    from urban_detection.detection.results_figure import results_figure
    from urban_detection.waymo.example import CLASS_NAMES
    from urban_detection.detection.evaluate import evaluate_detections, json_safe
    from urban_detection.detection.predict import predict_split_and_losses
    from urban_detection.detection.report import example_figures, short_metric_name
    from urban_detection.detection.errors import error_gallery
    from urban_detection.detection.slices import trip_slices

    model, name, size = trained.model, trained.name, trained.image_size
    batch_size = int(params.get("batch_size", 8))
    box_filter = params.get("large_box_filter") or {}
    max_area = dict(box_filter.get("max_area_frac") or {}) if box_filter.get("enabled") else None
    examples = params.get("examples") or {}
    tcfg = trained.config.get("train") or {}
    loss_kwargs = {k: tcfg[k] for k in ("focal_alpha", "focal_gamma", "smooth_l1_beta") if k in tcfg}
    doc: dict[str, Any] = {"experiment": name, "evaluated": True, "step": trained.step, "arch": trained.arch,
                           "image_size": size, "fingerprint": trained.fingerprint, "run_id": trained.run_id,
                           "provenance": trained.provenance, "splits": {}}
    files: dict[str, Any] = {}
    figures: dict[str, Any] = {}
    tables: dict[str, list] = {"draws": [], "slices": [], "per_trip": []}
    bootstrap = bootstrap_settings(params)
    conditions = trip_conditions(split_manifest, ingested or trips)
    matcher = str(params.get("waymo_matcher") or "hungarian")
    doc["waymo_matcher"] = matcher
    for split in params.get("splits") or ["val", "test"]:
        paths = trips.split_paths(split_manifest, split)
        if not paths:
            log.warning("experiment %s: split %s has no trip; not evaluated", name, split)
            continue
        start = time.perf_counter()
        # one forward pass per batch: the detections and the training losses of the same frames
        gt_frames, det_frames, losses = predict_split_and_losses(model, paths, size, batch_size,
                                                                 max_frames=params.get("max_frames"), **loss_kwargs)
        inference_s = time.perf_counter() - start
        if not gt_frames:
            log.warning("experiment %s: split %s has no readable frame; not evaluated", name, split)
            continue
        result = evaluate_detections(gt_frames, det_frames, max_area, pr_iou=float(params.get("pr_iou", 0.5)),
                                     bootstrap=bootstrap, matcher=matcher,
                                     slices=None if split == SELECTION_SPLIT else  # slices judge, val only selects
                                     trip_slices(conditions[conditions["split"] == split]))
        split_doc: dict[str, Any] = {
            "trips": len(paths),
            "frames": len(gt_frames),
            "ground_truth_boxes": len(result["ground_truth"]["annotations"]),
            "detections": len(result["detections"]),
            "metrics": result["metrics"],
            "losses": losses,
            "pr_curves": {cls: p for cls, (_, p) in result["pr_curves"].items()},
            "skipped_ground_truth": result["ground_truth"]["info"]["skipped"],
            "timing": {"inference_s": inference_s, "coco_s": result["coco_seconds"],
                       "frames_per_sec": len(gt_frames) / inference_s if inference_s > 0 else None},
        }
        if "bootstrap" in result:
            figures[f"slices_{split}.png"] = _bootstrap_outputs(split, result, gt_frames, conditions, split_doc, tables)
        files[f"{split}_ground_truth"] = result["ground_truth"]
        # made when saved (PartitionedDataset's lazy save): one split's dicts at a time, not all of them held
        files[f"{split}_detections"] = partial(list, result["detections"])
        if "filtered" in result:
            filtered = result["filtered"]
            split_doc["large_box_filter"] = {k: filtered[k] for k in ("metrics", "dropped", "delta", "max_area_frac")}
            files[f"{split}_detections_filtered"] = partial(list, filtered["detections"])
        figures[f"pr_curves_{split}.png"] = pr_curve_figure(result["pr_curves"], title=f"{name} {split}: IoU 0.5")
        threshold = float(examples.get("score_threshold", 0.3))
        matrix = confusion_matrix(gt_frames, det_frames, threshold)
        split_doc["confusion_matrix"] = {"score_threshold": threshold, "iou_threshold": 0.5,
                                         "classes": [*CLASS_NAMES, "background"], "counts": matrix.tolist()}
        figures[f"confusion_{split}.png"] = confusion_figure(
            matrix, title=f"{name} {split}: score >= {threshold:g}, IoU >= 0.5")
        if split == examples.get("split", "test") and int(examples.get("count", 4)) > 0:
            shown = example_figures(gt_frames, det_frames, int(examples.get("count", 4)),
                                    float(examples.get("score_threshold", 0.3)), title_prefix=f"{name} {split}: ")
            figures.update({f"{split}_{k}": fig for k, fig in shown.items()})
            trip_info = conditions.set_index("trip")[[c for c in ("time_of_day", "weather", "time_of_day_estimated")
                                                      if c in conditions]]
            gallery = error_gallery(gt_frames, det_frames, threshold, int(examples.get("count", 4)),
                                    trip_info.to_dict("index"), title_prefix=f"{name} {split}: ")
            figures.update({f"{split}_{k}": fig for k, fig in gallery.items()})
        doc["splits"][split] = split_doc
        log.info("experiment %s %s (%d frames, %d trips): %s; loss %.4f; inference %.1fs, COCO %.1fs, bootstrap %.1fs",
                 name, split, len(gt_frames), len(paths), ", ".join(
                     f"{short_metric_name(k)} {format_metric(split_doc, k)}" for k in HEADLINE[:3]),
                 losses["loss/total"], inference_s, split_doc["timing"]["coco_s"],
                 split_doc["timing"].get("bootstrap_s", 0.0))
    summary = trained.summary or {}
    best = summary.get("best") or {}
    doc.update(best=best, last_step=summary.get("last_step"))
    if summary.get("history") or summary.get("val_history"):
        figures["results.png"] = results_figure(
            summary.get("history") or [], summary.get("val_history") or [], best_step=trained.step,
            best_metric=best.get("metric", "DetectionBoxes_Precision/mAP"), title=f"{name} ({trained.fingerprint[:12]})")
    if not doc["splits"]:
        doc.update(evaluated=False, reason=f"no frames in splits {params.get('splits')}")
    out = {"draws": pd.concat(tables["draws"], ignore_index=True) if tables["draws"]
           else pd.DataFrame(columns=["split", "slice", "draw"]),
           "slices": pd.DataFrame(tables["slices"]), "per_trip": pd.DataFrame(tables["per_trip"])}
    return json_safe(doc), files, figures, out


def trip_conditions(split_manifest: pd.DataFrame, trips: Trips) -> pd.DataFrame:
    """``trip, split, time_of_day, weather, time_of_day_estimated`` of every trip of the manifest."""
    cols = [c for c in ("trip", "split", "time_of_day", "weather") if c in split_manifest]
    out = split_manifest[cols].copy()
    index = trips.index
    if "time_of_day_estimated" in index:
        estimated = index.groupby("trip")["time_of_day_estimated"].any()
        out["time_of_day_estimated"] = out["trip"].map(estimated).fillna(False).astype(bool)
    return out


def _bootstrap_outputs(split: str, result: dict, gt_frames: list, conditions: pd.DataFrame, split_doc: dict,
                       tables: dict):
    """Put a split's bootstrap into its ``metrics.json`` section and the tables; returns its slice figure."""
    from urban_detection.detection.slices import per_trip_rows, slice_figure, slice_rows
    from urban_detection.detection.split_bootstrap import frame_trip

    boot = result["bootstrap"]
    # "point": every bootstrapped metric on the split as it is (also those COCO does not report,
    # e.g. mAP@.50IOU of small objects), the value the paired differences start from
    split_doc["bootstrap"] = {k: boot[k] for k in ("trips", "draws", "seed", "level", "point", "intervals")}
    split_doc["bootstrap"]["slices"] = {name: {k: v for k, v in s.items() if k != "values"}
                                        for name, s in boot["slices"].items()}
    split_doc["timing"]["bootstrap_s"] = boot["seconds"]
    split_doc["timing"]["coco_s"] -= boot["seconds"]
    draws = [pd.DataFrame({"split": split, "slice": "all", "draw": range(boot["draws"]), **boot["values"]})]
    draws += [pd.DataFrame({"split": split, "slice": name, "draw": range(boot["draws"]), **s["values"]})
              for name, s in boot["slices"].items()]
    tables["draws"] += draws
    frames = pd.Series([frame_trip(f) for f in gt_frames]).value_counts().to_dict()
    rows = slice_rows(split, {**boot["point"], **result["metrics"]}, boot, frames)
    tables["slices"] += rows
    tables["per_trip"] += per_trip_rows(split, boot, gt_frames, frame_trip, conditions[conditions["split"] == split])
    return slice_figure(pd.DataFrame(rows), title=f"{split}: 95% trip-bootstrap intervals per slice")


def bootstrap_settings(params: dict) -> dict:
    """``evaluate.bootstrap`` with its defaults: 1,000 trip draws, seed 0, 95% intervals (draws 0: none)."""
    settings = {"draws": 1000, "seed": 0, "level": 0.95, **dict(params.get("bootstrap") or {})}
    if int(settings["draws"]) < 0 or not 0.0 < float(settings["level"]) < 1.0:
        raise ValueError(f"evaluate.bootstrap: draws must be >= 0 and level in (0, 1), got {settings}")
    return settings


def format_metric(split_doc: dict, metric: str, digits: int = 3) -> str:
    """``0.585 [0.502, 0.667]``: a split's value of ``metric`` with its bootstrap interval when there is one."""
    from urban_detection.detection.intervals import format_interval

    ci = ((split_doc.get("bootstrap") or {}).get("intervals") or {}).get(metric) or {}
    return format_interval((split_doc.get("metrics") or {}).get(metric), ci.get("low"), ci.get("high"), digits)


def png_figures(figures: dict, dpi: float) -> dict[str, bytes]:
    """Each figure drawn once as PNG bytes: the same file goes to MLflow and to ``<name>.evaluation_figures``."""
    out = {}
    for key, fig in figures.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=float(dpi))
        out[key] = buffer.getvalue()
    return out


def _log_evaluation(trained: TrainedDetector, doc: dict, files: dict, figures: dict, tables: dict,
                    log_files: bool = False) -> None:
    import mlflow

    from urban_detection.tracking import experiment_run, log_metrics

    with experiment_run(trained.name, trained.config, trained.provenance, trained.run_id):
        for split, split_doc in doc.get("splits", {}).items():
            numbers = flat_split_metrics(split_doc)
            dropped = (split_doc.get("large_box_filter") or {}).get("dropped") or {}
            if not sum(dropped.values()):  # the filter removed nothing: its metrics equal the raw ones
                numbers = {k: v for k, v in numbers.items() if not k.startswith("large_box_filter/")}
            numbers["large_box_filter/dropped"] = sum(dropped.values())
            boot = split_doc.get("bootstrap") or {}
            tag = f"ci{100 * float(boot.get('level', 0.95)):g}"  # ci95
            for metric, ci in (boot.get("intervals") or {}).items():
                numbers.update({f"{metric}/{tag}_low": ci["low"], f"{metric}/{tag}_high": ci["high"]})
            numbers.update({f"timing/{k}": v for k, v in split_doc["timing"].items()})
            log_metrics({f"{split}/{k}": v for k, v in numbers.items()}, step=doc.get("step"))
        mlflow.log_dict(doc, "evaluation/metrics.json")
        for key in ("slices", "per_trip"):
            if len(tables[key]):
                mlflow.log_text(tables[key].to_csv(index=False), f"evaluation/{key}.csv")
        if log_files:  # always in data/07_model_output/<experiment>/
            for key, obj in files.items():
                mlflow.log_dict(obj() if callable(obj) else obj, f"evaluation/coco/{key}.json")
        if figures:
            with tempfile.TemporaryDirectory() as folder:
                for key, png in figures.items():
                    (Path(folder) / key).write_bytes(png)
                mlflow.log_artifacts(folder, "evaluation/figures")


# --------------------------------------------------------------------------- evaluation frames


def convert_eval_trips(trips: Trips, split_manifest, source: Path, ingest_params: dict,
                       evaluate_params: dict) -> FolderWrite:
    """The val/test trips of ``ingest_source`` converted again (:func:`ingest_eval_trips`) into the folder
    of ``eval_trips``, which runs it when Kedro saves it (:mod:`urban_detection.datasets.folders`)."""
    params = source_params(source, ingest_params)
    return FolderWrite(partial(_eval_trips_into, trips=trips, split_manifest=split_manifest, ingest_params=params,
                               evaluate_params=evaluate_params), "evaluation trip TFRecords")


def _eval_trips_into(eval_trip_store: Path, trips: Trips, split_manifest, ingest_params: dict,
                     evaluate_params: dict) -> Trips:
    eval_trips, report = ingest_eval_trips(trips, split_manifest, eval_trip_store, ingest_params, evaluate_params)
    eval_trips.report = report
    return eval_trips


def eval_frames_report(eval_trips: Trips) -> dict:
    """The report of the conversion that wrote ``eval_trips`` (frames per split, stride, reused trips, skipped)."""
    if eval_trips.report is None:
        raise ValueError(f"no report beside the evaluation trips in {eval_trips.root}: run the evaluate pipeline")
    return eval_trips.report


def ingest_eval_trips(trips: Trips, split_manifest, eval_trip_store: Path, ingest_params: dict,
                      evaluate_params: dict) -> tuple[Trips, dict]:
    """The frames the evaluation scores: the val and test trips (``evaluate.splits``) converted again
    from their sources in ``ingest.source_dir`` with ``evaluate.frame_stride`` (1 = every frame, 10 Hz)
    into ``eval_trip_store``. Training keeps every ``ingest.frame_stride``-th frame of the train trips.

    Processed (tf.Example) sources pass through as they are (their frames were already chosen).
    ``evaluate.frame_stride: null`` keeps the training frames' stride (``ingest.frame_stride``).
    Raises ``SplitLeakError`` when an evaluation frame's image also sits in the train split (checked
    before any prediction), and ``ValueError`` naming the trips whose source is gone.
    Returns the evaluation trips and a report (frames per split, stride, reused trips, skipped).
    """
    from urban_detection.waymo.records import trip_name
    from urban_detection.waymo.sources import find_sources

    stride = evaluate_params.get("frame_stride")
    stride = int(ingest_params.get("frame_stride", 10) if stride is None else stride)
    splits = list(evaluate_params.get("splits") or ["val", "test"])
    wanted = split_manifest.loc[split_manifest["split"].isin(splits), ["trip", "split"]]
    source = Path(ingest_params["source_dir"])
    files.check_outputs_not_inputs({"eval_trips (data/02_intermediate/eval_trips)": eval_trip_store},
                                   {"ingest.source_dir": source})
    by_trip = {trip_name(p): p for p in find_sources(source)} if source.is_dir() else {}
    missing = sorted(set(wanted["trip"]) - set(by_trip))
    if missing:
        raise ValueError(f"{len(missing)} val/test trip(s) have no source in ingest.source_dir {str(source)!r} "
                         f"(first: {missing[:3]}): run the ingest pipeline again")
    width, height = ingest_params["image_size"]
    result = ingest_files(
        [by_trip[t] for t in sorted(wanted["trip"])],
        eval_trip_store,
        workers=int(ingest_params.get("workers", 2)),
        camera=ingest_params.get("camera", "FRONT"),
        size=(int(height), int(width)),
        stride=stride,
        force=bool(ingest_params.get("force", False)),
        ray_address=ingest_params.get("ray_address"),
        keep_pool=bool(ingest_params.get("keep_workers", False)) and ingest_params.get("ray_address") is None,
    )
    kept = set(wanted["trip"])
    index = result.index_frame()
    index = index[index["trip"].isin(kept)].sort_values(["trip", "frame"]).reset_index(drop=True)
    train_trips = set(split_manifest.loc[split_manifest["split"] == "train", "trip"])
    train_hashes = set(trips.index.loc[trips.index["trip"].isin(train_trips), "image_hash"])
    leaked = index[index["image_hash"].isin(train_hashes)]
    if len(leaked):
        raise SplitLeakError(f"split leak: {len(leaked)} evaluation frame(s) of trip(s) "
                             f"{sorted(leaked['trip'].unique())[:5]} have the same image as a train frame")
    stale = [p for p in Path(eval_trip_store).glob("*.tfrecord") if p.stem not in kept]
    for path in stale:  # trips no longer in val/test (the split changed): only the project's own files go
        files.remove_owned(path)
        files.remove_owned(path.with_name(path.stem + ".ingest.json"))
    report = _eval_report(index, wanted, stride, result.report)
    log.info("evaluation frames (stride %s): %s", stride,
             ", ".join(f"{s} {v['frames']} frames / {v['trips']} trips" for s, v in report["splits"].items()))
    return Trips(root=eval_trip_store, index=index), report


def _eval_report(index, wanted, stride, ingest_report: dict) -> dict:
    split_of = dict(zip(wanted["trip"], wanted["split"]))
    by_split = index.assign(split=index["trip"].map(split_of)).groupby("split")
    splits = {s: {"trips": int(g["trip"].nunique()), "frames": int(len(g)),
                  "objects": {c: int(g[f"n_{c}"].sum()) for c in ("vehicle", "pedestrian", "cyclist")}}
              for s, g in by_split}
    keep = ("frames_read", "frames_written", "skipped", "errors", "reused_trips")
    return {"frame_stride": stride, "splits": splits, **{k: ingest_report[k] for k in keep if k in ingest_report}}
