"""Nodes of the ingest pipeline: thin wrappers around :mod:`urban_detection.waymo`."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from urban_detection.waymo.ingest import ingest_files
from urban_detection.waymo.synthetic import write_synthetic_trips

log = logging.getLogger(__name__)

def synthesize_trips(params: dict, source_dir: str) -> dict:
    """Write the embedded synthetic trips when ``ingest.source_dir`` points at them.

    Returns a small manifest (files and generation parameters). When the source is a
    folder of real data, nothing is generated and the manifest says so.
    """
    out_dir = Path(params["out_dir"])
    if Path(source_dir).resolve() != out_dir.resolve():
        log.info("ingest.source_dir=%s is not the synthetic folder; no synthetic trips generated", source_dir)
        return {"generated": False, "source_dir": str(source_dir), "files": []}
    files = write_synthetic_trips(
        out_dir,
        n_trips=int(params["trips"]),
        frames_per_trip=int(params["frames_per_trip"]),
        width=int(params["width"]),
        height=int(params["height"]),
        seed=int(params["seed"]),
    )
    return {"generated": True, "source_dir": str(out_dir), "params": dict(params), "files": sorted(str(f) for f in files)}


def ingest_trips(synthetic_manifest: dict, params: dict) -> tuple[pd.DataFrame, dict]:
    """Convert every ``*.tfrecord`` of ``params['source_dir']`` into one training TFRecord per trip.

    Returns the frame index table and the ingest report.
    """
    source = Path(params["source_dir"])
    if not source.is_dir():
        raise FileNotFoundError(f"ingest.source_dir {str(source)!r} is not a folder")
    paths = sorted(source.glob("*.tfrecord"))
    if not paths:
        raise ValueError(f"no *.tfrecord file in ingest.source_dir {str(source)!r}")
    width, height = params["image_size"]
    result = ingest_files(
        paths,
        params["output_dir"],
        workers=int(params.get("workers", 2)),
        camera=params.get("camera", "FRONT"),
        size=(int(height), int(width)),  # the library takes (height, width)
        stride=int(params.get("frame_stride", 10)),
        force=bool(params.get("force", False)),
    )
    index = result.index_frame()
    for col in ("time_of_day", "weather", "location"):
        index[col] = index[col].fillna("unknown").astype(str)
    index = index.sort_values(["trip", "frame"]).reset_index(drop=True)
    report = result.report
    log.info(
        "ingested %d trips, %d/%d frames, objects %s, skipped %s",
        report["trips"], report["frames_written"], report["frames_read"], report["objects_written"], report["skipped"],
    )
    return index, report
