"""COCO evaluation with the TF Object Detection API metric names.

Per-frame records use the project conventions (``docs/architecture.md``): boxes are
float32 ``(N, 4)`` normalised ``[ymin, xmin, ymax, xmax]``, labels the seed label-map
ids ``1 vehicle, 2 pedestrian, 4 cyclist``. This module turns them into COCO JSON
(boxes ``[x, y, w, h]`` in pixels, so COCO's small/medium/large areas of 32² and 96²
pixels mean what they mean in published tables) and scores them as pycocotools' ``COCOeval`` does,
with :mod:`.coco_match` (the same numbers, the matches kept in arrays).

Undefined values: COCO reports ``-1`` for a precision/recall that has nothing to
measure (no ground-truth box of that class, or in that area range). These are
returned as ``NaN`` here, never as ``-1``, so that averaging or plotting them can not
silently mix "undefined" with "bad". With no detections at all, every defined metric
is ``0.0``.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from urban_detection.detection.coco_match import CocoEvaluation, CocoMatcher, evaluate_coco

from urban_detection.waymo.example import CLASS_IDS, LABEL_MAP

logger = logging.getLogger(__name__)

# Order of ``COCOeval.stats`` after ``summarize()`` (bbox, maxDets 1/10/100).
SUMMARY_METRICS: tuple[str, ...] = (
    "DetectionBoxes_Precision/mAP",
    "DetectionBoxes_Precision/mAP@.50IOU",
    "DetectionBoxes_Precision/mAP@.75IOU",
    "DetectionBoxes_Precision/mAP (small)",
    "DetectionBoxes_Precision/mAP (medium)",
    "DetectionBoxes_Precision/mAP (large)",
    "DetectionBoxes_Recall/AR@1",
    "DetectionBoxes_Recall/AR@10",
    "DetectionBoxes_Recall/AR@100",
    "DetectionBoxes_Recall/AR@100 (small)",
    "DetectionBoxes_Recall/AR@100 (medium)",
    "DetectionBoxes_Recall/AR@100 (large)",
)
PER_CLASS_AP = "DetectionBoxes_PerformanceByCategory/mAP/{}"
PER_CLASS_AP50 = "DetectionBoxes_PerformanceByCategory/mAP@.50IOU/{}"

CATEGORIES: list[dict[str, Any]] = [
    {"id": int(i), "name": name, "supercategory": "object"} for i, name in LABEL_MAP.items()
]


# --------------------------------------------------------------------------- JSON


def _as_boxes(boxes: Any) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    return arr.reshape(-1, 4)


def _pixel_xywh(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalised yxyx -> pixel [x, y, w, h], clipped to the image."""
    b = np.clip(boxes, 0.0, 1.0)
    x = b[:, 1] * width
    y = b[:, 0] * height
    w = (b[:, 3] - b[:, 1]) * width
    h = (b[:, 2] - b[:, 0]) * height
    return np.stack([x, y, w, h], axis=1) if len(b) else np.zeros((0, 4))


def _ground_truth_arrays(frame: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A ground-truth frame's pixel ``[x, y, w, h]`` boxes (clipped to the image) and labels, with the masks of
    the boxes COCO skips: an unknown label, or no area after clipping (the rule of both ground-truth paths)."""
    boxes = _as_boxes(frame.get("boxes", []))
    labels = np.asarray(frame.get("labels", []), dtype=np.int64).reshape(-1)
    if len(labels) != len(boxes):
        raise ValueError(f"frame {frame.get('source_id', frame['image_id'])}: {len(boxes)} boxes but "
                         f"{len(labels)} labels")
    xywh = _pixel_xywh(boxes, int(frame["height"]), int(frame["width"]))
    unknown = ~np.isin(labels, list(LABEL_MAP))
    return xywh, labels, unknown, ~unknown & ((xywh[:, 2] <= 0) | (xywh[:, 3] <= 0))


def to_coco_ground_truth(frames: Iterable[Mapping[str, Any]]) -> dict:
    """Build a COCO ground-truth dict from per-frame records.

    Each frame is ``{"image_id": int, "source_id": str, "height": int, "width": int,
    "boxes": (N, 4) normalised yxyx, "labels": (N,)}``. Every frame becomes an image
    (frames without boxes still count: detections there are false positives).
    Boxes are clipped to the image; boxes of an unknown label or with no area after
    clipping are skipped with a warning (counted in ``gt["info"]["skipped"]``).
    Annotation ids start at 1 (COCOeval treats id 0 as "unmatched").
    """
    images: list[dict] = []
    annotations: list[dict] = []
    skipped = {"unknown_label": 0, "empty_box": 0}
    seen_ids: set[int] = set()
    for frame in frames:
        image_id = int(frame["image_id"])
        if image_id in seen_ids:
            raise ValueError(f"duplicate image_id {image_id} in ground-truth frames")
        seen_ids.add(image_id)
        height, width = int(frame["height"]), int(frame["width"])
        source_id = str(frame.get("source_id", image_id))
        images.append(
            {"id": image_id, "file_name": source_id, "height": height, "width": width}
        )
        xywh, labels, unknown, empty = _ground_truth_arrays(frame)
        skip = unknown | empty
        for i in np.flatnonzero(skip):
            if unknown[i]:
                skipped["unknown_label"] += 1
                logger.warning("frame %s: skipping box with unknown label %d", source_id, labels[i])
            else:
                skipped["empty_box"] += 1
                logger.warning("frame %s: skipping box with no area", source_id)
        for (x, y, w, h), label in zip(xywh[~skip], labels[~skip]):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": "urban_detection ground truth", "skipped": skipped},
        "images": images,
        "annotations": annotations,
        "categories": copy.deepcopy(CATEGORIES),
    }


def _image_sizes(image_sizes: Mapping | None) -> dict[int, tuple[int, int]]:
    if image_sizes is None:
        return {}
    if "images" in image_sizes and "annotations" in image_sizes:  # a COCO gt dict
        return {int(im["id"]): (int(im["height"]), int(im["width"])) for im in image_sizes["images"]}
    return {int(k): (int(v[0]), int(v[1])) for k, v in image_sizes.items()}


def to_coco_detections(
    frames_dets: Iterable[Mapping[str, Any]],
    image_sizes: Mapping | None = None,
) -> list[dict]:
    """Build COCO results (``image_id, category_id, bbox, score``) from per-frame detections.

    Each record is ``{"image_id", "boxes", "labels", "scores"}`` (normalised yxyx boxes).
    Pixel sizes come from the record's own ``"height"``/``"width"`` keys when present,
    otherwise from ``image_sizes``: a COCO ground-truth dict (as made by
    :func:`to_coco_ground_truth`) or a mapping ``image_id -> (height, width)``.
    """
    sizes = _image_sizes(image_sizes)
    return [det for rec in frames_dets for det in _record_detections(rec, sizes)]


def _detection_arrays(rec: Mapping[str, Any], height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel ``[x, y, w, h]`` boxes, labels and scores of one detection record, as :func:`to_coco_detections` makes
    them (the record's own ``height``/``width`` first)."""
    if "height" in rec and "width" in rec:
        height, width = int(rec["height"]), int(rec["width"])
    boxes = _as_boxes(rec.get("boxes", []))
    labels = np.asarray(rec.get("labels", []), dtype=np.int64).reshape(-1)
    scores = np.asarray(rec.get("scores", np.ones(len(boxes))), dtype=np.float64).reshape(-1)
    if not len(boxes) == len(labels) == len(scores):
        raise ValueError(f"image_id {rec['image_id']}: {len(boxes)} boxes, {len(labels)} labels, {len(scores)} scores")
    return _pixel_xywh(boxes, height, width), labels, scores


def _record_detections(rec: Mapping[str, Any], sizes: Mapping[int, tuple[int, int]]) -> list[dict]:
    image_id = int(rec["image_id"])
    if not ("height" in rec and "width" in rec) and image_id not in sizes:
        raise ValueError(
            f"no image size for image_id {image_id}: give height/width in the "
            "record or pass image_sizes (e.g. the ground-truth dict)"
        )
    boxes, labels, scores = _detection_arrays(rec, *sizes.get(image_id, (0, 0)))
    return [{"image_id": image_id, "category_id": int(label), "bbox": [float(x), float(y), float(w), float(h)],
             "score": float(score)} for (x, y, w, h), label, score in zip(boxes, labels, scores)]


class CocoResults(Sequence):
    """The COCO results list of per-frame detection records (:func:`to_coco_detections`), made as it is
    read: holding it costs the records' arrays, not a dict per box (about 44 KB per frame of 100 boxes).
    ``list(results)`` (or iterating) gives the dicts; ``len`` counts the boxes; it equals a list of the
    same dicts."""

    def __init__(self, frames_dets: Sequence[Mapping[str, Any]], image_sizes: Mapping | None = None):
        self._frames, self._sizes = list(frames_dets), _image_sizes(image_sizes)
        self._len = sum(len(_as_boxes(r.get("boxes", []))) for r in self._frames)

    def __len__(self) -> int:
        return self._len

    def __iter__(self):
        for rec in self._frames:
            yield from _record_detections(rec, self._sizes)

    def __getitem__(self, index):
        return list(self)[index]

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and list(self) == list(other)

    __hash__ = None


# --------------------------------------------------------------------------- evaluation


def coco_eval(gt: dict, dets: Sequence[Mapping], iou_thresholds=None) -> CocoEvaluation:
    """The bbox evaluation of ``gt`` and ``dets`` (COCO dicts) by :mod:`.coco_match`: pycocotools' ``COCOeval``
    numbers (``params``, ``eval``, ``stats``), its matches kept in arrays. Detections of image ids absent from
    ``gt`` are dropped with a warning."""
    known = {int(im["id"]) for im in gt.get("images", [])}
    kept = [d for d in dets if int(d["image_id"]) in known]
    if len(kept) < len(dets):
        logger.warning("skipping %d detections whose image_id is not in the ground truth", len(dets) - len(kept))
    return evaluate_coco(gt, kept, iou_thresholds)


def coco_eval_frames(gt_frames: Sequence[Mapping[str, Any]], det_frames: Iterable[Mapping[str, Any]],
                     iou_thresholds=None) -> CocoEvaluation:
    """:func:`coco_eval` of per-frame records, without their COCO dicts: the same boxes as
    :func:`to_coco_ground_truth` and :func:`to_coco_detections` give (the same boxes skipped, without a second
    warning), matched frame by frame, so memory holds only the matches (:class:`~.coco_match.CocoMatcher`)."""
    matcher = CocoMatcher(LABEL_MAP, iou_thresholds)
    dets: dict[int, list[Mapping[str, Any]]] = {}
    for rec in det_frames:
        dets.setdefault(int(rec["image_id"]), []).append(rec)
    known = {int(f["image_id"]) for f in gt_frames}
    unknown = sum(len(_as_boxes(r.get("boxes", []))) for i, recs in dets.items() if i not in known for r in recs)
    if unknown:
        logger.warning("skipping %d detections whose image_id is not in the ground truth", unknown)
    for frame in gt_frames:
        image_id = int(frame["image_id"])
        height, width = int(frame["height"]), int(frame["width"])
        boxes, labels, unknown, empty = _ground_truth_arrays(frame)
        keep = ~(unknown | empty)
        boxes, labels = boxes[keep], labels[keep]
        parts = [_detection_arrays(rec, height, width) for rec in dets.get(image_id, [])]
        dt, dt_labels, scores = (np.concatenate(a) for a in zip(*parts)) if parts else \
            (np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0))
        matcher.add(image_id, boxes, labels, boxes[:, 2] * boxes[:, 3], np.zeros(len(boxes), bool), dt, dt_labels,
                    scores)
    return matcher.evaluate()


def _nan_if_undefined(value: float) -> float:
    return float("nan") if value < 0 else float(value)


def _mean_defined(values: np.ndarray) -> float:
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else float("nan")


def coco_metrics(gt: dict, dets: Sequence[Mapping]) -> dict[str, float]:
    """The 12 COCO bbox numbers under the Object Detection API names, plus per-class AP.

    ``gt`` is a COCO ground-truth dict, ``dets`` a COCO results list (see
    :func:`to_coco_ground_truth`, :func:`to_coco_detections`). Per class ``<name>``
    (vehicle, pedestrian, cyclist) it adds ``DetectionBoxes_PerformanceByCategory/mAP/<name>``
    (AP@[.5:.95], all areas, 100 detections) and ``.../mAP@.50IOU/<name>``.
    Values COCO cannot define (``-1``: no ground truth of that class or area range) are
    ``NaN``. Detections for image ids absent from ``gt`` are dropped with a warning.
    Neither argument is modified.
    """
    return coco_metrics_and_curves(gt, dets)[0]


def coco_metrics_and_curves(gt: dict, dets: Sequence[Mapping] | None, pr_iou: float | None = None,
                            ev: CocoEvaluation | None = None, frames: tuple[Sequence, Sequence] | None = None
                            ) -> tuple[dict[str, float], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """:func:`coco_metrics` and, with ``pr_iou``, :func:`precision_recall_curves` at that IoU from one
    COCO evaluation (COCO matches each IoU threshold on its own, so a standard threshold's curves
    are those of an evaluation at that threshold alone). ``ev``: the :func:`coco_eval` of ``gt`` and
    ``dets`` when the caller already has it; ``frames``: the ``(gt_frames, det_frames)`` records it was made
    of (:func:`coco_eval_frames`), used instead of ``dets`` for a ``pr_iou`` that is not a COCO threshold."""
    ev = coco_eval(gt, dets) if ev is None else ev
    metrics = {name: _nan_if_undefined(v) for name, v in zip(SUMMARY_METRICS, ev.stats)}

    precision = ev.eval["precision"]  # [T, R, K, A, M]
    iou_50 = _iou_index(ev, 0.5)
    all_area = list(ev.params.areaRngLbl).index("all")
    names = {int(c["id"]): c["name"] for c in gt.get("categories", [])}
    for k, cat_id in enumerate(ev.params.catIds):
        name = names.get(int(cat_id), str(cat_id))
        p = precision[:, :, k, all_area, -1]
        metrics[PER_CLASS_AP.format(name)] = _mean_defined(p)
        metrics[PER_CLASS_AP50.format(name)] = _mean_defined(p[iou_50])
    if pr_iou is None:
        return metrics, {}
    t = _iou_index(ev, pr_iou)
    if t is None:  # not one of COCO's thresholds: an evaluation at that IoU alone
        if frames is not None:
            return metrics, _curves(coco_eval_frames(*frames, iou_thresholds=[pr_iou]), 0, names)
        return metrics, precision_recall_curves(gt, dets, iou=pr_iou)
    return metrics, _curves(ev, t, names)


def _iou_index(ev: CocoEvaluation, iou: float) -> int | None:
    hits = np.flatnonzero(np.isclose(ev.params.iouThrs, iou))
    return int(hits[0]) if hits.size else None


def _curves(ev: CocoEvaluation, t: int, names: dict[int, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    precision = ev.eval["precision"]
    recall = np.asarray(ev.params.recThrs, dtype=np.float64)
    all_area = list(ev.params.areaRngLbl).index("all")
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[t, :, k, all_area, -1]
        if np.all(p < 0):
            continue
        curves[names.get(int(cat_id), str(cat_id))] = (recall.copy(), p.astype(np.float64))
    return curves


def precision_recall_curves(
    gt: dict, dets: Sequence[Mapping], iou: float = 0.5
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-class precision/recall curves at one IoU threshold (all areas, 100 detections).

    Taken from COCOeval's accumulated precision: recall is COCO's 101 points 0, 0.01 ...
    1 and precision is interpolated (the running maximum to the right, as COCO uses for
    AP), 0 beyond the highest recall reached. Classes without ground truth are left out.
    """
    ev = coco_eval(gt, dets, iou_thresholds=[iou])
    return _curves(ev, 0, {int(c["id"]): c["name"] for c in gt.get("categories", [])})


def pr_curve_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str | None = None
) -> Figure:
    """Plot :func:`precision_recall_curves` output, one line per class (class colours).

    The legend gives each class's AP at that IoU (mean precision over the recall points).
    Built on ``matplotlib.figure.Figure`` (no pyplot state), ready for ``savefig``
    or ``mlflow.log_figure``.
    """
    from urban_detection.detection.draw import CLASS_COLOURS

    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for name, (recall, precision) in curves.items():
        colour = np.asarray(CLASS_COLOURS.get(name, (128, 128, 128))) / 255.0
        ap = float(np.mean(precision)) if len(precision) else math.nan
        ax.plot(recall, precision, color=colour, lw=2, label=f"{name} (AP {ap:.3f})")
    if not curves:
        ax.text(0.5, 0.5, "no ground truth to evaluate", ha="center", va="center")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.set_title(title or "precision-recall")
    if curves:
        ax.legend(loc="lower left")
    return fig


# --------------------------------------------------------------------------- filtering


def filter_large_boxes(
    dets: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    max_area_frac: Mapping[str, float] | None,
    report: dict[str, int] | None = None,
):
    """Drop detections whose box covers more than ``max_area_frac[class]`` of the image.

    ``dets`` is one per-frame detection record or a list of them (normalised yxyx
    boxes, so the box area is the image-area fraction). Classes not in
    ``max_area_frac`` are kept; ``None`` or ``{}`` returns ``dets`` unchanged. The
    result has the same shape as the input; other keys are carried over. Counts of
    dropped boxes per class are logged and added to ``report`` when given.
    """
    if not max_area_frac:
        return dets
    limits: dict[int, float] = {}
    for name, frac in max_area_frac.items():
        if name not in CLASS_IDS:
            raise ValueError(f"unknown class {name!r} in max_area_frac; known: {sorted(CLASS_IDS)}")
        limits[CLASS_IDS[name]] = float(frac)

    single = isinstance(dets, Mapping)
    records = [dets] if single else list(dets)
    dropped = {name: 0 for name in max_area_frac}
    out = []
    for rec in records:
        boxes = _as_boxes(rec.get("boxes", []))
        labels = np.asarray(rec.get("labels", []), dtype=np.int64).reshape(-1)
        area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
        limit = np.array([limits.get(int(lab), np.inf) for lab in labels], dtype=np.float64)
        keep = area <= limit
        for lab in labels[~keep]:
            dropped[LABEL_MAP[int(lab)]] += 1
        new = dict(rec)
        for key in ("boxes", "labels", "scores", "track_ids"):
            if key in rec:
                new[key] = np.asarray(rec[key])[keep]
        out.append(new)
    if any(dropped.values()):
        logger.info("filter_large_boxes dropped %s", dropped)
    if report is not None:
        for name, n in dropped.items():
            report[f"large_{name}"] = report.get(f"large_{name}", 0) + n
    return out[0] if single else out
