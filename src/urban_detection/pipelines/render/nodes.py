"""The render node: an experiment's exported model over every frame of one trip, as a video.

The trip is ``render.trip`` or, when null, the first test trip of the verified split
manifest (sorted by name). Frames are read at full rate from the trip's raw Waymo segment
in ``ingest_source`` (``ingest.source_dir``) when there is one, else from the ingested trip TFRecord (every
``frame_stride``-th frame: the video then plays those at ``render.fps`` and its info says
so). The frames go to ``<name>.video`` (an MP4 written by the video dataset) and the
numbers to ``<name>.render_info``. Like evaluate, render first checks the export against the
current config, train split and val (selection) split, and refuses one they did not make
(:class:`~urban_detection.detection.provenance.StaleModelError`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import pandas as pd

from urban_detection.detection.provenance import StoredModel, check_provenance
from urban_detection.waymo.trips import Trips

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


def make_render_node(name: str) -> Callable:
    """The render node of experiment ``name``."""

    def render(export, config: dict, trips: Trips, split_manifest: pd.DataFrame, params: dict, source_dir):
        """``export``: the exported SavedModel detector (``<name>.export``); ``config``: the experiment's
        current resolved config (``<name>.config``), which with ``trips`` and ``split_manifest`` must
        have made the exported model; ``source_dir``: the ``ingest_source`` folder."""
        import shutil
        import tempfile

        from urban_detection.detection.evaluate import json_safe
        from urban_detection.detection.render import Video, render_video, trip_frame_source

        check_provenance(StoredModel.of_export(export.info), config, trips, split_manifest, exported=True)
        params = params or {}
        trip = choose_trip(split_manifest, params.get("trip"), params.get("split", "test"))
        report: dict = {}
        paths = trips.paths([trip])
        source, frames = trip_frame_source(trip, paths[0] if paths else None, source_dir,
                                           params.get("camera", "FRONT"), params.get("max_side"), report)
        box_filter = params.get("large_box_filter") or {}
        fps = float(params.get("fps", 10))
        # encoded frame by frame into a temporary MP4 (memory stays flat however long the trip), which the
        # video dataset moves into place
        folder = Path(tempfile.mkdtemp(prefix="render_"))
        gif_side = params.get("gif_max_side", 480) if params.get("gif") else None
        try:
            info = render_video(
                export, frames, folder / "video.mp4", fps=fps,
                gif_path=folder / "video.gif" if gif_side else None, gif_max_side=gif_side,
                score_threshold=float(params.get("score_threshold", 0.3)),
                tracking=bool(params.get("tracking", True)),
                tracker_kwargs=dict(params.get("tracker") or {}),
                batch_size=int(params.get("batch_size", 8)),
                image_size=int(export.info["image_size"]),
                max_frames=params.get("max_frames"),
                max_area_frac=dict(box_filter.get("max_area_frac") or {}) if box_filter.get("enabled") else None,
            )
        except BaseException as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if not (isinstance(exc, ValueError) and "no frames to write" in str(exc)):
                raise
            info = {"frames": 0}
        video_file, gif_file = info.pop("video", None), info.pop("gif", None)
        drawn = info["frames"]
        if not drawn:
            raise ValueError(f"trip {trip}: no readable frame to render (skipped: {report.get('skipped', {})})")
        if source["source"] == "trip_tfrecord":
            source["note"] = (f"no raw segment of {trip} in {source_dir}: the video shows the ingested frames "
                              f"(every frame_stride-th frame) played at {fps:g} frames/s")
        info = json_safe({"experiment": name, "trip": trip, **source, "step": export.info.get("step"),
                          "fingerprint": export.info.get("fingerprint"), "fps": fps,
                          "score_threshold": float(params.get("score_threshold", 0.3)),
                          "tracking": bool(params.get("tracking", True)), **info,
                          "skipped": report.get("skipped", {})})
        _log_render(export.info, info)
        video = Video(frames=[], fps=fps, gif_max_side=gif_side, file=video_file, gif_file=gif_file,
                      temp_dir=str(folder))
        return video, info

    render.__name__ = render.__qualname__ = f"render_{name}"
    return render


def _log_render(export_info: dict, info: dict) -> None:
    from urban_detection.tracking import experiment_run, log_metrics

    with experiment_run(export_info["experiment"], run_id=export_info.get("run_id")):
        log_metrics({f"render/{k}": info[k] for k in ("frames", "frames_per_sec", "inference_seconds",
                                                      "detections_per_frame", "persistence_raw",
                                                      "persistence_tracked") if info.get(k) is not None},
                    step=export_info.get("step"))
