"""Writing synthetic trips as files: v1 segment TFRecords or v2 Parquet components."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from urban_detection.files import atomic_path
from urban_detection.waymo import v2
from urban_detection.waymo.synthetic.records import trip_components, trip_records


def _write_records(out_dir: Path, segment_name: str, records: list[bytes]) -> Path:
    """Write serialized Frame protos as ``out_dir/<segment_name>.tfrecord``."""
    import tensorflow as tf  # only needed for writing

    path = out_dir / f"{segment_name}.tfrecord"
    # atomic, recorded as the project's; a user's file of that name raises ForeignFileError, untouched
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for rec in records:
            writer.write(rec)
    return path


def write_trip(
    out_dir: str | os.PathLike,
    trip_index: int,
    frames: int,
    width: int = 960,
    height: int = 640,
    seed: int = 0,
    cameras: Sequence[str] = ("FRONT", "FRONT_LEFT"),
    conditions: dict | None = None,
    jpeg_quality: int = 90,
) -> Path:
    """Render one trip and write it as ``segment-..._with_camera_labels.tfrecord``."""
    name, records = trip_records(trip_index, frames, width, height, seed, cameras, conditions, jpeg_quality)
    return _write_records(Path(out_dir), name, records)


def write_synthetic_trips(
    out_dir: str | os.PathLike,
    n_trips: int,
    frames_per_trip: int,
    width: int = 960,
    height: int = 640,
    seed: int = 0,
    cameras: Sequence[str] = ("FRONT", "FRONT_LEFT"),
    jpeg_quality: int = 90,
    first_trip: int = 0,
    progress: bool = False,
    workers: int = 1,
    format: str = "v1",
) -> list[Path]:
    """Write ``n_trips`` deterministic synthetic segments; returns their paths.

    The same ``seed`` and trip index always give the same file (names, frames,
    labels and JPEG bytes). With ``workers > 1`` trips are rendered in spawned
    processes (which import no TensorFlow) and written here, in trip order.
    Files are written atomically and recorded as the project's
    (:mod:`urban_detection.files`); a file of the same name that the project did not
    write is never overwritten (:class:`urban_detection.files.ForeignFileError`).
    ``format="v1"`` writes ``out_dir/segment-..._with_camera_labels.tfrecord`` files of
    Frame protos; ``format="v2"`` writes the Waymo v2 layout
    ``out_dir/{camera_image,camera_box,stats}/<segment>.parquet`` with the same images,
    boxes and conditions, and returns the ``camera_image`` paths.
    """
    from tqdm.auto import tqdm

    if n_trips < 1:
        raise ValueError("n_trips must be >= 1")
    if format not in ("v1", "v2"):
        raise ValueError(f"format must be 'v1' or 'v2', not {format!r}")
    render = trip_records if format == "v1" else trip_components

    def write(name, data) -> Path:
        return _write_records(out_dir, name, data) if format == "v1" else v2.write_segment(out_dir, name, data)

    out_dir = Path(out_dir)
    indices = range(first_trip, first_trip + n_trips)
    args = [(i, frames_per_trip, width, height, seed, tuple(cameras), None, jpeg_quality) for i in indices]
    bar = tqdm(total=n_trips, desc="synthetic trips", unit="trip", disable=not progress)
    paths = []
    if workers > 1 and n_trips > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, n_trips), mp_context=mp.get_context("spawn")) as pool:
            for name, data in pool.map(render, *zip(*args)):
                paths.append(write(name, data))
                bar.update()
    else:
        for a in args:
            paths.append(write(*render(*a)))
            bar.update()
    bar.close()
    return paths
