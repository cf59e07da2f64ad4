"""Nodes of the ingest pipeline: thin wrappers around :mod:`urban_detection.waymo`."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from urban_detection import files
from urban_detection.waymo.ingest import ingest_files
from urban_detection.waymo.lighting import estimate_lighting
from urban_detection.waymo.synthetic import write_synthetic_trips
from urban_detection.waymo.trips import Trips

log = logging.getLogger(__name__)
GENERATION_KEYS = ("trips", "frames_per_trip", "width", "height", "seed")
STAMP = "synthetic_params.json"  # in the synthetic folder: which files this project generated, with which settings


def synthesize_trips(out_dir: Path, params: dict, source_dir: str) -> dict:
    """Write the embedded synthetic trips into ``out_dir`` (the ``synthetic_store`` folder)
    when ``ingest.source_dir`` points at it.

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
    stamp = out_dir / STAMP
    previous = json.loads(stamp.read_text()) if stamp.is_file() else None
    if previous and previous.get("params") == gen and all((out_dir / f).is_file() for f in previous["files"]):
        log.info("synthetic trips in %s are up to date (%d files)", out_dir, len(previous["files"]))
        return {"generated": False, "source_dir": str(out_dir), **previous}
    for name in (previous or {}).get("files", []):  # other settings: no stale synthetic trip is ingested
        files.remove_owned(out_dir / name)
    written = write_synthetic_trips(out_dir, n_trips=gen["trips"], frames_per_trip=gen["frames_per_trip"],
                                    width=gen["width"], height=gen["height"], seed=gen["seed"],
                                    workers=int(params.get("workers", 2)), progress=True)
    manifest = {"params": gen, "files": sorted(Path(f).name for f in written)}
    files.write_text(stamp, json.dumps(manifest, indent=2))
    return {"generated": True, "source_dir": str(out_dir), **manifest}


def ingest_trips(synthetic_manifest: dict, trip_store: Path, params: dict) -> tuple[Trips, dict]:
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
    from urban_detection.pipelines.split.nodes import SplitLeakError
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
