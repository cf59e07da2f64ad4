"""A user's own media as frames: a folder of images, a video file, or Waymo camera logs.

:func:`media_kind` tells what a path is and :func:`iter_media` yields its frames as
:class:`MediaFrame` (a name, an index and a uint8 RGB image):

* ``images``: a folder of JPEG/PNG/BMP/WebP files, read in name order (not recursive);
* ``video``: an MP4/MOV/AVI/MKV/WebM file, decoded by ffmpeg (imageio-ffmpeg);
* ``waymo_v1``: a raw v1 segment (``*.tfrecord``), or a folder of them: every frame of one camera
  (a file already processed into tf.Examples gives the frames it holds);
* ``waymo_v2``: a v2 folder (``camera_image/*.parquet`` beside ``camera_box/``), or one
  ``camera_image/<segment>.parquet``: every frame of one camera.

Nothing is dropped silently: a file of the folder that is not an image, an image that does
not decode, a video that stops early and a Waymo record without the camera's image are
logged with their name, counted in ``report["skipped"]`` (reason -> count) and listed in
``report["skipped_items"]``; the rest is read.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
KINDS = ("images", "video", "waymo_v1", "waymo_v2")


@dataclass
class MediaFrame:
    """One frame: ``name`` (the image file, or ``<video or segment>#<index>``), its ``index`` in
    the source and the uint8 HxWx3 RGB ``image``."""

    name: str
    index: int
    image: np.ndarray


def skip(report: dict | None, reason: str, item: str, detail: str) -> None:
    """Log a skipped item and count it in ``report`` (``skipped`` counts, ``skipped_items`` names)."""
    log.warning("%s: %s; skipped", item, detail)
    if report is not None:
        report.setdefault("skipped", {})
        report["skipped"][reason] = report["skipped"].get(reason, 0) + 1
        report.setdefault("skipped_items", []).append({"item": item, "reason": reason, "detail": detail[:300]})


def _segments(folder: Path) -> list[Path]:
    from urban_detection.waymo.sources import find_sources, is_v2_segment

    return [p for p in find_sources(folder) if not is_v2_segment(p)]


def media_kind(path: str | Path) -> str:
    """What ``path`` holds (one of :data:`KINDS`); ``FileNotFoundError``/``ValueError`` when nothing usable."""
    from urban_detection.waymo.sources import TFRECORD_NAME, V2_IMAGE_DIR, is_v2_segment

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"predict source {path} does not exist")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            return "video"
        if TFRECORD_NAME.search(path.name):
            return "waymo_v1"
        if is_v2_segment(path):
            return "waymo_v2"
        raise ValueError(f"predict source {path}: not a video ({', '.join(sorted(VIDEO_SUFFIXES))}), a Waymo "
                         f"segment (*.tfrecord) or a v2 camera_image/*.parquet file; give a folder for images")
    if (path / V2_IMAGE_DIR).is_dir():
        return "waymo_v2"
    if _segments(path):
        return "waymo_v1"
    return "images"


def media_sources(path: str | Path) -> list[Path]:
    """The files :func:`iter_media` reads for ``path``, in order (for counts and progress)."""
    from urban_detection.waymo.sources import find_sources, is_v2_segment

    path, kind = Path(path), media_kind(path)
    if path.is_file():
        return [path]
    if kind == "images":
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if kind == "waymo_v2":
        return [p for p in find_sources(path) if is_v2_segment(p)]
    return _segments(path)


def iter_media(path: str | Path, camera: str = "FRONT", report: dict | None = None) -> Iterator[MediaFrame]:
    """Every readable frame of ``path`` (see the module doc), in order."""
    kind = media_kind(path)
    readers = {"images": _image_frames, "video": _video_frames, "waymo_v1": _v1_frames, "waymo_v2": _v2_frames}
    for source in media_sources(path):
        yield from readers[kind](source, camera, report)


def _image_frames(file: Path, camera: str, report: dict | None) -> Iterator[MediaFrame]:
    if file.suffix.lower() not in IMAGE_SUFFIXES:
        skip(report, "not_an_image", str(file), f"not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return
    try:
        with Image.open(file) as im:
            image = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        skip(report, "unreadable_image", str(file), f"image does not decode ({exc})")
        return
    yield MediaFrame(file.name, 0, image)


def _video_frames(file: Path, camera: str, report: dict | None) -> Iterator[MediaFrame]:
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(file))
        meta = next(reader)
    except (RuntimeError, OSError, StopIteration) as exc:
        skip(report, "unreadable_video", str(file), f"video does not open ({_ffmpeg_message(exc)})")
        return
    width, height = meta["size"]
    expected = round(float(meta.get("duration") or 0) * float(meta.get("fps") or 0))
    if report is not None:
        report.setdefault("fps", float(meta.get("fps") or 0) or None)
    index = 0
    try:
        for buffer in reader:
            if len(buffer) != width * height * 3:
                break
            yield MediaFrame(f"{file.name}#{index}", index, np.frombuffer(buffer, np.uint8).reshape(height, width, 3))
            index += 1
    except (RuntimeError, OSError) as exc:
        skip(report, "truncated_video", f"{file} frame {index}", f"decoding stopped ({_ffmpeg_message(exc)})")
        return
    finally:
        reader.close()
    if expected and index < expected - 1:
        skip(report, "truncated_video", f"{file} frame {index}",
             f"only {index} of the {expected} frames its header announces decoded (truncated file?)")


def _ffmpeg_message(exc: Exception) -> str:
    """ffmpeg's own complaint (the last lines of its stderr), not its version banner."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    tail = [line for line in lines if not line.startswith(("ffmpeg version", "built with", "configuration:", "lib"))]
    return " / ".join([lines[0]] + tail[-2:]) if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)


def _v1_frames(file: Path, camera: str, report: dict | None) -> Iterator[MediaFrame]:
    """A raw segment's frames of ``camera``; a processed (tf.Example) file's frames as they are."""
    from urban_detection.detection.render import is_raw_segment, iter_camera_frames, iter_trip_frames

    frames = iter_camera_frames(file, camera, report=report) if is_raw_segment(file) else iter_trip_frames(
        file, report=report)
    for index, image in frames:
        yield MediaFrame(f"{file.name}#{index}", int(index), image)


def _v2_frames(file: Path, camera: str, report: dict | None) -> Iterator[MediaFrame]:
    from urban_detection.waymo.read import decode_image
    from urban_detection.waymo.v2 import iter_frames

    def problem(reason: str, record, detail: str) -> None:
        skip(report, reason, f"{file}" + ("" if record is None else f" frame {record}"), detail)

    for index, frame in iter_frames(file, camera, 1, problem):
        if frame is None:
            continue
        if frame.error is not None or frame.image is None:
            reason, detail = frame.error or ("no_camera_image", f"no {camera} image (cameras: {frame.cameras})")
            skip(report, reason, f"{file} frame {index}", detail)
            continue
        try:
            image = decode_image(frame.image)
        except Exception as exc:  # noqa: BLE001 - any decode failure is this frame's
            skip(report, "undecodable_image", f"{file} frame {index}", f"image does not decode ({exc})")
            continue
        yield MediaFrame(f"{file.parent.parent.name}/{file.name}#{index}", int(index), image)
