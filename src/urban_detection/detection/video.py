"""Detection videos (MP4/GIF) and a small IoU tracker that steadies boxes between frames.

Boxes follow the project convention: float32 ``(N, 4)`` normalised
``[ymin, xmin, ymax, xmax]``; labels are label-map ids (1 vehicle, 2 pedestrian,
4 cyclist).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from urban_detection.detection.draw import to_uint8_rgb
from urban_detection.files import commit_temp, discard_temp, reserve_temp

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- video


def _as_frame(frame: Any, index: int, size: tuple[int, int] | None) -> np.ndarray:
    try:
        arr = to_uint8_rgb(frame)
    except ValueError as err:
        raise ValueError(f"frame {index}: {err}") from None
    if size is not None and arr.shape[:2] != size:
        logger.warning(
            "frame %d: size %s differs from the first frame's %s; resizing",
            index, arr.shape[:2], size,
        )
        arr = np.asarray(Image.fromarray(arr).resize((size[1], size[0]), Image.BILINEAR))
    return np.ascontiguousarray(arr)


def _pad_even(arr: np.ndarray) -> np.ndarray:
    """Pad by one edge pixel where a side is odd (H.264 yuv420p needs even sides)."""
    pad_h, pad_w = arr.shape[0] % 2, arr.shape[1] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return arr


def write_video(frames: Iterable[Any], path: str | Path, fps: float = 10) -> int:
    """Write uint8 HxWx3 frames to ``path`` as MP4 (``.mp4``) or GIF (``.gif``).

    MP4 is H.264 (libx264, yuv420p, readable by browsers and the MLflow UI) through
    imageio-ffmpeg, streamed frame by frame; odd widths/heights are padded by one
    replicated edge pixel (no rescaling). GIF frames are held in memory and written
    by Pillow, looping forever. Frames of a different size than the first are resized
    to it (with a warning). Parent folders are created. Returns the number of frames.

    The video is written to a temporary file beside ``path`` and moved onto it at the
    end, recorded as the project's (:mod:`urban_detection.files`): an interrupted
    write leaves ``path`` as it was, and a file at ``path`` that the project did not
    write raises :class:`~urban_detection.files.ForeignFileError` before any frame is
    consumed (the file stays untouched).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"{path}: unsupported video extension {suffix!r} (use .mp4 or .gif)")
    if fps <= 0:
        raise ValueError("fps must be positive")
    tmp = reserve_temp(path, keep_suffix=True)  # ffmpeg picks the container from the suffix
    try:
        count = _write_frames(frames, tmp, suffix, fps, path)
    except BaseException:
        discard_temp(tmp)
        raise
    commit_temp(tmp, path)
    return count


def _write_frames(frames: Iterable[Any], out: Path, suffix: str, fps: float, path: Path) -> int:
    """Write the video to ``out`` (a temporary file for ``path``, named in messages)."""
    iterator = iter(frames)
    try:
        first = _as_frame(next(iterator), 0, None)
    except StopIteration:
        raise ValueError(f"{path}: no frames to write") from None
    size = first.shape[:2]

    def all_frames():
        yield first
        for i, frame in enumerate(iterator, start=1):
            yield _as_frame(frame, i, size)

    count = 0
    if suffix == ".gif":
        pil = [Image.fromarray(f) for f in all_frames()]
        count = len(pil)
        pil[0].save(
            out, format="GIF", save_all=True, append_images=pil[1:], duration=max(1, round(1000 / fps)),
            loop=0, optimize=False,
        )
        return count

    import imageio_ffmpeg

    even = _pad_even(first)
    writer = imageio_ffmpeg.write_frames(
        str(out),
        size=(even.shape[1], even.shape[0]),
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        macro_block_size=1,
        quality=7,
        ffmpeg_log_level="error",
        output_params=["-movflags", "+faststart"],
    )
    writer.send(None)  # start the ffmpeg process
    try:
        for frame in all_frames():
            writer.send(np.ascontiguousarray(_pad_even(frame)).tobytes())
            count += 1
    finally:
        writer.close()
    return count


# --------------------------------------------------------------------------- IoU


def box_iou(a: Any, b: Any) -> np.ndarray:
    """Pairwise IoU of two sets of yxyx boxes: ``(N, 4), (M, 4) -> (N, M)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ymin = np.maximum(a[:, None, 0], b[None, :, 0])
    xmin = np.maximum(a[:, None, 1], b[None, :, 1])
    ymax = np.minimum(a[:, None, 2], b[None, :, 2])
    xmax = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ymax - ymin, 0, None) * np.clip(xmax - xmin, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _assign(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) maximising total IoU, each with IoU >= threshold."""
    if iou.size == 0:
        return []
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # greedy: best remaining pair first
        pairs, used_r, used_c = [], set(), set()
        for flat in np.argsort(-iou, axis=None):
            r, c = np.unravel_index(flat, iou.shape)
            if iou[r, c] < threshold:
                break
            if r not in used_r and c not in used_c:
                pairs.append((int(r), int(c)))
                used_r.add(r)
                used_c.add(c)
        return pairs
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= threshold]


# --------------------------------------------------------------------------- tracker


@dataclass
class _Track:
    track_id: int
    box: np.ndarray
    velocity: np.ndarray
    label: int
    score: float
    hits: int = 1
    misses: int = 0

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity


class IoUTracker:
    """Frame-to-frame IoU tracker with smoothed boxes and short gap filling.

    Each :meth:`update` takes one frame's detections and:

    1. predicts every live track one frame ahead (last box + smoothed velocity);
    2. matches detections to tracks of the same label by IoU (Hungarian assignment
       via scipy, greedy if scipy is missing); a pair needs ``IoU >= iou_threshold``;
    3. for matched tracks, blends prediction and detection:
       ``box = smoothing * predicted + (1 - smoothing) * detection`` (an exponential
       moving average; ``smoothing=0`` returns raw detections) and updates the
       velocity the same way; the score is the detection's;
    4. starts a new track (new id) for every unmatched detection;
    5. keeps an unmatched track alive for up to ``max_age`` frames, moving it by its
       velocity, and still *outputs* it (with its last score) so that a detection that
       blinks out for one or two frames does not flicker in the video. After
       ``max_age`` missed frames the track is dropped. ``max_age=0`` disables this.

    A track is reported once it has been matched ``min_hits`` times (``min_hits=1``:
    from its first detection). Outputs are sorted by track id.
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_age: int = 2,
        min_hits: int = 1,
        smoothing: float = 0.5,
    ):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError("smoothing must be in [0, 1)")
        if max_age < 0 or min_hits < 1:
            raise ValueError("max_age must be >= 0 and min_hits >= 1")
        self.iou_threshold = float(iou_threshold)
        self.max_age = int(max_age)
        self.min_hits = int(min_hits)
        self.smoothing = float(smoothing)
        self.reset()

    def reset(self) -> None:
        """Forget all tracks (e.g. between trips); ids restart at 1."""
        self._tracks: list[_Track] = []
        self._next_id = 1

    def update(
        self, boxes: Any, labels: Any, scores: Any = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Feed one frame; return ``(boxes, labels, scores, track_ids)`` to show for it.

        Returned boxes are float32 ``(K, 4)`` clipped to [0, 1], labels and track ids
        int32, scores float32.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        scores = (
            np.ones(len(boxes)) if scores is None
            else np.asarray(scores, dtype=np.float64).reshape(-1)
        )
        if not len(boxes) == len(labels) == len(scores):
            raise ValueError("boxes, labels and scores must have the same length")

        predicted = np.array([t.predicted() for t in self._tracks]).reshape(-1, 4)
        iou = box_iou(predicted, boxes)
        if iou.size:
            same = np.array([t.label for t in self._tracks])[:, None] == labels[None, :]
            iou = np.where(same, iou, 0.0)
        pairs = _assign(iou, self.iou_threshold)

        s = self.smoothing
        matched_tracks, matched_dets = set(), set()
        for ti, di in pairs:
            track = self._tracks[ti]
            old = track.box
            track.box = s * track.predicted() + (1.0 - s) * boxes[di]
            track.velocity = s * track.velocity + (1.0 - s) * (track.box - old)
            track.score = float(scores[di])
            track.hits += 1
            track.misses = 0
            matched_tracks.add(ti)
            matched_dets.add(di)

        survivors = []
        for ti, track in enumerate(self._tracks):
            if ti not in matched_tracks:
                track.misses += 1
                if track.misses > self.max_age:
                    continue
                track.box = track.predicted()
            survivors.append(track)
        for di in range(len(boxes)):
            if di not in matched_dets:
                survivors.append(
                    _Track(self._next_id, boxes[di].copy(), np.zeros(4), int(labels[di]), float(scores[di]))
                )
                self._next_id += 1
        self._tracks = survivors

        shown = sorted(
            (t for t in self._tracks if t.hits >= self.min_hits), key=lambda t: t.track_id
        )
        out_boxes = np.clip(np.array([t.box for t in shown]).reshape(-1, 4), 0.0, 1.0)
        return (
            out_boxes.astype(np.float32),
            np.array([t.label for t in shown], dtype=np.int32),
            np.array([t.score for t in shown], dtype=np.float32),
            np.array([t.track_id for t in shown], dtype=np.int32),
        )


def track_sequence(
    per_frame_dets: Sequence[Mapping[str, Any]],
    score_threshold: float = 0.0,
    **tracker_kwargs: Any,
) -> list[dict]:
    """Run a fresh :class:`IoUTracker` over a trip's frames.

    Detections below ``score_threshold`` are removed first. Returns one dict per
    frame (``boxes, labels, scores, track_ids`` plus the input's other keys).
    """
    tracker = IoUTracker(**tracker_kwargs)
    out = []
    for rec in per_frame_dets:
        boxes, labels, scores = _filtered(rec, score_threshold)
        b, lab, sc, ids = tracker.update(boxes, labels, scores)
        new = {k: v for k, v in rec.items() if k not in ("boxes", "labels", "scores", "track_ids")}
        new.update(boxes=b, labels=lab, scores=sc, track_ids=ids)
        out.append(new)
    return out


def _filtered(rec: Mapping[str, Any], score_threshold: float):
    boxes = np.asarray(rec.get("boxes", []), dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(rec.get("labels", []), dtype=np.int64).reshape(-1)
    scores = rec.get("scores")
    scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    keep = scores >= score_threshold
    return boxes[keep], labels[keep], scores[keep]


class PersistenceCounter:
    """:func:`persistence_rate` fed one frame at a time (only the previous frame is kept): ``add`` each
    frame's detections in order, then ``rate``."""

    def __init__(self, iou: float = 0.5, score_threshold: float = 0.0):
        self.iou, self.score_threshold = iou, score_threshold
        self.kept = self.total = 0
        self._previous: tuple | None = None

    def add(self, rec: Mapping[str, Any]) -> None:
        current = _filtered(rec, self.score_threshold)
        if self._previous is not None:
            (b0, l0, _), (b1, l1, _) = self._previous, current
            if len(b0):
                self.total += len(b0)
                if len(b1):
                    overlap = box_iou(b0, b1)
                    overlap = np.where(l0[:, None] == l1[None, :], overlap, 0.0)
                    self.kept += int(np.sum(overlap.max(axis=1) >= self.iou))
        self._previous = current

    @property
    def rate(self) -> float:
        return float(self.kept / self.total) if self.total else float("nan")


def persistence_rate(
    per_frame_dets: Iterable[Mapping[str, Any]],
    iou: float = 0.5,
    score_threshold: float = 0.0,
) -> float:
    """Share of detections in frame t with a same-class detection of IoU >= ``iou`` in t+1.

    The flicker measure: 1.0 means every shown box is still there in the next frame.
    Counted over frames 0..T-2 (the last frame has no successor), after dropping
    detections below ``score_threshold``. ``NaN`` when there is nothing to count.
    Compare raw detections with :func:`track_sequence` output to see the tracker's effect.
    """
    counter = PersistenceCounter(iou, score_threshold)
    for rec in per_frame_dets:
        counter.add(rec)
    return counter.rate
