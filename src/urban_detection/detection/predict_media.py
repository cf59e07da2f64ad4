"""A detector over a user's media (:mod:`.media`): drawn frames, COCO results, a table and a summary.

:func:`predict_media` reads the frames, detects in batches through the one detector API
(:func:`~.detections.predict_images`: any image size, uint8 in), draws the detections on
each frame (shrunk to ``max_side``) and keeps counts and timings. :func:`coco_results` and
:func:`detections_table` turn the result into the COCO results list (pixel ``xywh``,
``image_id`` 1..N in reading order) and one CSV row per detection.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from urban_detection.detection.detections import DEFAULT_SCORE_THRESHOLD, Detections, counts_by_class, predict_images
from urban_detection.detection.media import iter_media, media_kind, media_sources


@dataclass
class MediaPredictions:
    """What :func:`predict_media` found: per frame its name, source file, size and detections, the
    drawn frames grouped by source file, and the read report (``skipped`` counts and items)."""

    kind: str
    names: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    detections: list[Detections] = field(default_factory=list)
    drawn: dict[str, list[np.ndarray]] = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    seconds: float = 0.0
    inference_seconds: float = 0.0


def _progress(path: Path, kind: str, sources: list[Path]):
    """A tqdm bar over frames: counted ahead for images, estimated for videos, open for Waymo logs."""
    from tqdm.auto import tqdm

    total = len(sources) if kind == "images" else None
    if kind == "video":
        import imageio_ffmpeg

        try:
            total = sum(imageio_ffmpeg.count_frames_and_secs(str(s))[0] for s in sources)
        except (RuntimeError, OSError):
            total = None
    return tqdm(total=total, desc=f"predict {path.name}", unit="frame", mininterval=1.0)


def predict_media(detector: Any, path: str | Path, *, camera: str = "FRONT",
                  score_threshold: float = DEFAULT_SCORE_THRESHOLD, batch_size: int = 8,
                  max_side: int | None = 960, max_frames: int | None = None) -> MediaPredictions:
    """Run ``detector`` (exported or trained: anything :func:`~.detections.predict_images` takes)
    over every readable frame of ``path`` and draw what it finds at ``score_threshold``."""
    from urban_detection.detection.draw import draw_detections
    from urban_detection.detection.render import batched, fit_to_side

    path = Path(path)
    kind = media_kind(path)
    sources = media_sources(path)
    out = MediaPredictions(kind=kind)
    start = time.perf_counter()
    with _progress(path, kind, sources) as bar:
        for batch in batched(iter_media(path, camera, out.report), batch_size, max_frames):
            t0 = time.perf_counter()
            dets = predict_images(detector, [f.image for f in batch], score_threshold=score_threshold,
                                  batch_size=batch_size)
            out.inference_seconds += time.perf_counter() - t0
            for frame, det in zip(batch, dets):
                source = frame.name.split("#")[0]
                out.names.append(frame.name)
                out.sources.append(source)
                out.sizes.append(tuple(frame.image.shape[:2]))
                out.detections.append(det)
                out.drawn.setdefault(source, []).append(
                    draw_detections(fit_to_side(frame.image, max_side), det.boxes, det.labels, det.scores))
            bar.update(len(batch))
    out.seconds = time.perf_counter() - start
    return out


def coco_results(pred: MediaPredictions) -> list[dict]:
    """COCO results (``image_id`` = 1 + reading order, ``category_id`` label id, pixel ``bbox`` xywh, ``score``)."""
    results = []
    for image_id, ((height, width), det) in enumerate(zip(pred.sizes, pred.detections), start=1):
        for (x0, y0, x1, y1), label, score in zip(det.pixel_boxes(height, width), det.labels, det.scores):
            results.append({"image_id": image_id, "category_id": int(label),
                            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "score": float(score)})
    return results


def detections_table(pred: MediaPredictions) -> pd.DataFrame:
    """One row per detection: ``image_id``, ``frame`` (its name), ``class``, ``label``, ``score`` and the
    pixel box ``xmin, ymin, xmax, ymax`` of the original frame (``width``, ``height``)."""
    rows = []
    for image_id, (name, (height, width), det) in enumerate(zip(pred.names, pred.sizes, pred.detections), start=1):
        for (x0, y0, x1, y1), label, cls, score in zip(det.pixel_boxes(height, width), det.labels, det.names,
                                                       det.scores):
            rows.append({"image_id": image_id, "frame": name, "class": cls, "label": int(label),
                         "score": round(float(score), 5), "xmin": round(float(x0), 2), "ymin": round(float(y0), 2),
                         "xmax": round(float(x1), 2), "ymax": round(float(y1), 2), "width": width, "height": height})
    columns = ["image_id", "frame", "class", "label", "score", "xmin", "ymin", "xmax", "ymax", "width", "height"]
    return pd.DataFrame(rows, columns=columns)


def summary(pred: MediaPredictions, max_items: int = 100) -> dict[str, Any]:
    """Frames, detections per class, frames/s and everything skipped (names of the first ``max_items``)."""
    frames = len(pred.names)
    skipped_items = pred.report.get("skipped_items", [])
    return {
        "kind": pred.kind,
        "frames": frames,
        "sources": len(pred.drawn),
        "detections": int(sum(len(d) for d in pred.detections)),
        "detections_per_class": counts_by_class(pred.detections),
        "frames_with_detections": int(sum(1 for d in pred.detections if len(d))),
        "seconds": round(pred.seconds, 3),
        "frames_per_sec": round(frames / pred.seconds, 3) if pred.seconds > 0 else None,
        "inference_frames_per_sec": round(frames / pred.inference_seconds, 3) if pred.inference_seconds > 0 else None,
        "skipped": dict(pred.report.get("skipped", {})),
        "skipped_total": int(sum(pred.report.get("skipped", {}).values())),
        "skipped_items": skipped_items[:max_items],
    }
