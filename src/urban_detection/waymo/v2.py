"""Waymo Open Dataset v2 (Apache Parquet components): one segment's camera frames, and writing them.

v2 stores one folder per component and one Parquet file per segment::

    camera_image/<segment>.parquet   key.segment_context_name, key.frame_timestamp_micros,
                                     key.camera_name (1 FRONT ... 5 SIDE_RIGHT),
                                     [CameraImageComponent].image (JPEG bytes), ...
    camera_box/<segment>.parquet     the same keys plus key.camera_object_id,
                                     [CameraBoxComponent].box.center.x/.y, .box.size.x/.y
                                     (pixels), [CameraBoxComponent].type (Label.Type), ...
    stats/<segment>.parquet          key.segment_context_name, key.frame_timestamp_micros,
                                     [StatsComponent].time_of_day/.location/.weather, ...

Column names are the flattened field paths of the ``waymo_open_dataset.v2`` component
dataclasses (``key.<field>`` for keys, ``[<Component>].<field>.<field>`` for values) and
their values equal the v1.4.2 proto fields, so a v2 frame converts exactly like a v1
``Frame``: :func:`iter_frames` yields :class:`~urban_detection.waymo.sources.SourceFrame`
records, the same ones the v1 reader builds.

Camera files are large (all cameras, every frame): the reader reads the key columns
first, then only the image column, batch by batch and only in row groups holding a
wanted image, and only for the frames the stride keeps. The box and stats files are
small and read whole (needed columns only).

:func:`component_tables` and :func:`write_segment` write the same layout (a subset of the
columns), for the synthetic generator and for tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from urban_detection.files import atomic_path
from urban_detection.waymo import frame_proto as fp
from urban_detection.waymo.sources import (
    V2_BOX_DIR,
    V2_IMAGE_DIR,
    V2_STATS_DIR,
    SourceFrame,
    is_v2_segment,
    v2_component_path,
)

KEY_SEGMENT = "key.segment_context_name"
KEY_TIMESTAMP = "key.frame_timestamp_micros"
KEY_CAMERA = "key.camera_name"
KEY_OBJECT = "key.camera_object_id"
IMAGE = "[CameraImageComponent].image"
POSE_TIMESTAMP = "[CameraImageComponent].pose_timestamp"
BOX_CENTER_X = "[CameraBoxComponent].box.center.x"
BOX_CENTER_Y = "[CameraBoxComponent].box.center.y"
BOX_SIZE_X = "[CameraBoxComponent].box.size.x"
BOX_SIZE_Y = "[CameraBoxComponent].box.size.y"
BOX_TYPE = "[CameraBoxComponent].type"
TIME_OF_DAY = "[StatsComponent].time_of_day"
LOCATION = "[StatsComponent].location"
WEATHER = "[StatsComponent].weather"
CAMERA_OBJECT_TYPES = "[StatsComponent].camera_object_counts.types"
CAMERA_OBJECT_COUNTS = "[StatsComponent].camera_object_counts.counts"
COMPONENTS: tuple[str, ...] = (V2_IMAGE_DIR, V2_BOX_DIR, V2_STATS_DIR)

# Arrow types as declared by the v2 component dataclasses (the columns written here).
IMAGE_SCHEMA = pa.schema(
    [
        (KEY_SEGMENT, pa.string()),
        (KEY_TIMESTAMP, pa.int64()),
        (KEY_CAMERA, pa.int8()),
        (IMAGE, pa.binary()),
        (POSE_TIMESTAMP, pa.float64()),
    ]
)
BOX_SCHEMA = pa.schema(
    [
        (KEY_SEGMENT, pa.string()),
        (KEY_TIMESTAMP, pa.int64()),
        (KEY_CAMERA, pa.int8()),
        (KEY_OBJECT, pa.string()),
        (BOX_CENTER_X, pa.float64()),
        (BOX_CENTER_Y, pa.float64()),
        (BOX_SIZE_X, pa.float64()),
        (BOX_SIZE_Y, pa.float64()),
        (BOX_TYPE, pa.int8()),
    ]
)
STATS_SCHEMA = pa.schema(
    [
        (KEY_SEGMENT, pa.string()),
        (KEY_TIMESTAMP, pa.int64()),
        (TIME_OF_DAY, pa.string()),
        (LOCATION, pa.string()),
        (WEATHER, pa.string()),
        (CAMERA_OBJECT_TYPES, pa.list_(pa.int8())),
        (CAMERA_OBJECT_COUNTS, pa.list_(pa.int32())),
    ]
)
_STATS_FIELDS = {"time_of_day": TIME_OF_DAY, "weather": WEATHER, "location": LOCATION}
_BOX_VALUES = (BOX_CENTER_X, BOX_CENTER_Y, BOX_SIZE_X, BOX_SIZE_Y)
_IMAGE_BATCH_ROWS = 8  # images read per batch: a few MB of real 1920x1280 JPEGs
_READ_ERRORS = (OSError, pa.ArrowException)

Problem = Callable[[str, "int | None", str], None]  # (reason, record, detail), e.g. TripResult.problem


class ComponentError(Exception):
    """A component file that cannot be used: unreadable, not Parquet, or lacking columns."""


# ------------------------------------------------------------------ reading
def segment_name(source: str | os.PathLike) -> str:
    """The segment (context) name of a v2 source: its file name without ``.parquet``."""
    return Path(source).name[: -len(".parquet")]


def input_stamp(source: str | os.PathLike) -> dict:
    """Sizes and modification times of the segment's component files, for up-to-date checks.

    ``mtime_ns`` is the newest of them, ``size`` their sum; a missing file is ``None``
    under ``components``, so adding or removing one changes the stamp.
    """
    parts: dict[str, list[int] | None] = {}
    for comp in COMPONENTS:
        try:
            st = v2_component_path(source, comp).stat()
            parts[comp] = [st.st_size, st.st_mtime_ns]
        except OSError:
            parts[comp] = None
    present = [v for v in parts.values() if v]
    return {
        "path": str(Path(source).resolve()),
        "size": sum(v[0] for v in present),
        "mtime_ns": max((v[1] for v in present), default=0),
        "components": parts,
    }


def _open(path: Path, required: Sequence[str]) -> pq.ParquetFile:
    """Open a component file for column and row-group reads; check its required columns."""
    try:
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    except _READ_ERRORS as e:
        raise ComponentError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None
    missing = [c for c in required if c not in pf.schema_arrow.names]
    if missing:
        pf.close()
        raise ComponentError(f"{path}: not a Waymo v2 {path.parent.name} file, missing columns {missing}")
    return pf


def _read(pf: pq.ParquetFile, path: Path, columns: Sequence[str]) -> pa.Table:
    try:
        return pf.read(columns=list(columns), use_threads=False)
    except _READ_ERRORS as e:
        raise ComponentError(f"{path}: columns {list(columns)} unreadable ({type(e).__name__}: {e})") from None


def _keys(table: pa.Table, path: Path, problem: Problem, with_camera: bool = True) -> tuple[np.ndarray, ...]:
    """Timestamps (and camera numbers) of every row; ``-1`` marks rows whose key is null (reported)."""
    names = [KEY_TIMESTAMP] + ([KEY_CAMERA] if with_camera else [])
    cols = [table.column(n) for n in names]
    nulls = sum(c.null_count for c in cols)
    if nulls:
        problem("corrupt_record", None, f"{path}: {nulls} null key value(s) in {names}; those rows are ignored")
    return tuple(pc.fill_null(c, -1).to_numpy().astype(np.int64) for c in cols)


def _read_boxes(path: Path, camera: int, problem: Problem) -> tuple[np.ndarray, dict[int, tuple]]:
    """Timestamps of all box rows, and ``{timestamp: (boxes (N, 4), types (N,))}`` of ``camera``.

    Boxes keep their order in the file. Null coordinates become NaN and null types 0, so
    the conversion counts them as bad boxes and unknown labels.
    """
    pf = _open(path, [KEY_TIMESTAMP, KEY_CAMERA, *_BOX_VALUES, BOX_TYPE])
    try:
        table = _read(pf, path, [KEY_TIMESTAMP, KEY_CAMERA, *_BOX_VALUES, BOX_TYPE])
    finally:
        pf.close()
    ts, cams = _keys(table, path, problem)
    mine = np.flatnonzero((cams == camera) & (ts >= 0))
    values = np.stack(
        [pc.fill_null(table.column(c).cast(pa.float64()), np.nan).to_numpy() for c in _BOX_VALUES], axis=1
    )[mine]
    types = pc.fill_null(table.column(BOX_TYPE).cast(pa.int64()), 0).to_numpy()[mine]
    order = np.argsort(ts[mine], kind="stable")
    uniq, starts = np.unique(ts[mine][order], return_index=True)
    groups = np.split(order, starts[1:])
    by_ts = {int(t): (values[g].astype(np.float64), types[g].astype(np.int64)) for t, g in zip(uniq, groups)}
    return ts[ts >= 0], by_ts


def _read_stats(path: Path, problem: Problem) -> tuple[np.ndarray, dict[int, dict[str, str]]]:
    """Timestamps of the stats rows and ``{timestamp: {time_of_day, weather, location}}``.

    The stats file is optional: when it is absent, or unreadable (reported as
    ``bad_component_file``), frames keep unknown conditions.
    """
    if not path.is_file():
        return np.zeros(0, np.int64), {}
    try:
        pf = _open(path, [KEY_TIMESTAMP])
        try:
            present = [c for c in _STATS_FIELDS.values() if c in pf.schema_arrow.names]
            table = _read(pf, path, [KEY_TIMESTAMP, *present])
        finally:
            pf.close()
    except ComponentError as e:
        problem("bad_component_file", None, f"{e}; time of day, weather and location stay unknown")
        return np.zeros(0, np.int64), {}
    (ts,) = _keys(table, path, problem, with_camera=False)
    columns = {k: table.column(c).to_pylist() for k, c in _STATS_FIELDS.items() if c in present}
    by_ts: dict[int, dict[str, str]] = {}
    for i, t in enumerate(ts.tolist()):
        if t >= 0 and t not in by_ts:
            by_ts[t] = {k: v[i] for k, v in columns.items() if v[i]}
    return ts[ts >= 0], by_ts


def _read_images(pf: pq.ParquetFile, rows: np.ndarray) -> Iterator[tuple[int, bytes | None | Exception]]:
    """``(row, image)`` of the sorted file ``rows``, in file order.

    Only the image column is read, ``_IMAGE_BATCH_ROWS`` rows at a time and only in row
    groups that hold a wanted row. When reading fails, the exception is yielded for each
    wanted row it loses.
    """
    start = 0
    for rg in range(pf.num_row_groups):
        n = pf.metadata.row_group(rg).num_rows
        lo, hi = np.searchsorted(rows, [start, start + n])
        wanted = rows[lo:hi] - start
        done = 0
        if len(wanted):
            try:
                offset = 0
                batches = pf.iter_batches(
                    batch_size=_IMAGE_BATCH_ROWS, row_groups=[rg], columns=[IMAGE], use_threads=False
                )
                for batch in batches:
                    a, b = np.searchsorted(wanted, [offset, offset + batch.num_rows])
                    if b > a:
                        values = batch.column(0).take(pa.array(wanted[a:b] - offset)).to_pylist()
                        for r, v in zip(wanted[a:b].tolist(), values):
                            yield start + r, v
                        done = b
                    offset += batch.num_rows
            except _READ_ERRORS as e:
                for r in wanted[done:].tolist():
                    yield start + r, e
        start += n


def _camera_names(numbers: Iterable[int]) -> tuple[str, ...]:
    known = fp.CameraName._value2member_map_
    return tuple(sorted(fp.CameraName(n).name if n in known else str(n) for n in set(numbers)))


@dataclass
class _Keys:
    """A segment without its images: image row keys, the chosen camera's boxes, the stats."""

    ts: np.ndarray  # timestamp of each camera_image row (-1: null key)
    cams: np.ndarray  # camera number of each camera_image row
    box_ts: np.ndarray  # timestamps of all camera_box rows (any camera)
    boxes: dict[int, tuple[np.ndarray, np.ndarray]]  # timestamp -> boxes, types of the chosen camera
    stats_ts: np.ndarray
    stats: dict[int, dict[str, str]]

    def frame_timestamps(self) -> np.ndarray:
        """The segment's frames: distinct timestamps of its image, box and stats rows."""
        return np.unique(np.concatenate([self.ts[self.ts >= 0], self.box_ts, self.stats_ts]))

    def cameras_at(self, t: int) -> tuple[str, ...]:
        return _camera_names(self.cams[self.ts == t].tolist())

    def stats_at(self, t: int) -> dict[str, str]:
        """The frame's stats; a frame without a stats row takes the segment's first."""
        if t in self.stats:
            return dict(self.stats[t])
        return dict(self.stats[int(self.stats_ts.min())]) if len(self.stats_ts) else {}


def _image_rows(keys: _Keys, camera: int, problem: Problem) -> dict[int, int]:
    """``{timestamp: camera_image row}`` of ``camera``; repeated timestamps keep their first row (reported)."""
    mine = np.flatnonzero((keys.ts >= 0) & (keys.cams == camera))
    uniq, first = np.unique(keys.ts[mine], return_index=True)
    if len(uniq) < len(mine):
        extra = np.setdiff1d(np.arange(len(mine)), first)
        problem(
            "duplicate_image",
            None,
            f"{len(extra)} repeated {_camera_names([camera])[0]} image row(s) at timestamp(s) "
            f"{sorted(set(keys.ts[mine][extra].tolist()))[:5]}; the first row of each is used",
        )
    return dict(zip(uniq.tolist(), mine[first].tolist()))


def iter_frames(
    source: str | os.PathLike, camera: str | int, stride: int, problem: Problem
) -> Iterator[tuple[int, SourceFrame | None]]:
    """``(frame index, frame)`` of every frame of the v2 segment ``source``, in timestamp order.

    ``source`` is the segment's ``camera_image/<segment>.parquet``. The frames of a
    segment are the distinct timestamps of its image, box and stats rows (any camera);
    the index is the rank of the timestamp. Every ``stride``-th frame (index 0,
    stride, ...) is read and yielded as a :class:`SourceFrame` of ``camera``; the others
    are yielded as ``None`` without reading their image. A frame without an image of
    ``camera`` comes with ``image=None`` and the cameras it has.

    Problems are reported through ``problem(reason, record, detail)``: a missing
    ``camera_box`` file (``missing_box_file``: the segment's objects are unlabelled,
    so no frame is yielded), an unusable component file (``bad_component_file``; the
    segment is skipped unless only the stats file is bad), null keys
    (``corrupt_record``) and repeated images of one camera and timestamp
    (``duplicate_image``, the first is used).
    """
    source, stride = Path(source), int(stride)
    cam_id = fp.camera_id(camera)
    box_path = v2_component_path(source, V2_BOX_DIR)
    if not box_path.is_file():
        problem(
            "missing_box_file",
            None,
            f"no camera_box file {box_path}: the segment's objects are unlabelled, so no frame of it is used",
        )
        return
    try:
        pf = _open(source, [KEY_TIMESTAMP, KEY_CAMERA, IMAGE])
    except ComponentError as e:
        problem("bad_component_file", None, f"{e}; segment skipped")
        return
    try:
        try:
            ts, cams = _keys(_read(pf, source, [KEY_TIMESTAMP, KEY_CAMERA]), source, problem)
            box_ts, boxes = _read_boxes(box_path, cam_id, problem)
        except ComponentError as e:
            problem("bad_component_file", None, f"{e}; segment skipped")
            return
        stats_ts, stats = _read_stats(v2_component_path(source, V2_STATS_DIR), problem)
        yield from _frames(pf, _Keys(ts, cams, box_ts, boxes, stats_ts, stats), cam_id, stride, problem)
    finally:
        pf.close()


def _frames(pf: pq.ParquetFile, keys: _Keys, camera: int, stride: int, problem: Problem):
    """The frame loop of :func:`iter_frames`: images read in file order, frames yielded in time order."""
    cam_name = _camera_names([camera])[0]
    frame_ts = keys.frame_timestamps()
    image_row = _image_rows(keys, camera, problem)
    wanted = np.sort(np.asarray([image_row[t] for t in frame_ts[::stride].tolist() if t in image_row], np.int64))
    images = _read_images(pf, wanted)
    pending: dict[int, bytes | None | Exception] = {}  # read, not yet yielded (rows out of time order)
    empty = (np.zeros((0, 4), np.float64), np.zeros(0, np.int64))
    for index, t in enumerate(frame_ts.tolist()):
        if index % stride:
            yield index, None
            continue
        frame = SourceFrame(index, t, None, *keys.boxes.get(t, empty), stats=keys.stats_at(t))
        row = image_row.get(t)
        if row is None:
            frame.cameras = keys.cameras_at(t)
        else:
            while row not in pending:
                got = next(images, None)
                if got is None:
                    break
                pending[got[0]] = got[1]
            value = pending.pop(row, None)
            if isinstance(value, Exception):
                why = "".join(c for c in " ".join(str(value).split()) if c.isprintable())[:200]
                detail = f"{cam_name} image (row {row}) unreadable ({type(value).__name__}: {why})"
                frame.error = ("corrupt_record", detail)
            else:
                frame.image = value or None
                frame.cameras = (cam_name,)
        yield index, frame


# ------------------------------------------------------------------ writing
@dataclass
class FrameRows:
    """What one frame contributes to the component files (input of :func:`component_tables`).

    ``images`` maps camera numbers to JPEG bytes; ``boxes`` maps camera numbers to
    ``(boxes (N, 4) [center_x, center_y, size_x, size_y] in pixels, types (N,), object ids)``.
    """

    timestamp_micros: int
    images: dict[int, bytes]
    boxes: dict[int, tuple[np.ndarray, np.ndarray, Sequence[str]]] = field(default_factory=dict)
    stats: dict[str, str] = field(default_factory=dict)
    object_counts: dict[int, int] = field(default_factory=dict)  # Label.Type -> objects in the segment


def component_tables(segment: str, frames: Iterable[FrameRows]) -> dict[str, pa.Table]:
    """The ``camera_image``, ``camera_box`` and ``stats`` tables of one segment."""
    img: dict[str, list] = {n: [] for n in IMAGE_SCHEMA.names}
    box: dict[str, list] = {n: [] for n in BOX_SCHEMA.names}
    st: dict[str, list] = {n: [] for n in STATS_SCHEMA.names}
    for f in frames:
        t = int(f.timestamp_micros)
        for cam, data in f.images.items():
            for name, value in zip(IMAGE_SCHEMA.names, (segment, t, int(cam), data, t / 1e6)):
                img[name].append(value)
        for cam, (values, types, ids) in f.boxes.items():
            for (cx, cy, sx, sy), typ, oid in zip(np.asarray(values, np.float64).reshape(-1, 4), types, ids):
                row = (segment, t, int(cam), str(oid), float(cx), float(cy), float(sx), float(sy), int(typ))
                for name, value in zip(BOX_SCHEMA.names, row):
                    box[name].append(value)
        counts = sorted(f.object_counts.items())
        row = (
            segment,
            t,
            f.stats.get("time_of_day"),
            f.stats.get("location"),
            f.stats.get("weather"),
            [int(k) for k, _ in counts],
            [int(v) for _, v in counts],
        )
        for name, value in zip(STATS_SCHEMA.names, row):
            st[name].append(value)
    return {
        V2_IMAGE_DIR: pa.Table.from_pydict(img, schema=IMAGE_SCHEMA),
        V2_BOX_DIR: pa.Table.from_pydict(box, schema=BOX_SCHEMA),
        V2_STATS_DIR: pa.Table.from_pydict(st, schema=STATS_SCHEMA),
    }


def write_segment(
    root: str | os.PathLike, segment: str, tables: dict[str, pa.Table], row_group_size: int = 16
) -> Path:
    """Write ``root/<component>/<segment>.parquet`` for each table; returns the camera_image path.

    Each file is written atomically and recorded as the project's
    (:func:`urban_detection.files.atomic_path`), so a reader never sees a half-written
    component and a file of the same name that the project did not write is never
    overwritten (``ForeignFileError``). ``row_group_size`` rows per row group (Waymo's
    files hold many row groups; small ones here exercise the row-group-wise reading).
    """
    root = Path(root)
    for comp, table in tables.items():
        with atomic_path(root / comp / f"{segment}.parquet") as tmp:
            pq.write_table(table, tmp, row_group_size=int(row_group_size))
    return root / V2_IMAGE_DIR / f"{segment}.parquet"


__all__ = [
    "BOX_SCHEMA",
    "COMPONENTS",
    "ComponentError",
    "FrameRows",
    "IMAGE_SCHEMA",
    "STATS_SCHEMA",
    "component_tables",
    "input_stamp",
    "is_v2_segment",
    "iter_frames",
    "segment_name",
    "write_segment",
]
