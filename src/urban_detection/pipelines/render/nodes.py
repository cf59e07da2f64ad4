"""The render node: an experiment's exported model over every frame of one trip, as MP4 (and GIF).

The trip is ``render.trip`` or, when null, the first test trip of the split manifest
(sorted by name). Frames are read at full rate from the trip's raw Waymo segment in
``render.raw_dir`` (default: ``ingest.source_dir``) when there is one, else from the
ingested trip TFRecord (every ``frame_stride``-th frame). Videos go to
``data/08_reporting/videos/<experiment>_<trip>.mp4`` and the experiment's MLflow run.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import pandas as pd

from urban_detection.pipelines.common import is_selected

log = logging.getLogger(__name__)


def choose_trip(split_manifest: pd.DataFrame, trip: str | None = None, split: str = "test") -> str:
    """``trip`` when given (it must be in the manifest), else the first trip of ``split`` by name."""
    if trip:
        if trip not in set(split_manifest["trip"]):
            raise ValueError(f"render.trip {trip!r} is not in the split manifest")
        return str(trip)
    trips = sorted(split_manifest.loc[split_manifest["split"] == split, "trip"].astype(str))
    if not trips:
        raise ValueError(f"the split manifest has no {split} trip to render; set render.trip")
    return trips[0]


def trip_path(frame_index: pd.DataFrame, trip: str) -> str | None:
    paths = frame_index.loc[frame_index["trip"] == trip, "path"].astype(str).unique()
    return str(paths[0]) if len(paths) else None



def load_detector(export_info: dict, model_format: str = "saved_model"):
    """The exported detector: the SavedModel (default) or the ``.keras`` model."""
    from urban_detection.detection.train import load_exported

    if model_format not in ("saved_model", "keras"):
        raise ValueError(f"render.model_format must be saved_model or keras, got {model_format!r}")
    return load_exported(export_info[model_format])


def make_render_node(name: str) -> Callable:
    """The render node of experiment ``name``."""

    def render(export_info: dict, split_manifest: pd.DataFrame, frame_index: pd.DataFrame, params: dict,
               paths: dict) -> dict:
        from urban_detection.detection.evaluate import json_safe
        from urban_detection.detection.render import render_video, trip_frame_source

        params = params or {}
        if not is_selected(name, params):
            return {"experiment": name, "rendered": False, "reason": "not in render.experiments"}
        if not (export_info or {}).get("exported"):
            reason = (export_info or {}).get("reason", "no exported model")
            log.info("experiment %s: %s; nothing to render", name, reason)
            return {"experiment": name, "rendered": False, "reason": reason}
        trip = choose_trip(split_manifest, params.get("trip"), params.get("split", "test"))
        report: dict = {}
        source, frames = trip_frame_source(trip, trip_path(frame_index, trip), params.get("raw_dir"),
                                           params.get("camera", "FRONT"), params.get("max_side"), report)
        detector = load_detector(export_info, params.get("model_format", "saved_model"))
        out_dir = Path(paths["reporting"]) / "videos"
        stem = f"{name}_{trip}"
        box_filter = params.get("large_box_filter") or {}
        info = render_video(
            detector, frames, out_dir / f"{stem}.mp4",
            fps=float(params.get("fps", 10)),
            score_threshold=float(params.get("score_threshold", 0.3)),
            tracking=bool(params.get("tracking", True)),
            tracker_kwargs=dict(params.get("tracker") or {}),
            batch_size=int(params.get("batch_size", 8)),
            image_size=int(export_info["image_size"]),
            max_frames=params.get("max_frames"),
            gif_path=out_dir / f"{stem}.gif" if params.get("gif") else None,
            gif_max_side=params.get("gif_max_side", 480),
            max_area_frac=dict(box_filter.get("max_area_frac") or {}) if box_filter.get("enabled") else None,
        )
        info = {"experiment": name, "rendered": True, "trip": trip, **source, "step": export_info.get("step"),
                "model_format": params.get("model_format", "saved_model"), "fps": float(params.get("fps", 10)),
                "score_threshold": float(params.get("score_threshold", 0.3)),
                "tracking": bool(params.get("tracking", True)), **info,
                "skipped": report.get("skipped", {})}
        info = json_safe(info)
        _log_render(name, export_info, info)
        return info

    render.__name__ = render.__qualname__ = f"render_{name}"
    return render


def _log_render(name: str, export_info: dict, info: dict) -> None:
    import mlflow

    from urban_detection.tracking import experiment_run, log_metrics

    model_dir = Path(export_info["export_dir"]).parent
    with experiment_run(name, model_dir):
        mlflow.log_artifact(info["video"], "videos")
        if info.get("gif"):
            mlflow.log_artifact(info["gif"], "videos")
        log_metrics({f"render/{k}": info[k] for k in ("frames", "frames_per_sec", "inference_seconds",
                                                      "detections_per_frame", "persistence_raw",
                                                      "persistence_tracked") if info.get(k) is not None},
                    step=export_info.get("step"))
        mlflow.log_dict(info, f"videos/{Path(info['video']).stem}.json")
