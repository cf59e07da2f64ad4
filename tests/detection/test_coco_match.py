"""detection/coco_match.py: the array scorer gives pycocotools' own numbers, bit for bit, and keeps little per box."""
import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from urban_detection.detection.coco import (
    CocoResults,
    coco_eval,
    coco_eval_frames,
    to_coco_detections,
    to_coco_ground_truth,
)
from urban_detection.detection.coco_match import evaluate_coco

CATEGORIES = [{"id": 1, "name": "vehicle"}, {"id": 2, "name": "pedestrian"}, {"id": 4, "name": "cyclist"}]


def random_coco(seed: int, images: int = 30):
    """A ground truth with crowd boxes, boxes on COCO's area limits (32², 96²), image ids out of order, images
    without boxes; detections that jitter the boxes (some of another class), tied scores across and within
    images, and images with far more than 100 detections of one class."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1, 10 * images))[:images] if seed % 2 else np.arange(1, images + 1)
    imgs, anns, dets = [], [], []
    for i, image_id in enumerate(int(v) for v in ids):
        imgs.append({"id": image_id, "height": 640, "width": 640})
        for _ in range(int(rng.integers(0, 12))):
            w, h = rng.choice([5, 20, 31.9, 32, 40, 95, 96, 97, 200]) * rng.uniform(0.8, 1.2, 2)
            if rng.uniform() < 0.2:
                w, h = 32.0, 32.0  # exactly on the small/medium limit
            x, y = rng.uniform(0, 500, 2)
            cat = int(rng.choice([1, 2, 4]))
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": int(rng.uniform() < 0.1)})
            for _ in range(int(rng.integers(0, 3))):
                jit = rng.normal(0, 0.1 * min(w, h), 4)
                score = float(np.round(rng.uniform(), 1)) if rng.uniform() < 0.3 else float(rng.uniform())
                dets.append({"image_id": image_id, "category_id": int(rng.choice([1, 2, 4])) if rng.uniform() < 0.2
                             else cat, "bbox": [x + jit[0], y + jit[1], max(w + jit[2], 1), max(h + jit[3], 1)],
                             "score": score})
        crowded = i % 9 == 0
        for _ in range(int(rng.integers(150, 250)) if crowded else int(rng.integers(0, 6))):
            x, y = rng.uniform(0, 600, 2)
            w, h = rng.uniform(2, 150, 2)
            dets.append({"image_id": image_id, "category_id": 1 if crowded else int(rng.choice([1, 2, 4])),
                         "bbox": [x, y, w, h], "score": float(rng.uniform())})
    return {"images": imgs, "annotations": anns, "categories": copy.deepcopy(CATEGORIES)}, dets


def pycocotools(gt, dets, iou_thresholds=None):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), "bbox")
        if iou_thresholds is not None:
            ev.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("seed", range(8))
def test_precision_recall_and_stats_equal_pycocotools_bit_for_bit(seed):
    gt, dets = random_coco(seed)
    expected, got = pycocotools(gt, dets), evaluate_coco(gt, dets)
    np.testing.assert_array_equal(got.eval["precision"], expected.eval["precision"])
    np.testing.assert_array_equal(got.eval["recall"], expected.eval["recall"])
    np.testing.assert_array_equal(got.stats, np.asarray(expected.stats))
    assert got.params.imgIds == list(expected.params.imgIds) and got.params.catIds == list(expected.params.catIds)
    assert 0.05 < got.stats[0] < 0.95  # a split with real hits and misses, not 0 == 0


def test_other_iou_thresholds_and_detections_of_unknown_images():
    gt, dets = random_coco(11, images=12)
    expected = pycocotools(gt, dets, iou_thresholds=[0.62, 0.3])
    got = evaluate_coco(gt, dets, iou_thresholds=[0.62, 0.3])
    np.testing.assert_array_equal(got.eval["precision"], expected.eval["precision"])
    stray = [*dets, {"image_id": 10 ** 6, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 1.0}]
    np.testing.assert_array_equal(coco_eval(gt, stray).stats, np.asarray(pycocotools(gt, dets).stats))


def test_no_detections_and_no_ground_truth_are_undefined_or_zero_as_in_pycocotools():
    gt, dets = random_coco(5, images=6)
    empty = evaluate_coco(gt, [])
    assert np.all(empty.eval["precision"][empty.eval["precision"] > -1] == 0)
    nothing = evaluate_coco({**gt, "annotations": []}, dets)
    assert np.all(nothing.eval["precision"] == -1) and np.all(nothing.stats == -1)


def test_frame_records_score_as_their_coco_dicts_and_keep_a_few_bytes_per_box():
    rng = np.random.default_rng(2)
    gt_frames, det_frames = [], []
    for i in range(20):
        n = int(rng.integers(0, 6))
        y, x = rng.uniform(0, 0.8, (2, n))
        boxes = np.stack([y, x, y + rng.uniform(0.01, 0.2, n), x + rng.uniform(0.01, 0.2, n)], 1).astype(np.float32)
        labels = rng.choice([1, 2, 4, 3], n, p=[0.5, 0.3, 0.1, 0.1])  # 3: not a class, skipped as in the dicts
        gt_frames.append({"image_id": i + 1, "height": 480, "width": 640, "boxes": boxes, "labels": labels})
        noisy = np.clip(np.concatenate([boxes + rng.normal(0, 0.01, boxes.shape), rng.uniform(0, 1, (100, 4))]), 0, 1)
        det_frames.append({"image_id": i + 1, "boxes": noisy.astype(np.float32),
                           "labels": rng.choice([1, 2, 4], len(noisy)), "scores": rng.uniform(0, 1, len(noisy))})
    gt = to_coco_ground_truth(gt_frames)
    dets = to_coco_detections(det_frames, gt)
    from_frames = coco_eval_frames(gt_frames, det_frames)
    np.testing.assert_array_equal(from_frames.eval["precision"], pycocotools(gt, dets).eval["precision"])
    results = CocoResults(det_frames, gt)
    assert len(results) == len(dets) == 20 * 100 + sum(len(f["labels"]) for f in gt_frames)
    assert results == dets and list(results) == dets and results[3] == dets[3]
    held = sum(a.nbytes for m in from_frames.matches.values() for a in m)
    assert held / len(dets) < 64  # bytes per box: score, image, rank and one byte per area range and threshold


def test_a_frame_whose_detections_come_in_two_records_scores_as_one():
    gt_frames = [{"image_id": 7, "height": 100, "width": 200, "boxes": np.array([[0.1, 0.1, 0.5, 0.4]], np.float32),
                  "labels": np.array([1])}]
    one = {"image_id": 7, "boxes": np.array([[0.1, 0.1, 0.5, 0.4], [0.6, 0.6, 0.9, 0.9]], np.float32),
           "labels": np.array([1, 1]), "scores": np.array([0.4, 0.9])}
    halves = [{**one, **{k: one[k][:1] for k in ("boxes", "labels", "scores")}},
              {**one, **{k: one[k][1:] for k in ("boxes", "labels", "scores")}}]
    gt = to_coco_ground_truth(gt_frames)
    expected = pycocotools(gt, to_coco_detections(halves, gt))
    got = coco_eval_frames(gt_frames, halves)
    np.testing.assert_array_equal(got.eval["precision"], expected.eval["precision"])
    np.testing.assert_array_equal(got.eval["precision"], coco_eval_frames(gt_frames, [one]).eval["precision"])
    assert 0 < got.stats[1] < 1  # the false positive outranks the hit
