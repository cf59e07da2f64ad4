"""Detection videos of whole trips: read every frame, detect, (track), draw, write MP4/GIF.

No Kedro here. Frames come at full rate from the trip's raw Waymo segment when one
is found (ingest keeps only every ``frame_stride``-th frame), otherwise from the
ingested trip TFRecord. The detector is a Keras model or an exported SavedModel
detector (see :func:`urban_detection.detection.predict.detect_batch`).

Frames are decoded shrunk to ``max_side`` and detected in small batches;
:func:`iter_rendered` yields the drawn frames one by one and counts how many detections persist
to the next frame (:func:`urban_detection.detection.video.persistence_rate`); :func:`render_video`
encodes them as they come, so memory stays flat however long the trip (:func:`render_frames`
keeps them all: 200 frames at 960x640 hold about 370 MB).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from urban_detection.detection.draw import draw_detections
from urban_detection.detection.predict import detect_batch
from urban_detection.detection.video import IoUTracker, PersistenceCounter, write_video
from urban_detection.waymo import frame_proto as fp
from urban_detection.waymo.example import decode_example, is_detection_example
from urban_detection.waymo.read import iter_examples, split_source_id

log = logging.getLogger(__name__)
_SEGMENT_AFFIXES = ("segment-", "_with_camera_labels")


def _count(report: dict | None, reason: str) -> None:
    if report is not None:
        skipped = report.setdefault("skipped", {})
        skipped[reason] = skipped.get(reason, 0) + 1


# --------------------------------------------------------------------------- sources


def is_raw_segment(path: str | Path) -> bool:
    """True when the first record of ``path`` is a Waymo ``Frame`` with camera images
    (and not a TF OD API tf.Example)."""
    try:
        for record in tf.data.TFRecordDataset(str(path)).take(1):
            data = record.numpy()
            if is_detection_example(data):
                return False
            try:
                frame = fp.parse_frame(data)
            except Exception:  # noqa: BLE001 - not a Frame proto
                return False
            return len(frame.images) > 0
    except (tf.errors.OpError, OSError) as exc:
        log.warning("%s: cannot read (%s)", path, exc)
    return False


def _bare(name: str) -> str:
    for affix in _SEGMENT_AFFIXES:
        name = name.replace(affix, "")
    return name


def find_raw_segment(trip: str, raw_dir: str | Path | None) -> Path | None:
    """The raw Waymo segment of ``trip`` in ``raw_dir``, or ``None``.

    Matches a ``*.tfrecord`` whose name is the trip's, or equal to it once the
    ``segment-`` / ``_with_camera_labels`` affixes are dropped from both; the file
    must hold Frame protos (processed tf.Example files do not count).
    """
    if raw_dir is None or not Path(raw_dir).is_dir():
        return None
    files = sorted(Path(raw_dir).glob("*.tfrecord"))
    exact = [p for p in files if p.stem == trip]
    loose = [p for p in files if p not in exact and _bare(p.stem) == _bare(trip)]
    for path in exact + loose:
        if is_raw_segment(path):
            return path
    return None


def _jpeg_ratio(encoded: bytes, max_side: int | None) -> int:
    """Largest JPEG decode downscale (1, 2, 4, 8) that keeps the longer side >= ``max_side``."""
    if not max_side or encoded[:2] != b"\xff\xd8":
        return 1
    try:
        h, w = (int(v) for v in tf.io.extract_jpeg_shape(encoded)[:2].numpy())
    except tf.errors.InvalidArgumentError:
        return 1
    ratio = 1
    while ratio < 8 and max(h, w) / (ratio * 2) >= max_side:
        ratio *= 2
    return ratio


def _decode(encoded: bytes, max_side: int | None) -> np.ndarray:
    ratio = _jpeg_ratio(encoded, max_side)
    if encoded[:2] == b"\xff\xd8":
        image = tf.io.decode_jpeg(encoded, channels=3, ratio=ratio).numpy()
    else:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()
    return fit_to_side(image, max_side)


def iter_camera_frames(
    segment_path: str | Path,
    camera: str | int = "FRONT",
    max_side: int | None = None,
    report: dict | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame number, uint8 HxWx3 image)`` for every frame of a raw Waymo segment.

    Frame numbers count the records (0, 1, 2, ... at the camera's 10 Hz). A record
    that is not a Frame, a frame without that camera's image or an image that does
    not decode is logged with file and record index, counted in ``report["skipped"]``
    and left out. ``max_side`` shrinks large images (JPEGs are decoded at 1/2, 1/4 or
    1/8 size directly when that is enough).
    """
    for path, index, data in iter_examples([segment_path], report):
        try:
            frame = fp.parse_frame(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError and friends
            log.warning("%s record %d: not a Waymo Frame (%s); skipped", path, index, exc)
            _count(report, "not_a_frame")
            continue
        encoded = fp.find_image(frame, camera)
        if encoded is None:
            log.warning("%s record %d: no %s camera image; skipped", path, index, camera)
            _count(report, "no_camera_image")
            continue
        try:
            image = _decode(encoded, max_side)
        except (tf.errors.InvalidArgumentError, ValueError) as exc:
            log.warning("%s record %d: image does not decode (%s); skipped", path, index, str(exc)[:200])
            _count(report, "undecodable_image")
            continue
        yield index, image


def iter_trip_frames(
    tfrecord_path: str | Path, max_side: int | None = None, report: dict | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame number, image)`` for every record of an ingested trip TFRecord
    (the frame number from ``image/source_id`` = ``<trip>/<frame>``, else the record index).
    Bad records are logged, counted in ``report["skipped"]`` and left out."""
    for path, index, data in iter_examples([tfrecord_path], report):
        try:
            ex = decode_example(data)
            image = _decode(ex.image, max_side)
        except (ValueError, tf.errors.InvalidArgumentError) as exc:
            log.warning("%s record %d: cannot decode (%s); skipped", path, index, str(exc)[:200])
            _count(report, "undecodable_record")
            continue
        yield split_source_id(ex.source_id, path, index)[1], image


def trip_frame_source(
    trip: str,
    trip_path: str | Path | None,
    raw_dir: str | Path | None = None,
    camera: str | int = "FRONT",
    max_side: int | None = None,
    report: dict | None = None,
) -> tuple[dict, Iterator[tuple[int, np.ndarray]]]:
    """Where a trip's frames come from and an iterator over them.

    The raw segment in ``raw_dir`` when there is one (every frame), else the ingested
    ``trip_path`` (the frames ingest kept). Returns ``({"source": "raw_segment" |
    "trip_tfrecord", "path": ...}, iterator)``.
    """
    raw = find_raw_segment(trip, raw_dir)
    if raw is not None:
        log.info("trip %s: reading every frame of the raw segment %s (camera %s)", trip, raw, camera)
        return {"source": "raw_segment", "path": str(raw), "camera": str(camera)}, iter_camera_frames(
            raw, camera, max_side, report
        )
    if trip_path is None or not Path(trip_path).exists():
        raise FileNotFoundError(f"trip {trip}: no raw segment in {raw_dir} and no trip TFRecord at {trip_path}")
    log.info("trip %s: no raw segment in %s; reading the ingested frames of %s", trip, raw_dir, trip_path)
    return {"source": "trip_tfrecord", "path": str(trip_path)}, iter_trip_frames(trip_path, max_side, report)


# --------------------------------------------------------------------------- rendering


def batched(frames: Iterable, batch_size: int, max_frames: int | None) -> Iterator[list]:
    """Lists of up to ``batch_size`` items of ``frames``, stopping after ``max_frames`` items (``None``: all)."""
    batch: list = []
    for count, item in enumerate(frames):
        if max_frames is not None and count >= max_frames:
            break
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _stack(images: list[np.ndarray]) -> np.ndarray:
    size = images[0].shape[:2]
    same = [im if im.shape[:2] == size else np.asarray(Image.fromarray(im).resize((size[1], size[0]), Image.BILINEAR))
            for im in images]
    return np.stack(same)


def fit_to_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Shrink so that the longer side is at most ``max_side`` (never enlarges)."""
    if not max_side or max(image.shape[:2]) <= max_side:
        return image
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    return np.asarray(Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                    Image.BILINEAR))


@dataclass
class Video:
    """Rendered uint8 RGB frames and their frame rate (what a video dataset writes), or, with ``file``,
    an MP4 already written (by :func:`render_video`, frame by frame) that the dataset moves into place,
    with its GIF in ``gif_file`` when one was asked for."""

    frames: list
    fps: float = 10.0
    gif_max_side: int | None = None  # also write a GIF with frames shrunk to this side (None: no GIF)
    file: str | None = None
    gif_file: str | None = None
    temp_dir: str | None = None  # a temporary folder of ``file``, removed by the dataset once it is moved


def render_frames(detector: Any, frames: Iterable[tuple[int, np.ndarray]], **kwargs) -> tuple[list[np.ndarray],
                                                                                               dict[str, Any]]:
    """The frames of :func:`iter_rendered` as a list, and its info (every drawn frame stays in memory:
    :func:`render_video` writes them as they come instead)."""
    info: dict[str, Any] = {}
    drawn = list(iter_rendered(detector, frames, info, **kwargs))
    return drawn, info


def iter_rendered(
    detector: Any,
    frames: Iterable[tuple[int, np.ndarray]],
    info: dict[str, Any],
    *,
    score_threshold: float = 0.3,
    tracking: bool = True,
    tracker_kwargs: dict | None = None,
    batch_size: int = 8,
    image_size: int | None = None,
    max_frames: int | None = None,
    persistence_iou: float = 0.5,
    max_area_frac: dict | None = None,
) -> Iterator[np.ndarray]:
    """Detect, optionally track and draw ``frames``, yielding each drawn frame as it is ready; once they are
    all drawn ``info`` holds their numbers. Only the current batch and the previous frame's detections are
    kept, so memory does not grow with the number of frames.

    Boxes are drawn in their class colour with label and score; detections below
    ``score_threshold`` are not shown. With ``tracking`` an :class:`~.video.IoUTracker`
    (``tracker_kwargs``) smooths boxes and bridges short gaps. ``max_area_frac``
    applies :func:`~.coco.filter_large_boxes` first. ``info`` gets counts, timings
    and the share of detections that persist to the next frame with and without tracking::

        frames, first_frame, last_frame, seconds, frames_per_sec, inference_seconds,
        detections_per_frame, persistence_raw, persistence_tracked (None untracked)
    """
    from urban_detection.detection.coco import filter_large_boxes

    tracker = IoUTracker(**(tracker_kwargs or {})) if tracking else None
    raw_persistence = PersistenceCounter(iou=persistence_iou)
    shown_persistence = PersistenceCounter(iou=persistence_iou)
    count, shown_total, first, last = 0, 0, None, None
    inference = 0.0
    start = time.perf_counter()
    for batch in batched(frames, batch_size, max_frames):
        images = _stack([im for _, im in batch])
        t0 = time.perf_counter()
        dets = detect_batch(detector, images, image_size, pad_to=batch_size)
        inference += time.perf_counter() - t0
        for (number, _), image, det in zip(batch, images, dets):
            if max_area_frac:
                det = filter_large_boxes(det, max_area_frac)
            keep = det["scores"] >= score_threshold
            raw = {k: np.asarray(det[k])[keep] for k in ("boxes", "labels", "scores")}
            raw_persistence.add(raw)
            if tracker is not None:
                boxes, labels, scores, _ = tracker.update(raw["boxes"], raw["labels"], raw["scores"])
                shown = {"boxes": boxes, "labels": labels, "scores": scores}
            else:
                shown = raw
            shown_persistence.add(shown)
            shown_total += len(shown["labels"])
            first = int(number) if first is None else first
            last = int(number)
            count += 1
            yield draw_detections(image, shown["boxes"], shown["labels"], shown["scores"])
    seconds = time.perf_counter() - start
    info.update({
        "frames": int(count),
        "first_frame": first,
        "last_frame": last,
        "seconds": seconds,
        "frames_per_sec": count / seconds if seconds > 0 else float("nan"),
        "inference_seconds": inference,
        "detections_per_frame": float(shown_total / count) if count else 0.0,
        "persistence_raw": raw_persistence.rate,
        "persistence_tracked": shown_persistence.rate if tracking else None,
    })
    log.info("rendered %d frames in %.1fs (%.1f frames/s; inference %.1fs); persistence %.3f raw, %s tracked",
             count, seconds, info["frames_per_sec"], inference, info["persistence_raw"],
             "n/a" if info["persistence_tracked"] is None else f"{info['persistence_tracked']:.3f}")


def gif_frames(video: Video) -> list[np.ndarray]:
    """The frames of ``video`` shrunk for its GIF (``video.gif_max_side``)."""
    return [fit_to_side(f, video.gif_max_side) for f in video.frames]


def render_video(
    detector: Any,
    frames: Iterable[tuple[int, np.ndarray]],
    out_path: str | Path,
    *,
    fps: float = 10,
    gif_path: str | Path | None = None,
    gif_max_side: int | None = 480,
    **kwargs,
) -> dict[str, Any]:
    """:func:`iter_rendered` written to ``out_path`` (``.mp4`` or ``.gif``) frame by frame as they are drawn,
    and a GIF at ``gif_path`` when given (frames shrunk to ``gif_max_side``, kept until the end as GIFs are
    written whole). Returns the info of :func:`iter_rendered` plus ``video`` and ``gif`` paths."""
    info: dict[str, Any] = {}
    small: list[np.ndarray] | None = [] if gif_path is not None else None

    def drawn() -> Iterator[np.ndarray]:
        for image in iter_rendered(detector, frames, info, **kwargs):
            if small is not None:
                small.append(fit_to_side(image, gif_max_side))
            yield image

    write_video(drawn(), out_path, fps=fps)
    gif = None
    if small:
        write_video(small, gif_path, fps=fps)
        gif = str(gif_path)
    return {**info, "video": str(out_path), "gif": gif}
