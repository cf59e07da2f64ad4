"""Nodes of the ingest pipeline: thin wrappers around :mod:`urban_detection.waymo`."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from urban_detection.waymo.ingest import ingest_files
from urban_detection.waymo.synthetic import write_synthetic_trips

log = logging.getLogger(__name__)

def synthesize_trips(params: dict, source_dir: str) -> dict:
    """Write the embedded synthetic trips when ``ingest.source_dir`` points at them.

    Returns a small manifest (files and generation parameters). Trips already written
    with the same parameters are not generated again. When the source is a folder of
    real data, nothing is generated and the manifest says so.
    """
    out_dir = Path(params["out_dir"])
    if Path(source_dir).resolve() != out_dir.resolve():
        log.info("ingest.source_dir=%s is not the synthetic folder; no synthetic trips generated", source_dir)
        return {"generated": False, "source_dir": str(source_dir), "files": []}
    gen = {k: int(params[k]) for k in ("trips", "frames_per_trip", "width", "height", "seed")}
    stamp = out_dir / "synthetic_params.json"
    if stamp.exists():
        previous = json.loads(stamp.read_text())
        if previous.get("params") == gen and all(Path(f).exists() for f in previous.get("files", [])):
            log.info("synthetic trips in %s are up to date (%d files)", out_dir, len(previous["files"]))
            return {"generated": False, "source_dir": str(out_dir), **previous}
    for old in out_dir.glob("*.tfrecord"):  # other parameters: start clean so no stale trip is ingested
        old.unlink()
    files = write_synthetic_trips(
        out_dir,
        n_trips=gen["trips"],
        frames_per_trip=gen["frames_per_trip"],
        width=gen["width"],
        height=gen["height"],
        seed=gen["seed"],
        workers=int(params.get("workers", 2)),
        progress=True,
    )
    manifest = {"params": gen, "files": sorted(str(f) for f in files)}
    stamp.write_text(json.dumps(manifest, indent=2))
    return {"generated": True, "source_dir": str(out_dir), **manifest}


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
