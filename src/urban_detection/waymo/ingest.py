"""Ingest of many Waymo sources (v1, v2 or processed) in parallel into training TFRecords, reusing up-to-date trips.

:func:`ingest_files` converts each source (one trip, see
:func:`urban_detection.waymo.sources.find_sources`) with
:func:`~urban_detection.waymo.convert.convert_trip` as one task of the parallel
executor (local processes, or one Ray task per file: see
:mod:`urban_detection.waymo.executor`), skips trips that are already up to date (see
:mod:`urban_detection.waymo.stamps`), and raises ``ValueError`` only when no usable
frame remains at all. Bad input never raises: each problem is logged and counted under
a reason key (see :data:`~urban_detection.waymo.trip_result.SKIP_REASONS`).

The parts: :mod:`~urban_detection.waymo.records` (record iteration, format sniffing),
:mod:`~urban_detection.waymo.cleaning` (images and boxes),
:mod:`~urban_detection.waymo.convert` (one trip),
:mod:`~urban_detection.waymo.trip_result` (what happened to one trip) and
:mod:`~urban_detection.waymo.stamps` (idempotence); their public names used by callers
are re-exported here.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import tensorflow as tf

from urban_detection.waymo import executor
from urban_detection.waymo.convert import INDEX_COLUMNS, convert_trip, make_params
from urban_detection.waymo.example import CLASS_NAMES
from urban_detection.waymo.records import RecordReadError, detect_format, iter_records, trip_name
from urban_detection.waymo.sources import find_sources
from urban_detection.waymo.stamps import load_if_current, params_dict, write_stamp
from urban_detection.waymo.trip_result import SKIP_REASONS, TripResult

logger = logging.getLogger(__name__)



@dataclass
class IngestResult:
    """All trips of one :func:`ingest_files` call."""

    trips: list[TripResult]
    source: str = ""

    @property
    def index_rows(self) -> list[dict]:
        return [row for t in self.trips for row in t.rows]

    @property
    def report(self) -> dict:
        skipped: dict[str, int] = {}
        objects = {name: 0 for name in CLASS_NAMES}
        for t in self.trips:
            for k, v in t.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
            for k, v in t.objects.items():
                objects[k] = objects.get(k, 0) + v
        return {
            "files": len(self.trips),
            "trips": sum(1 for t in self.trips if t.frames_written > 0),
            "frames_read": sum(t.frames_read for t in self.trips),
            "frames_selected": sum(t.frames_selected for t in self.trips),
            "frames_written": sum(t.frames_written for t in self.trips),
            "objects_written": objects,
            "skipped": dict(sorted(skipped.items())),
            "errors": [e for t in self.trips for e in t.errors],
            "reused_trips": sum(1 for t in self.trips if t.reused),
        }

    def index_frame(self):
        """The frame index as a pandas DataFrame (columns of the project's frame index)."""
        import pandas as pd

        df = pd.DataFrame(self.index_rows, columns=list(INDEX_COLUMNS))
        df["timestamp_micros"] = df["timestamp_micros"].astype("Int64")
        for col in ("frame", "n_vehicle", "n_pedestrian", "n_cyclist", "n_objects"):
            df[col] = df[col].astype("int64")
        df["brightness"] = df["brightness"].astype("float64")
        return df


# ----------------------------------------------------------------- the tasks
def _convert_and_record(path: str, out_path: str, params: dict) -> TripResult:
    path_, out_ = Path(path), Path(out_path)
    result = convert_trip(
        path_,
        out_,
        camera=params["camera"],
        size=tuple(params["size"]),
        stride=params["stride"],
        min_box_px=params["min_box_px"],
        jpeg_quality=params["jpeg_quality"],
    )
    write_stamp(path_, out_, params, result)
    return result


def _worker_init() -> None:
    """Run once in every helper process or Ray worker: one TensorFlow thread, as each converts one file."""
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = "1"
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # context already initialised
        pass


def _convert_task(path: str, out_path: str, params: dict) -> dict:
    """One task of the parallel executor: convert one source and stamp it; the result as plain data."""
    return _convert_and_record(path, out_path, params).to_dict()


def _failed(path: Path, error: BaseException, where: str) -> TripResult:
    r = TripResult(trip=trip_name(path), source=str(path))
    place = "" if where == "here" else f" in a {where} worker"
    r.problem("worker_error", None, f"conversion failed{place}: {type(error).__name__}: {error}")
    return r


def warm_pool(workers: int) -> None:
    """Start the ``workers - 1`` helper processes of ``ingest_files(..., workers, keep_pool=True)`` now."""
    executor.warm_pool(workers, initializer=_worker_init)


shutdown_pool = executor.shutdown_pool  # stops the helpers (and embedded Ray) that keep_pool=True kept


# ------------------------------------------------------------ many files
def _resolve_inputs(paths) -> tuple[list[Path], str]:
    if isinstance(paths, (str, os.PathLike)):
        folder = Path(paths)
        if folder.is_dir():
            return find_sources(folder), str(folder)
        return [folder], str(folder.parent)
    files = [Path(p) for p in paths]
    parents = sorted({str(p.parent) for p in files})
    return files, (parents[0] if len(parents) == 1 else ", ".join(parents[:3]) + (" ..." if len(parents) > 3 else ""))


def _plan(
    files: list[Path], out_dir: Path, params: dict, force: bool
) -> tuple[dict[int, TripResult], list[tuple[int, Path, Path]]]:
    """The results known without converting (duplicate trip names, current stamps) and the files to convert."""
    results: dict[int, TripResult] = {}
    todo: list[tuple[int, Path, Path]] = []
    seen: dict[str, Path] = {}
    for i, path in enumerate(files):
        trip = trip_name(path)
        if trip in seen:
            r = TripResult(trip=trip, source=str(path))
            r.problem("duplicate_trip", None, f"trip name {trip!r} already taken by {seen[trip]}; file ignored")
            results[i] = r
            continue
        seen[trip] = path
        out_path = out_dir / f"{trip}.tfrecord"
        cached = None if force else load_if_current(path, out_path, params)
        if cached is not None:
            results[i] = cached
        else:
            todo.append((i, path, out_path))
    return results, todo


def _check_and_log(result: IngestResult, folder: str) -> None:
    rep = result.report
    if rep["frames_written"] == 0:
        raise ValueError(
            f"No usable frame in {folder}: {rep['files']} file(s) read, skipped {rep['skipped']}. Expected Waymo v1 "
            "segment files (Frame protos with camera images), Waymo v2 segments (camera_image/ and camera_box/ "
            "Parquet files) or TF Object Detection API tf.Example TFRecords."
        )
    logger.info(
        "ingest: %d file(s), %d trip(s), %d/%d frames written (%d reused trips), objects %s, skipped %s",
        rep["files"],
        rep["trips"],
        rep["frames_written"],
        rep["frames_read"],
        rep["reused_trips"],
        rep["objects_written"],
        rep["skipped"],
    )


def ingest_files(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    workers: int = 2,
    camera: str = "FRONT",
    size=(640, 640),
    stride: int = 10,
    min_box_px: float = 1.0,
    jpeg_quality: int = 90,
    force: bool = False,
    progress: bool = True,
    keep_pool: bool = False,
    ray_address: str | None = None,
) -> IngestResult:
    """Convert many sources (a folder, see :func:`find_sources`, or a list of paths) into ``out_dir/<trip>.tfrecord``.

    Each source is one task of the parallel executor (:mod:`urban_detection.waymo.executor`),
    one TensorFlow thread each. By default ``workers`` local processes share them: the
    calling one plus up to ``workers - 1`` helpers started with the ``spawn`` method. The
    caller starts converting at once; helpers are spawned only when the remaining work
    outweighs their start-up (importing TensorFlow takes seconds). With
    ``keep_pool=True`` helpers stay up for later calls (see :func:`warm_pool`,
    :func:`shutdown_pool`). Scripts using ``workers > 1`` need the usual
    ``if __name__ == "__main__":`` guard of the spawn start method.

    ``ray_address`` runs one Ray task per source instead: ``"local"`` on Ray embedded on
    ``workers`` local cores, or on an existing cluster (``"auto"``, ``"host:6379"``,
    ``"ray://host:10001"``), which runs as many at once as it has CPUs. With no address,
    Ray is used when ``RAY_ADDRESS`` is set or this process is already connected to Ray.
    On a cluster every node needs the project installed, must read each source at the
    path given here and write to ``out_dir`` at the same path (shared storage), as the
    caller reads the outputs and ``<trip>.ingest.json`` stamps written there by the nodes.

    A trip whose output is newer than its input and whose sidecar
    ``<trip>.ingest.json`` records the same input and parameters is not converted
    again; its stored result is reused (``force=True`` converts everything). Warnings
    from helper processes and Ray workers are re-logged in the caller. Raises ``ValueError`` naming
    the folder when no usable frame was found in any file.
    """
    files, folder = _resolve_inputs(paths)
    if not files:
        raise ValueError(f"No *.tfrecord files nor Waymo v2 camera_image/*.parquet segments found in {folder}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = params_dict(make_params(camera, size, stride, min_box_px, jpeg_quality))
    results, todo = _plan(files, out_dir, params, force)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(files), initial=len(results), desc="ingest", unit="trip", disable=not progress)
    t0, frames = time.perf_counter(), 0

    def done(i: int, r: TripResult):
        nonlocal frames
        results[i] = r
        frames += r.frames_written
        bar.update(1)
        bar.set_postfix(frames=frames, fps=f"{frames / max(time.perf_counter() - t0, 1e-9):.1f}")

    try:
        tasks = [executor.Task((i, path), (str(path), str(out_path), params)) for i, path, out_path in todo]
        for f in executor.run_tasks(
            _convert_task,
            tasks,
            workers=max(1, min(int(workers), len(todo))),
            ray_address=ray_address,
            initializer=_worker_init,
            keep_pool=keep_pool,
        ):
            i, path = f.key
            done(i, _failed(path, f.error, f.where) if f.error is not None else TripResult.from_dict(f.value))
    finally:
        bar.close()

    result = IngestResult([results[i] for i in range(len(files))], source=folder)
    _check_and_log(result, folder)
    return result


__all__ = [
    "INDEX_COLUMNS",
    "IngestResult",
    "RecordReadError",
    "SKIP_REASONS",
    "TripResult",
    "convert_trip",
    "detect_format",
    "ingest_files",
    "iter_records",
    "shutdown_pool",
    "trip_name",
    "warm_pool",
]
