"""Nodes of the ingest pipeline: thin wrappers around :mod:`urban_detection.waymo`.

The nodes that fill a folder (``synthesize_trips`` -> ``synthetic_store``, ``convert_trips`` ->
``trips``) return a :class:`~urban_detection.datasets.folders.FolderWrite`: the catalog
dataset runs it on its folder when Kedro saves the node's output (see
:mod:`urban_detection.datasets.folders`). :func:`write_synthetic` and :func:`ingest_trips`
do the work, given the folder.
"""
from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

from urban_detection import files
from urban_detection.datasets.folders import FolderWrite, source_params
from urban_detection.waymo.ingest import ingest_files
from urban_detection.waymo.lighting import estimate_lighting
from urban_detection.waymo.synthetic import write_synthetic_trips
from urban_detection.waymo.trips import Trips

log = logging.getLogger(__name__)
GENERATION_KEYS = ("trips", "frames_per_trip", "width", "height", "seed")  # and "cameras"
DEFAULT_CAMERAS = ("FRONT", "FRONT_LEFT")  # the library's; conf/base sets FRONT only
STAMP = "synthetic_params.json"  # in the synthetic folder: which files this project generated, with which settings


def synthesize_trips(source: Path, params: dict) -> FolderWrite:
    """The embedded synthetic trips, written into ``synthetic_store`` when ``ingest_source`` is that folder."""
    return FolderWrite(partial(write_synthetic, params=params, source_dir=str(source)), "synthetic trips")


def write_synthetic(out_dir: Path, params: dict, source_dir: str) -> dict:
    """Write the embedded synthetic trips into ``out_dir`` (the ``synthetic_store`` folder)
    when ``source_dir`` (the ``ingest_source`` folder) is that folder.

    Returns the manifest (generation settings and files). Trips already written with the
    same settings are not generated again; with other settings the project's own earlier
    segments are removed first (files the project did not write, such as a real segment a
    user dropped in, stay and are ingested with the rest). When the source is another
    folder, nothing is generated.
    """
    out_dir = Path(out_dir)
    if Path(source_dir).resolve() != out_dir.resolve():
        log.info("ingest.source_dir=%s is not the synthetic folder; no synthetic trips generated", source_dir)
        return {"generated": False, "source_dir": str(source_dir), "files": []}
    gen = {k: int(params[k]) for k in GENERATION_KEYS}
    gen["cameras"] = [str(c) for c in params.get("cameras") or DEFAULT_CAMERAS]
    stamp = out_dir / STAMP
    previous = json.loads(stamp.read_text()) if stamp.is_file() else None
    if previous and previous.get("params") == gen and all((out_dir / f).is_file() for f in previous["files"]):
        log.info("synthetic trips in %s are up to date (%d files)", out_dir, len(previous["files"]))
        return {"generated": False, "source_dir": str(out_dir), **previous}
    for name in (previous or {}).get("files", []):  # other settings: no stale synthetic trip is ingested
        files.remove_owned(out_dir / name)
    written = write_synthetic_trips(out_dir, n_trips=gen["trips"], frames_per_trip=gen["frames_per_trip"],
                                    width=gen["width"], height=gen["height"], seed=gen["seed"],
                                    cameras=gen["cameras"], workers=int(params.get("workers", 2)), progress=True)
    manifest = {"params": gen, "files": sorted(Path(f).name for f in written)}
    files.write_text(stamp, json.dumps(manifest, indent=2))
    return {"generated": True, "source_dir": str(out_dir), **manifest}


def convert_trips(synthetic_store: Path, source: Path, params: dict) -> FolderWrite:
    """Every source of ``ingest_source`` converted into ``trips`` (the folder, its frame index and report).

    ``synthetic_store`` is an input so that the generator runs first (when it fills the source)."""
    params = source_params(source, params)
    return FolderWrite(partial(_ingest_into, synthetic_store=synthetic_store, params=params), "trip TFRecords")


def _ingest_into(trip_store: Path, synthetic_store: Path, params: dict) -> Trips:
    trips, report = ingest_trips(synthetic_store, trip_store, params)
    trips.report = report
    return trips


def ingest_report(trips: Trips) -> dict:
    """The report of the ingest that wrote ``trips`` (files, trips, frames read and written, skipped)."""
    if trips.report is None:
        raise ValueError(f"no ingest report beside the trips in {trips.root}: run the ingest pipeline again")
    return trips.report


def ingest_trips(synthetic_manifest, trip_store: Path, params: dict) -> tuple[Trips, dict]:
    """Convert every source of ``params['source_dir']`` into one training TFRecord per trip in
    ``trip_store``. Returns the trips (frame index) and the ingest report."""
    from urban_detection.waymo.sources import find_sources

    source = Path(params["source_dir"])
    if not source.is_dir():
        raise FileNotFoundError(f"ingest.source_dir {str(source)!r} is not a folder")
    files.check_outputs_not_inputs({"trips (data/02_intermediate/trips)": trip_store},
                                   {"ingest.source_dir": source})
    paths = find_sources(source)
    if not paths:
        raise ValueError(f"no Waymo source (*.tfrecord, or v2 camera_image/*.parquet) in ingest.source_dir "
                         f"{str(source)!r}")
    width, height = params["image_size"]
    result = ingest_files(
        paths,
        trip_store,
        workers=int(params.get("workers", 2)),
        camera=params.get("camera", "FRONT"),
        size=(int(height), int(width)),  # the library takes (height, width)
        stride=int(params.get("frame_stride", 10)),
        force=bool(params.get("force", False)),
        ray_address=params.get("ray_address"),
        # the local helpers stay up for the evaluation frames (hooks/pools.py stops them); embedded Ray does not
        keep_pool=bool(params.get("keep_workers", False)) and params.get("ray_address") is None,
    )
    index = result.index_frame()
    for col in ("time_of_day", "weather", "location"):
        index[col] = index[col].fillna("unknown").astype(str)
    index = estimate_lighting(index.sort_values(["trip", "frame"]).reset_index(drop=True))
    report = result.report
    estimated = sorted(index.loc[index["time_of_day_estimated"], "trip"].unique())
    report["time_of_day_estimated_trips"] = len(estimated)
    if estimated:
        log.info("time of day unknown for %d trip(s): estimated from image brightness (Day / Dawn/Dusk / Night)",
                 len(estimated))
    log.info("ingested %d trips, %d/%d frames, objects %s, skipped %s", report["trips"], report["frames_written"],
             report["frames_read"], report["objects_written"], report["skipped"])
    return Trips(root=trip_store, index=index), report
