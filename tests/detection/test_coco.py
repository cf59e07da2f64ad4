"""COCO evaluation: JSON building, metric names and values, PR curves, large-box filter."""

import contextlib
import io
import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from urban_detection.detection.coco import (
    PER_CLASS_AP,
    PER_CLASS_AP50,
    SUMMARY_METRICS,
    coco_metrics,
    coco_metrics_and_curves,
    filter_large_boxes,
    pr_curve_figure,
    precision_recall_curves,
    to_coco_detections,
    to_coco_ground_truth,
)

H, W = 200, 400  # image size in pixels


def px(ymin, xmin, ymax, xmax):
    """Pixel yxyx -> normalised yxyx on an H x W image."""
    return [ymin / H, xmin / W, ymax / H, xmax / W]


def frame(image_id, boxes, labels):
    return {
        "image_id": image_id,
        "source_id": f"trip/{image_id}",
        "height": H,
        "width": W,
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, dtype=np.int32),
    }


@pytest.fixture
def frames():
    # Every area range is populated: small (< 32^2), medium, large (> 96^2 pixels).
    return [
        frame(1, [px(10, 10, 30, 30), px(50, 100, 110, 160), px(20, 200, 140, 330)], [1, 2, 1]),
        frame(2, [px(0, 0, 120, 110), px(100, 300, 120, 320)], [4, 1]),
        frame(3, [], []),
    ]


def perfect(frames, score=0.9):
    return [
        {"image_id": f["image_id"], "boxes": f["boxes"], "labels": f["labels"],
         "scores": np.full(len(f["labels"]), score, np.float32)}
        for f in frames
    ]


def test_ground_truth_json(frames):
    gt = to_coco_ground_truth(frames)
    assert [im["id"] for im in gt["images"]] == [1, 2, 3]
    assert gt["images"][0] == {"id": 1, "file_name": "trip/1", "height": H, "width": W}
    assert {c["id"]: c["name"] for c in gt["categories"]} == {1: "vehicle", 2: "pedestrian", 4: "cyclist"}
    ann = gt["annotations"][1]
    assert ann["image_id"] == 1 and ann["category_id"] == 2 and ann["iscrowd"] == 0
    assert ann["bbox"] == pytest.approx([100, 50, 60, 60], abs=1e-3)  # x, y, w, h in pixels
    assert ann["area"] == pytest.approx(3600, abs=1e-2)
    assert sorted(a["id"] for a in gt["annotations"]) == [1, 2, 3, 4, 5]
    json.dumps(gt)  # plain Python types only


def test_ground_truth_skips_bad_boxes_and_counts_them():
    gt = to_coco_ground_truth([frame(1, [px(0, 0, 10, 10), px(5, 5, 5, 50), px(0, 0, 20, 20)], [3, 1, 2])])
    assert [a["category_id"] for a in gt["annotations"]] == [2]
    assert gt["info"]["skipped"] == {"unknown_label": 1, "empty_box": 1}


def test_detections_json_uses_gt_sizes(frames):
    gt = to_coco_ground_truth(frames)
    dets = to_coco_detections(
        [{"image_id": 1, "boxes": [px(50, 100, 110, 160)], "labels": [2], "scores": [0.25]}], gt
    )
    assert len(dets) == 1
    assert dets[0]["image_id"] == 1 and dets[0]["category_id"] == 2
    assert dets[0]["bbox"] == pytest.approx([100, 50, 60, 60], abs=1e-3)
    assert dets[0]["score"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="no image size"):
        to_coco_detections([{"image_id": 9, "boxes": [[0, 0, 1, 1]], "labels": [1], "scores": [1]}])


def test_perfect_detections_score_one(frames):
    gt = to_coco_ground_truth(frames)
    metrics = coco_metrics(gt, to_coco_detections(perfect(frames), gt))
    for name in SUMMARY_METRICS:
        if "AR@1" in name and "AR@10" not in name:
            continue  # AR@1 is capped by one detection per image and class
        assert metrics[name] == pytest.approx(1.0), name
    assert metrics["DetectionBoxes_Recall/AR@1"] < 1.0  # image 1 has two vehicles
    for cls in ("vehicle", "pedestrian", "cyclist"):
        assert metrics[PER_CLASS_AP.format(cls)] == pytest.approx(1.0)
        assert metrics[PER_CLASS_AP50.format(cls)] == pytest.approx(1.0)


def test_gt_dict_is_not_modified(frames):
    gt = to_coco_ground_truth(frames)
    before = json.dumps(gt, sort_keys=True)
    dets = to_coco_detections(perfect(frames), gt)
    dets_before = json.dumps(dets, sort_keys=True)
    coco_metrics(gt, dets)
    assert json.dumps(gt, sort_keys=True) == before
    assert json.dumps(dets, sort_keys=True) == dets_before


def test_shifted_box_has_known_iou_metrics():
    # 100x100 box shifted 20 px right: IoU = 8000 / 12000 = 2/3.
    gt = to_coco_ground_truth([frame(1, [px(50, 50, 150, 150)], [1])])
    dets = to_coco_detections(
        [{"image_id": 1, "boxes": [px(50, 70, 150, 170)], "labels": [1], "scores": [0.8]}], gt
    )
    m = coco_metrics(gt, dets)
    assert m["DetectionBoxes_Precision/mAP@.50IOU"] == pytest.approx(1.0)
    assert m["DetectionBoxes_Precision/mAP@.75IOU"] == pytest.approx(0.0)
    # Matched at IoU thresholds .50 .55 .60 .65: 4 of the 10 thresholds.
    assert m["DetectionBoxes_Precision/mAP"] == pytest.approx(0.4)
    assert m["DetectionBoxes_Recall/AR@100"] == pytest.approx(0.4)
    assert m[PER_CLASS_AP.format("vehicle")] == pytest.approx(0.4)
    assert m[PER_CLASS_AP50.format("vehicle")] == pytest.approx(1.0)


def test_empty_detections_give_zero(frames):
    gt = to_coco_ground_truth(frames)
    m = coco_metrics(gt, [])
    for name in SUMMARY_METRICS:
        assert m[name] == 0.0, name
    for cls in ("vehicle", "pedestrian", "cyclist"):
        assert m[PER_CLASS_AP.format(cls)] == 0.0


def test_absent_category_and_area_range_are_nan():
    # Only one small vehicle in the ground truth, perfectly detected.
    gt = to_coco_ground_truth([frame(1, [px(10, 10, 30, 30)], [1])])
    m = coco_metrics(gt, to_coco_detections(perfect([frame(1, [px(10, 10, 30, 30)], [1])]), gt))
    assert m["DetectionBoxes_Precision/mAP (small)"] == pytest.approx(1.0)
    assert math.isnan(m["DetectionBoxes_Precision/mAP (medium)"])
    assert math.isnan(m["DetectionBoxes_Recall/AR@100 (large)"])
    assert math.isnan(m[PER_CLASS_AP.format("pedestrian")])
    assert math.isnan(m[PER_CLASS_AP.format("cyclist")])
    assert m[PER_CLASS_AP.format("vehicle")] == pytest.approx(1.0)


def test_area_thresholds_are_respected():
    # COCO areas: small <= 32^2 = 1024 px, medium up to 96^2 = 9216 px, large above.
    boxes = [
        px(0, 0, 31, 31),      # 961 px: small
        px(0, 100, 40, 140),   # 1600 px: medium
        px(100, 100, 200, 200),  # 10000 px: large
    ]
    gt = to_coco_ground_truth([frame(1, boxes, [1, 1, 1])])
    assert [a["area"] for a in gt["annotations"]] == pytest.approx([961, 1600, 10000], abs=1e-2)
    # Detect only the small and the large box.
    dets = to_coco_detections(
        [{"image_id": 1, "boxes": [boxes[0], boxes[2]], "labels": [1, 1], "scores": [0.9, 0.8]}], gt
    )
    m = coco_metrics(gt, dets)
    assert m["DetectionBoxes_Precision/mAP (small)"] == pytest.approx(1.0)
    assert m["DetectionBoxes_Precision/mAP (medium)"] == pytest.approx(0.0)
    assert m["DetectionBoxes_Precision/mAP (large)"] == pytest.approx(1.0)
    assert m["DetectionBoxes_Recall/AR@100 (small)"] == pytest.approx(1.0)
    assert m["DetectionBoxes_Recall/AR@100 (medium)"] == pytest.approx(0.0)
    assert m["DetectionBoxes_Recall/AR@100"] == pytest.approx(2 / 3)


def test_json_round_trip_matches_plain_pycocotools(tmp_path, frames):
    rng = np.random.default_rng(0)
    noisy = []
    for f in frames:
        boxes = np.clip(f["boxes"] + rng.normal(0, 0.02, f["boxes"].shape), 0, 1).astype(np.float32)
        extra = np.array([[0.5, 0.5, 0.7, 0.6]], np.float32)  # a false positive per image
        noisy.append({
            "image_id": f["image_id"],
            "boxes": np.concatenate([boxes, extra]),
            "labels": np.concatenate([f["labels"], [2]]),
            "scores": rng.uniform(0.1, 1.0, len(boxes) + 1),
        })
    gt = to_coco_ground_truth(frames)
    dets = to_coco_detections(noisy, gt)
    gt_path, dt_path = tmp_path / "gt.json", tmp_path / "dets.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(dets))

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_dt = coco_gt.loadRes(str(dt_path))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ours = coco_metrics(json.loads(gt_path.read_text()), json.loads(dt_path.read_text()))
    expected = [np.nan if s < 0 else s for s in ev.stats]
    got = [ours[name] for name in SUMMARY_METRICS]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert 0.0 < ours["DetectionBoxes_Precision/mAP"] < 1.0


def test_detections_on_unknown_images_are_skipped(frames):
    gt = to_coco_ground_truth(frames)
    dets = to_coco_detections(perfect(frames), gt)
    dets.append({"image_id": 99, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 1.0})
    assert coco_metrics(gt, dets)["DetectionBoxes_Precision/mAP"] == pytest.approx(1.0)


def test_precision_recall_curves_and_figure(frames):
    gt = to_coco_ground_truth(frames[:1])  # vehicles and a pedestrian, no cyclist
    dets = to_coco_detections(perfect(frames[:1]), gt)
    curves = precision_recall_curves(gt, dets, iou=0.5)
    assert set(curves) == {"vehicle", "pedestrian"}
    recall, precision = curves["vehicle"]
    assert recall.shape == precision.shape == (101,)
    assert recall[0] == 0.0 and recall[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(precision, 1.0)

    # Half the pedestrians missed at a strict threshold: precision 0 past the recall reached.
    shifted = [{"image_id": 1, "boxes": [px(50, 100, 110, 160)], "labels": [2], "scores": [0.9]}]
    frames2 = [frame(1, [px(50, 100, 110, 160), px(150, 300, 190, 340)], [2, 2])]
    gt2 = to_coco_ground_truth(frames2)
    r, p = precision_recall_curves(gt2, to_coco_detections(shifted, gt2), iou=0.9)["pedestrian"]
    np.testing.assert_allclose(p[r <= 0.5], 1.0)  # COCO divides by tp + fp + eps
    np.testing.assert_array_equal(p[r > 0.5], 0.0)
    assert np.sum(r <= 0.5) == 51

    fig = pr_curve_figure(curves)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.lines) == 2
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("vehicle") and "AP 1.000" in labels[0]
    assert tuple(ax.lines[0].get_color()) == (1.0, 0.0, 0.0)


def test_filter_large_boxes_drops_only_the_given_class():
    big = [0.0, 0.0, 0.9, 0.9]      # 81 % of the image
    small = [0.1, 0.1, 0.3, 0.3]    # 4 %
    dets = [{
        "image_id": 7,
        "boxes": np.array([big, big, small], np.float32),
        "labels": np.array([1, 2, 2], np.int32),
        "scores": np.array([0.9, 0.8, 0.7], np.float32),
    }]
    report = {}
    out = filter_large_boxes(dets, {"pedestrian": 0.5}, report=report)
    assert out[0]["image_id"] == 7
    np.testing.assert_array_equal(out[0]["labels"], [1, 2])
    np.testing.assert_allclose(out[0]["boxes"], [big, small])
    np.testing.assert_allclose(out[0]["scores"], [0.9, 0.7])
    assert out[0]["boxes"].dtype == np.float32
    assert report == {"large_pedestrian": 1}
    # A single record in, a single record out; None keeps everything.
    single = filter_large_boxes(dets[0], {"vehicle": 0.5})
    np.testing.assert_array_equal(single["labels"], [2, 2])
    assert filter_large_boxes(dets, None) is dets
    with pytest.raises(ValueError, match="unknown class"):
        filter_large_boxes(dets, {"truck": 0.5})


def test_metrics_and_curves_from_one_evaluation_equal_the_separate_ones(frames):
    rng = np.random.default_rng(3)
    noisy = [{"image_id": f["image_id"],
              "boxes": np.clip(f["boxes"] + rng.normal(0, 0.03, f["boxes"].shape), 0, 1).astype(np.float32),
              "labels": f["labels"], "scores": rng.uniform(0.1, 1.0, len(f["labels"]))} for f in frames]
    gt = to_coco_ground_truth(frames)
    dets = to_coco_detections(noisy, gt)
    for iou in (0.5, 0.75, 0.62):  # two of COCO's thresholds, one not
        metrics, curves = coco_metrics_and_curves(gt, dets, pr_iou=iou)
        np.testing.assert_equal(metrics, coco_metrics(gt, dets))  # NaN equals NaN here
        separate = precision_recall_curves(gt, dets, iou=iou)
        assert set(curves) == set(separate) and curves
        for cls in curves:
            np.testing.assert_array_equal(curves[cls][0], separate[cls][0])
            np.testing.assert_array_equal(curves[cls][1], separate[cls][1])
    assert dets == to_coco_detections(noisy, gt)  # the detections were not changed
