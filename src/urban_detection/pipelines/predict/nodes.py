"""The predict node: an experiment's exported model over the user's media.

Like render and evaluate it first checks the export against the experiment's current config
(resolved from ``params:train``), train split and val (selection) split, and refuses one they
did not make (:class:`~urban_detection.detection.provenance.StaleModelError`). Then it reads
every frame of ``predict.source`` (:mod:`urban_detection.detection.media`: bad items are
named, counted and skipped), detects, draws, and returns the annotated media, the COCO
results, a table of detections and a summary; the summary is also logged to the model's
MLflow run.
"""
from __future__ import annotations

import logging
from typing import Callable

import pandas as pd

from urban_detection.datasets.media import AnnotatedMedia, MediaSource
from urban_detection.detection.provenance import StoredModel, check_provenance
from urban_detection.waymo.trips import Trips

log = logging.getLogger(__name__)
WAYMO_FPS = 10.0  # Waymo cameras run at 10 Hz


def current_config(name: str, train_params: dict) -> dict:
    """The resolved config experiment ``name`` has under the current ``train`` parameters."""
    from urban_detection.detection.config import resolve_experiments

    return resolve_experiments({**train_params, "experiments": [name]})[name]


def make_predict_node(name: str) -> Callable:
    """The predict node of experiment ``name``."""

    def predict(export, train_params: dict, trips: Trips, split_manifest: pd.DataFrame, source: MediaSource,
                params: dict):
        """``export``: the exported detector (``<name>.export``); ``source``: the user's media."""
        from urban_detection.detection.detections import DEFAULT_SCORE_THRESHOLD
        from urban_detection.detection.evaluate import json_safe
        from urban_detection.detection.predict_media import coco_results, detections_table, predict_media, summary

        check_provenance(StoredModel.of_export(export.info), current_config(name, train_params), trips,
                         split_manifest, exported=True)
        params = params or {}
        threshold = DEFAULT_SCORE_THRESHOLD if params.get("score_threshold") is None else float(params["score_threshold"])
        pred = predict_media(export, source.path, camera=str(params.get("camera", "FRONT")),
                             score_threshold=threshold, batch_size=int(params.get("batch_size", 8)),
                             max_side=params.get("max_side"), max_frames=params.get("max_frames"))
        if not pred.names:
            raise ValueError(f"predict.source {source.path}: no readable frame "
                             f"(skipped: {pred.report.get('skipped', {})}, e.g. {pred.report.get('skipped_items', [])[:3]})")
        fps = float(params.get("fps") or pred.report.get("fps") or WAYMO_FPS)
        media = (AnnotatedMedia(images={n: frames[0] for n, frames in pred.drawn.items()}) if pred.kind == "images"
                 else AnnotatedMedia(videos=pred.drawn, fps=fps))
        info = json_safe({"experiment": name, "source": source.path, "step": export.info.get("step"),
                          "fingerprint": export.info.get("fingerprint"), "score_threshold": threshold,
                          **summary(pred)})
        log.info("predict %s on %s: %d frames, %d detections %s, %.1f frames/s; %d item(s) skipped %s",
                 name, source.path, info["frames"], info["detections"], info["detections_per_class"],
                 info["frames_per_sec"] or 0.0, info["skipped_total"], info["skipped"])
        _log_predict(export.info, info)
        return media, coco_results(pred), detections_table(pred), info

    predict.__name__ = predict.__qualname__ = f"predict_{name}"
    return predict


def _log_predict(export_info: dict, info: dict) -> None:
    from urban_detection.tracking import experiment_run, log_metrics

    with experiment_run(export_info["experiment"], run_id=export_info.get("run_id")):
        log_metrics({f"predict/{k}": info[k] for k in ("frames", "detections", "frames_per_sec", "skipped_total")
                     if info.get(k) is not None}, step=export_info.get("step"))
