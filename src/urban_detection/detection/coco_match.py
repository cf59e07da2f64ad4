"""COCO's bbox evaluation in arrays, one image at a time: pycocotools' numbers with bounded memory.

pycocotools' ``COCOeval`` keeps every detection as a Python dict (twice) and every image's
matches as dicts of arrays (``evalImgs``): about 0.3 MB per frame of a detector that returns 100
boxes, 12 GB for the 40,000 frames of Waymo v1's FRONT validation camera. :class:`CocoMatcher`
matches each image as it comes, with the same rules, and keeps per detection only its score, its
image, its rank in the image and one byte per (area range, IoU threshold): true positive, false
positive or ignored. :meth:`CocoMatcher.evaluate` then ranks and counts them as ``accumulate()``
does and gives the same ``precision``/``recall`` arrays and the same 12 ``stats`` as
``summarize()`` (equal to pycocotools to the last bit on the tests' random splits).

The rules, as pycocotools' ``evaluateImg`` (per image, class and area range):

* detections sorted by score (stable: ties keep their record order), the first 100 kept;
* ground truth outside the area range, or ``iscrowd``, is *ignored*; ignored boxes are tried last;
* at each IoU threshold a detection takes the available box of highest IoU (at least the
  threshold; among equal IoUs the last box), a box not ignored before any ignored one; a crowd
  box can take many detections, any other only one;
* a detection matched to an ignored box, or unmatched and outside the area range, is ignored.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

# pycocotools' Params for bbox, computed the same way (the thresholds are not round decimals)
IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
AREA_RANGES: dict[str, tuple[float, float]] = {"all": (0 ** 2, 1e5 ** 2), "small": (0 ** 2, 32 ** 2),
                                               "medium": (32 ** 2, 96 ** 2), "large": (96 ** 2, 1e5 ** 2)}
MAX_DETS = (1, 10, 100)
FALSE_POSITIVE, TRUE_POSITIVE, IGNORED = 0, 1, 2
_EPS = np.spacing(1)


def box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """``(D, G)`` IoU of pixel ``[x, y, w, h]`` boxes with pycocotools' arithmetic (``bbIou``): the union of a
    crowd box is the detection's own area."""
    if not len(dt) or not len(gt):
        return np.zeros((len(dt), len(gt)))
    w = np.minimum(dt[:, None, 2] + dt[:, None, 0], gt[None, :, 2] + gt[None, :, 0]) - np.maximum(dt[:, None, 0], gt[None, :, 0])
    h = np.minimum(dt[:, None, 3] + dt[:, None, 1], gt[None, :, 3] + gt[None, :, 1]) - np.maximum(dt[:, None, 1], gt[None, :, 1])
    inter = w * h
    da = dt[:, 2] * dt[:, 3]
    union = np.where(crowd[None, :], da[:, None], da[:, None] + (gt[:, 2] * gt[:, 3])[None, :] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), inter / union, 0.0)


class Params(NamedTuple):
    """What an evaluation was run with, under pycocotools' ``Params`` names."""

    imgIds: list[int]
    catIds: list[int]
    iouThrs: np.ndarray
    recThrs: np.ndarray
    areaRng: list[tuple[float, float]]
    areaRngLbl: list[str]
    maxDets: list[int]


class ClassMatches(NamedTuple):
    """One class's detections over the split (each image's best 100), in image order then by score: what
    ``accumulate()`` ranks. ``status`` is ``(D, areas, thresholds)``: 1 true positive, 0 false positive,
    2 ignored. ``ground_truth`` is ``(images, areas)``: the boxes not ignored in each image."""

    image: np.ndarray         # (D,) position of the image in Params.imgIds
    rank: np.ndarray          # (D,) rank of the detection in its image (0 = best score)
    score: np.ndarray         # (D,)
    status: np.ndarray        # (D, A, T) uint8
    ground_truth: np.ndarray  # (images, A) int


def match_image(dt_boxes: np.ndarray, dt_scores: np.ndarray, gt_boxes: np.ndarray, gt_areas: np.ndarray,
                gt_crowd: np.ndarray, iou_thrs: np.ndarray = IOU_THRESHOLDS,
                area_ranges: Sequence[tuple[float, float]] = tuple(AREA_RANGES.values()), max_det: int = 100
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image and class: ``(order, status, ground_truth)``. ``order`` are the kept detections (best score
    first, at most ``max_det``), ``status`` their ``(D, A, T)`` outcome, ``ground_truth`` the ``(A,)`` counts of
    boxes not ignored. Boxes are pixel ``[x, y, w, h]``; a detection's area is ``w * h``, a box's ``gt_areas``."""
    order = np.argsort(-dt_scores, kind="mergesort")[:max_det]
    dt = dt_boxes[order]
    n_d, n_g, n_a, n_t = len(dt), len(gt_boxes), len(area_ranges), len(iou_thrs)
    lo = np.array([r[0] for r in area_ranges])[:, None]
    hi = np.array([r[1] for r in area_ranges])[:, None]
    gt_ignored = gt_crowd[None, :] | (gt_areas[None, :] < lo) | (gt_areas[None, :] > hi)  # (A, G)
    dt_area = dt[:, 2] * dt[:, 3]
    dt_outside = (dt_area[None, :] < lo) | (dt_area[None, :] > hi)                          # (A, D)
    status = np.repeat(np.where(dt_outside.T, IGNORED, FALSE_POSITIVE).astype(np.uint8)[:, :, None], n_t, axis=2)
    ground_truth = np.count_nonzero(~gt_ignored, axis=1)
    if n_d == 0 or n_g == 0:
        return order, status, ground_truth
    ious = box_iou(dt, gt_boxes, gt_crowd)
    thresholds = np.minimum(iou_thrs, 1 - 1e-10)[None, :, None]                              # (1, T, 1)
    taken = np.zeros((n_a, n_t, n_g), dtype=bool)
    crowd = gt_crowd[None, None, :]
    for d in np.flatnonzero((ious >= thresholds.min()).any(axis=1)):  # the others match nothing
        fits = (ious[d][None, None, :] >= thresholds) & (~taken | crowd)                     # (A, T, G)
        preferred = fits & ~gt_ignored[:, None, :]
        use = np.where(preferred.any(axis=2, keepdims=True), preferred, fits)
        if not use.any():
            continue
        score = np.where(use, ious[d][None, None, :], -1.0)
        last_best = n_g - 1 - np.argmax(score[:, :, ::-1], axis=2)                          # (A, T): ties -> last box
        found = use.any(axis=2)
        a_idx, t_idx = np.nonzero(found)
        g = last_best[a_idx, t_idx]
        taken[a_idx, t_idx, g] = True
        status[d, a_idx, t_idx] = np.where(gt_ignored[a_idx, g], IGNORED, TRUE_POSITIVE)
    return order, status, ground_truth


class CocoMatcher:
    """pycocotools' bbox evaluation fed one image at a time (:meth:`add`), its matches kept in arrays.

    ``category_ids``: the classes evaluated (detections of other classes are not scored, as COCO's
    ``catIds``). ``iou_thresholds``: COCO's ten by default. Images are ranked in ``image_id`` order, as
    pycocotools sorts ``imgIds``, whatever order they are added in."""

    def __init__(self, category_ids: Iterable[int], iou_thresholds: Sequence[float] | None = None):
        self.params = Params(imgIds=[], catIds=sorted(int(c) for c in category_ids),
                             iouThrs=IOU_THRESHOLDS.copy() if iou_thresholds is None else np.asarray(iou_thresholds, float),
                             recThrs=RECALL_THRESHOLDS.copy(), areaRng=list(AREA_RANGES.values()),
                             areaRngLbl=list(AREA_RANGES), maxDets=list(MAX_DETS))
        self._parts: dict[int, list[tuple]] = {c: [] for c in self.params.catIds}
        self._gt: dict[int, list[np.ndarray]] = {c: [] for c in self.params.catIds}

    def add(self, image_id: int, gt_boxes: np.ndarray, gt_labels: np.ndarray, gt_areas: np.ndarray,
            gt_crowd: np.ndarray, dt_boxes: np.ndarray, dt_labels: np.ndarray, dt_scores: np.ndarray) -> None:
        """One image: pixel ``[x, y, w, h]`` boxes of its ground truth (with COCO areas and crowd flags) and of
        its detections."""
        position = len(self.params.imgIds)
        self.params.imgIds.append(int(image_id))
        for cat in self.params.catIds:
            g, d = gt_labels == cat, dt_labels == cat
            order, status, counts = match_image(dt_boxes[d], dt_scores[d], gt_boxes[g], gt_areas[g], gt_crowd[g],
                                                self.params.iouThrs, self.params.areaRng, self.params.maxDets[-1])
            self._gt[cat].append(counts)
            if len(order):
                self._parts[cat].append((np.full(len(order), position, np.int32), np.arange(len(order), dtype=np.int16),
                                         dt_scores[d][order].astype(np.float64), status))

    def matches(self) -> dict[int, ClassMatches]:
        """Per class, its :class:`ClassMatches` with images in ``image_id`` order."""
        ids = np.asarray(self.params.imgIds, dtype=np.int64)
        if len(np.unique(ids)) != len(ids):
            raise ValueError("an image_id was added twice")
        position = np.empty(len(ids), dtype=np.int32)
        position[np.argsort(ids, kind="mergesort")] = np.arange(len(ids), dtype=np.int32)
        n_a, n_t = len(self.params.areaRng), len(self.params.iouThrs)
        out = {}
        for cat in self.params.catIds:
            parts = self._parts[cat]
            image = position[np.concatenate([p[0] for p in parts])] if parts else np.zeros(0, np.int32)
            rank = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int16)
            score = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)
            status = np.concatenate([p[3] for p in parts]) if parts else np.zeros((0, n_a, n_t), np.uint8)
            keep = np.lexsort((rank, image))
            gt = np.zeros((len(ids), n_a), dtype=np.int64)
            if self._gt[cat]:
                gt[position] = np.stack(self._gt[cat])
            out[cat] = ClassMatches(image[keep], rank[keep], score[keep], status[keep], gt)
        return out

    def evaluate(self) -> "CocoEvaluation":
        """Rank and count as ``accumulate()``, summarise as ``summarize()``."""
        params = self.params._replace(imgIds=sorted(self.params.imgIds))
        return CocoEvaluation(params, self.matches())


class CocoEvaluation:
    """An evaluated split: ``params``, ``eval["precision"]`` ``(T, R, K, A, M)`` and ``eval["recall"]``
    ``(T, K, A, M)`` (-1 where undefined) and ``stats`` (the 12 numbers of ``summarize()``) as pycocotools,
    and ``matches`` (class id -> :class:`ClassMatches`) for the bootstrap."""

    def __init__(self, params: Params, matches: Mapping[int, ClassMatches]):
        self.params, self.matches = params, dict(matches)
        n_t, n_r, n_k = len(params.iouThrs), len(params.recThrs), len(params.catIds)
        n_a, n_m = len(params.areaRng), len(params.maxDets)
        precision = -np.ones((n_t, n_r, n_k, n_a, n_m))
        recall = -np.ones((n_t, n_k, n_a, n_m))
        for k, cat in enumerate(params.catIds):
            m = self.matches[cat]
            for a in range(n_a):
                npig = int(m.ground_truth[:, a].sum())
                if npig == 0:
                    continue
                for j, max_det in enumerate(params.maxDets):
                    kept = m.rank < max_det
                    order = np.argsort(-m.score[kept], kind="mergesort")
                    status = m.status[kept][order, a, :].T                                       # (T, D)
                    precision[:, :, k, a, j], recall[:, k, a, j] = precision_at_recalls(
                        status == TRUE_POSITIVE, status == FALSE_POSITIVE, npig, params.recThrs)
        self.eval = {"precision": precision, "recall": recall}
        self.stats = self._summarize()

    def _summarize(self) -> np.ndarray:
        p, precision, recall = self.params, self.eval["precision"], self.eval["recall"]
        t50 = np.flatnonzero(np.isclose(p.iouThrs, .5))
        t75 = np.flatnonzero(np.isclose(p.iouThrs, .75))
        area = {label: i for i, label in enumerate(p.areaRngLbl)}
        m100 = p.maxDets.index(100)

        def mean(values: np.ndarray) -> float:
            defined = values[values > -1]
            return float(np.mean(defined)) if defined.size else -1.0

        ap = [mean(precision[:, :, :, area["all"], m100]),
              mean(precision[t50, :, :, area["all"], m100]) if t50.size else -1.0,
              mean(precision[t75, :, :, area["all"], m100]) if t75.size else -1.0,
              *(mean(precision[:, :, :, area[s], m100]) for s in ("small", "medium", "large"))]
        ar = [*(mean(recall[:, :, area["all"], j]) for j in range(len(p.maxDets))),
              *(mean(recall[:, :, area[s], m100]) for s in ("small", "medium", "large"))]
        return np.array(ap + ar)


def precision_at_recalls(tps: np.ndarray, fps: np.ndarray, npig: int, rec_thrs: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``accumulate()``'s count for ranked ``(T, D)`` true and false positives: the interpolated precision at
    each recall threshold ``(T, R)`` (0 beyond the recall reached) and the recall reached ``(T,)``."""
    n_t, n_d = tps.shape
    if n_d == 0:
        return np.zeros((n_t, len(rec_thrs))), np.zeros(n_t)
    tp = np.cumsum(tps, axis=1).astype(dtype=float)
    fp = np.cumsum(fps, axis=1).astype(dtype=float)
    rc = tp / npig
    pr = tp / (fp + tp + _EPS)
    envelope = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
    out = np.zeros((n_t, len(rec_thrs)))
    for t in range(n_t):
        idx = np.searchsorted(rc[t], rec_thrs, side="left")
        inside = idx < n_d
        out[t, inside] = envelope[t, idx[inside]]
    return out, rc[:, -1]


def evaluate_coco(gt: Mapping[str, Any], dets: Sequence[Mapping[str, Any]],
                  iou_thresholds: Sequence[float] | None = None) -> CocoEvaluation:
    """:class:`CocoMatcher` over a COCO ground-truth dict and a COCO results list (``bbox`` in pixels).
    Detections of images absent from ``gt`` must be dropped by the caller."""
    matcher = CocoMatcher([c["id"] for c in gt.get("categories", [])], iou_thresholds)
    by_image_gt: dict[int, list] = {int(im["id"]): [] for im in gt.get("images", [])}
    for ann in gt.get("annotations", []):
        by_image_gt[int(ann["image_id"])].append(ann)
    by_image_dt: dict[int, list] = {}
    for det in dets:
        by_image_dt.setdefault(int(det["image_id"]), []).append(det)
    for image_id, anns in by_image_gt.items():
        found = by_image_dt.get(image_id, [])
        matcher.add(image_id,
                    np.array([a["bbox"] for a in anns], float).reshape(-1, 4),
                    np.array([a["category_id"] for a in anns], np.int64),
                    np.array([a["area"] for a in anns], float),
                    np.array([bool(a.get("iscrowd", 0)) for a in anns], bool),
                    np.array([d["bbox"] for d in found], float).reshape(-1, 4),
                    np.array([d["category_id"] for d in found], np.int64),
                    np.array([d["score"] for d in found], float))
    return matcher.evaluate()
