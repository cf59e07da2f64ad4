"""detection/waymo_ap.py: Waymo-style 2D AP checked against a brute-force reference and hand-worked cases,
and its place in evaluate_detections and the comparison report."""
import math

import numpy as np
import pytest

from urban_detection.detection.waymo_ap import (
    IOU_THRESHOLDS,
    MAP_KEY,
    METRIC_NAMES,
    WAYMO_SCORE_CUTOFFS,
    ap_key,
    average_precision,
    box_iou,
    count_matches,
    match_score_first,
    precision_recall,
    waymo_metrics,
)
from urban_detection.waymo.example import CLASS_IDS, LABEL_MAP

VEHICLE, PEDESTRIAN, CYCLIST = (CLASS_IDS[n] for n in ("vehicle", "pedestrian", "cyclist"))


# --------------------------------------------------------------------------- brute-force reference


def ref_iou(a, b) -> float:
    a = [min(max(float(v), 0.0), 1.0) for v in a]
    b = [min(max(float(v), 0.0), 1.0) for v in b]
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def ref_ground_truth(gt, label):
    """The frame's boxes of ``label`` that keep an area inside the image."""
    return [list(b) for b, lab in zip(gt["boxes"], gt["labels"])
            if lab == label and min(b[2], 1) > max(b[0], 0) and min(b[3], 1) > max(b[1], 0)]


def ref_counts(gt_frames, det_frames, label, cutoffs):
    """TP, FP, FN at each cutoff, every frame matched again from scratch with only the kept detections."""
    dets_by_image = {}
    for rec in det_frames:
        dets_by_image.setdefault(int(rec["image_id"]), []).append(rec)
    out = []
    for cutoff in cutoffs:
        tp = fp = fn = 0
        for gt in gt_frames:
            gts = ref_ground_truth(gt, label)
            kept = []
            for rec in dets_by_image.get(int(gt["image_id"]), []):
                for b, lab, s in zip(rec["boxes"], rec["labels"], rec["scores"]):
                    if lab == label and np.float32(s) >= np.float32(cutoff):
                        kept.append((float(np.float32(s)), len(kept), list(b)))
            kept.sort(key=lambda d: (-d[0], d[1]))
            taken = set()
            for _, _, box in kept:
                best, best_iou = None, -1.0
                for j, g in enumerate(gts):
                    iou = ref_iou(box, g)
                    if j not in taken and iou >= IOU_THRESHOLDS[label] and iou > best_iou:
                        best, best_iou = j, iou
                if best is None:
                    fp += 1
                else:
                    taken.add(best)
                    tp += 1
            fn += len(gts) - len(taken)
        out.append((tp, fp, fn))
    return out


def ref_pr(counts):
    precisions, recalls = [], []
    for tp, fp, fn in counts:
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        precisions.append(1.0 if r == 0 else p)
        recalls.append(r)
    return precisions, recalls


def ref_ap(precisions, recalls, delta=0.05):
    """Waymo's area, summed gap by gap: between two neighbouring recalls the curve stays at the best
    precision of the higher recalls until the last inserted 0.05-step point, then a trapezoid down to
    the lower recall's best precision (at recall 0: no rise)."""
    rs = sorted({0.0, *recalls})
    if len(rs) < 2:
        return 0.0

    def envelope(r):
        return max(p for p, q in zip(precisions, recalls) if q >= r)

    area = 0.0
    for lo, hi in zip(rs[:-1], rs[1:]):
        k = 0
        while (hi - k * delta) - lo > delta + 1e-6:
            k += 1
        last = hi - k * delta
        p_hi = envelope(hi)
        p_lo = p_hi if lo == 0.0 else envelope(lo)
        area += (hi - last) * p_hi + (last - lo) * (p_hi + p_lo) / 2
    return area


def ref_metrics(gt_frames, det_frames, cutoffs_for):
    aps = {}
    for label in LABEL_MAP:
        if not any(ref_ground_truth(gt, label) for gt in gt_frames):
            aps[ap_key(label)] = math.nan
        else:
            aps[ap_key(label)] = ref_ap(*ref_pr(ref_counts(gt_frames, det_frames, label, cutoffs_for(label))))
    defined = [v for v in aps.values() if not math.isnan(v)]
    return {MAP_KEY: sum(defined) / len(defined) if defined else math.nan, **aps}


# --------------------------------------------------------------------------- helpers


def gt_frame(image_id, boxes, labels):
    return {"image_id": image_id, "source_id": f"t/{image_id}", "height": 100, "width": 200,
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels, np.int32)}


def det_frame(image_id, boxes, labels, scores):
    return {"image_id": image_id, "height": 100, "width": 200, "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, np.int32), "scores": np.asarray(scores, np.float32)}


def random_case(seed: int):
    """Frames with ground truth of every class and detections that are jittered copies (IoU around the
    thresholds), duplicates, misclassified copies and strays; scores partly on a 0.05 grid (ties, cutoffs)."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for image_id in range(1, int(rng.integers(2, 6)) + 1):
        n = int(rng.integers(0, 7))
        yx = rng.uniform(0.0, 0.7, (n, 2))
        hw = rng.uniform(0.05, 0.3, (n, 2))
        boxes = np.concatenate([yx, yx + hw], axis=1)
        labels = rng.choice(list(LABEL_MAP), n)
        gts.append(gt_frame(image_id, boxes, labels))
        d_boxes, d_labels = [], []
        for box, lab in zip(boxes, labels):
            for _ in range(int(rng.integers(0, 3))):
                jitter = rng.normal(0.0, rng.uniform(0.02, 0.15), 4) * np.tile(box[2:] - box[:2], 2)
                d_boxes.append(box + jitter)
                d_labels.append(lab if rng.random() < 0.85 else rng.choice(list(LABEL_MAP)))
        for _ in range(int(rng.integers(0, 4))):
            y, x = rng.uniform(0.0, 0.8, 2)
            d_boxes.append([y, x, y + 0.15, x + 0.1])
            d_labels.append(rng.choice(list(LABEL_MAP)))
        scores = rng.random(len(d_boxes))
        grid = rng.random(len(d_boxes)) < 0.5
        scores[grid] = np.round(scores[grid] * 20) / 20
        split = int(rng.integers(0, len(d_boxes) + 1))  # detections of a frame may come in two records
        for part in (slice(0, split), slice(split, None)):
            dets.append(det_frame(image_id, np.reshape(d_boxes, (-1, 4))[part], np.asarray(d_labels, int)[part],
                                  scores[part]))
    return gts, dets


# --------------------------------------------------------------------------- reference agreement


@pytest.mark.parametrize("seed", range(12))
def test_counts_and_ap_match_the_brute_force_at_waymos_cutoffs(seed):
    gts, dets = random_case(seed)
    for label in LABEL_MAP:
        counts = count_matches(gts, dets, label)
        ref = ref_counts(gts, dets, label, WAYMO_SCORE_CUTOFFS)
        assert list(zip(counts.true_positives, counts.false_positives)) == [(tp, fp) for tp, fp, _ in ref]
        assert all(counts.num_ground_truth == tp + fn for tp, _, fn in ref)
    ours = waymo_metrics(gts, dets)
    theirs = ref_metrics(gts, dets, lambda label: WAYMO_SCORE_CUTOFFS)
    assert set(ours) == set(METRIC_NAMES)
    for key in METRIC_NAMES:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9, nan_ok=True), key
    assert any(0.0 < v < 1.0 for v in ours.values())  # the cases are not all trivial


@pytest.mark.parametrize("seed", range(12, 24))
def test_ap_matches_the_brute_force_at_every_distinct_score(seed):
    gts, dets = random_case(seed)

    def distinct_scores(label):
        return sorted({float(np.float32(s)) for d in dets for s, lab in zip(d["scores"], d["labels"]) if lab == label})

    ours = waymo_metrics(gts, dets, score_cutoffs=None)
    theirs = ref_metrics(gts, dets, distinct_scores)
    for key in METRIC_NAMES:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9, nan_ok=True), key


def test_reference_ap_agrees_with_the_library_integration_on_random_curves():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        recalls = list(np.round(rng.random(n), int(rng.integers(1, 4))))
        precisions = list(rng.random(n))
        assert average_precision(precisions, recalls) == pytest.approx(ref_ap(precisions, recalls), abs=1e-9)


# --------------------------------------------------------------------------- known answers


def test_average_precision_hand_worked_curves():
    assert average_precision([1.0], [1.0]) == pytest.approx(1.0)
    assert average_precision([1.0], [0.5]) == pytest.approx(0.5)  # nothing beyond the highest recall
    # precision 0.5 at recall 1 and 1.0 at recall 0.5: flat at 0.5 down to recall 0.55, a trapezoid to 0.5
    assert average_precision([0.5, 1.0], [1.0, 0.5]) == pytest.approx(0.45 * 0.5 + 0.05 * 0.75 + 0.5)
    # a worse point at a lower recall does not lower the curve (running maximum from the right)
    assert average_precision([0.5, 1.0, 0.2], [1.0, 0.5, 0.25]) == pytest.approx(0.45 * 0.5 + 0.05 * 0.75 + 0.5)
    assert average_precision([], []) == 0.0
    assert average_precision([1.0, 1.0], [0.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="recall_delta"):
        average_precision([1.0], [1.0], recall_delta=0.0)


def test_perfect_detections_score_one_for_every_class():
    boxes = [[0.1, 0.1, 0.4, 0.3], [0.5, 0.5, 0.9, 0.6], [0.2, 0.6, 0.5, 0.9], [0.6, 0.0, 0.8, 0.2]]
    labels = [VEHICLE, PEDESTRIAN, CYCLIST, VEHICLE]
    gts = [gt_frame(1, boxes, labels), gt_frame(2, boxes[:2], labels[:2])]
    dets = [det_frame(1, boxes, labels, [0.9, 0.8, 0.3, 0.05]), det_frame(2, boxes[:2], labels[:2], [0.6, 0.7])]
    metrics = waymo_metrics(gts, dets)
    assert metrics == {key: pytest.approx(1.0) for key in METRIC_NAMES}


def test_iou_06_counts_for_a_pedestrian_but_not_for_a_vehicle():
    gt_box = [0.0, 0.0, 0.5, 0.5]
    det_box = [0.0, 0.0, 0.5, 0.3]  # IoU 0.15 / 0.25 = 0.6
    assert box_iou([det_box], [gt_box])[0, 0] == pytest.approx(0.6)
    gts = [gt_frame(1, [gt_box], [VEHICLE]), gt_frame(2, [gt_box], [PEDESTRIAN])]
    dets = [det_frame(1, [det_box], [VEHICLE], [0.9]), det_frame(2, [det_box], [PEDESTRIAN], [0.9])]
    metrics = waymo_metrics(gts, dets)
    assert metrics[ap_key(VEHICLE)] == 0.0
    assert metrics[ap_key(PEDESTRIAN)] == pytest.approx(1.0)
    assert math.isnan(metrics[ap_key(CYCLIST)])  # no cyclist ground truth: no AP, left out of the mean
    assert metrics[MAP_KEY] == pytest.approx(0.5)
    assert ap_key(VEHICLE) == "Waymo2D/AP@.70IOU/vehicle" and ap_key(CYCLIST) == "Waymo2D/AP@.50IOU/cyclist"


@pytest.mark.parametrize(("label", "iou", "counts"), [
    (VEHICLE, 0.72, True), (VEHICLE, 0.68, False), (PEDESTRIAN, 0.52, True), (PEDESTRIAN, 0.48, False),
    (CYCLIST, 0.52, True), (CYCLIST, 0.48, False)])
def test_each_class_has_waymos_iou_threshold(label, iou, counts):
    gt_box, det_box = [0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5 * iou]
    assert box_iou([det_box], [gt_box])[0, 0] == pytest.approx(iou)
    ap = waymo_metrics([gt_frame(1, [gt_box], [label])], [det_frame(1, [det_box], [label], [0.5])])[ap_key(label)]
    assert ap == (pytest.approx(1.0) if counts else 0.0)


def test_a_duplicate_is_a_false_positive():
    a, b = [0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.8, 0.7]
    gts = [gt_frame(1, [a, b], [VEHICLE, VEHICLE])]
    dets = [det_frame(1, [a, a, b], [VEHICLE] * 3, [0.9, 0.8, 0.7])]
    counts = count_matches(gts, dets, VEHICLE, score_cutoffs=[0.0, 0.75, 0.85, 0.95])
    assert list(counts.true_positives) == [2, 1, 1, 0] and list(counts.false_positives) == [1, 1, 0, 0]
    precision, recall = precision_recall(counts)
    np.testing.assert_allclose(precision, [2 / 3, 0.5, 1.0, 1.0])  # precision 1 where recall is 0
    np.testing.assert_allclose(recall, [1.0, 0.5, 0.5, 0.0])
    ap = waymo_metrics(gts, dets)[ap_key(VEHICLE)]
    assert ap == pytest.approx(0.45 * 2 / 3 + 0.05 * (2 / 3 + 1) / 2 + 0.5)
    assert waymo_metrics(gts, [det_frame(1, [a, b], [VEHICLE] * 2, [0.9, 0.7])])[ap_key(VEHICLE)] == pytest.approx(1.0)


def test_greedy_matching_goes_by_score_then_largest_iou():
    iou = np.array([[0.9, 0.8], [0.95, 0.4], [0.6, 0.75]])
    np.testing.assert_array_equal(match_score_first(iou, 0.5), [0, -1, 1])
    np.testing.assert_array_equal(match_score_first(iou, 0.85), [0, -1, -1])
    assert match_score_first(np.zeros((2, 0)), 0.5).tolist() == [-1, -1]
    # in a frame the higher score goes first, wherever its record puts it
    g = [0.1, 0.1, 0.5, 0.5]
    close, far = [0.1, 0.1, 0.5, 0.49], [0.1, 0.1, 0.5, 0.4]
    gts = [gt_frame(1, [g], [PEDESTRIAN])]
    counts = count_matches(gts, [det_frame(1, [close], [PEDESTRIAN], [0.5]), det_frame(1, [far], [PEDESTRIAN], [0.9])],
                           PEDESTRIAN, score_cutoffs=[0.0, 0.6])
    assert list(counts.true_positives) == [1, 1] and list(counts.false_positives) == [1, 0]  # 'far' is the TP


def test_ground_truth_is_cleaned_as_for_coco_and_stray_records_are_ignored(caplog):
    box = [0.1, 0.1, 0.4, 0.3]
    gts = [gt_frame(1, [box, [0.2, 0.2, 0.2, 0.5], [0.5, 0.5, 0.6, 0.6]], [VEHICLE, VEHICLE, 3])]  # empty box, sign
    dets = [det_frame(1, [box], [VEHICLE], [0.8]), det_frame(99, [box], [VEHICLE], [0.99])]
    metrics = waymo_metrics(gts, dets)
    assert metrics[ap_key(VEHICLE)] == pytest.approx(1.0)
    assert count_matches(gts, dets, VEHICLE).num_ground_truth == 1
    assert "not in the ground truth" in caplog.text
    no_dets = waymo_metrics(gts, [])
    assert no_dets[ap_key(VEHICLE)] == 0.0 and no_dets[MAP_KEY] == 0.0
    assert all(math.isnan(v) for v in waymo_metrics([gt_frame(1, [], [])], dets).values())


# --------------------------------------------------------------------------- integration


def test_evaluate_detections_reports_waymo_ap_beside_coco_and_the_report_shows_it():
    from urban_detection.detection.coco import PER_CLASS_AP50, SUMMARY_METRICS
    from urban_detection.detection.evaluate import FILTERED_PREFIX, LOSS_METRICS, evaluate_detections
    from urban_detection.detection.report import comparison_table, short_metric_name
    from urban_detection.tracking import mlflow_key

    gts, dets = [], []
    for i in range(4):
        boxes = np.array([[0.1, 0.1 + 0.1 * i, 0.4, 0.3 + 0.1 * i], [0.5, 0.5, 0.9, 0.6]], np.float32)
        gts.append(gt_frame(i + 1, boxes, [VEHICLE, PEDESTRIAN]))
        # a confident full-frame 'pedestrian' false positive above the true detections
        dets.append(det_frame(i + 1, np.vstack([[0.0, 0.0, 1.0, 1.0], boxes]), [PEDESTRIAN, VEHICLE, PEDESTRIAN],
                              [0.99, 0.9, 0.8]))
    result = evaluate_detections(gts, dets, {"pedestrian": 0.3})
    metrics, filtered = result["metrics"], result["filtered"]
    for key in METRIC_NAMES:
        assert metrics[key] == pytest.approx(waymo_metrics(gts, dets)[key], nan_ok=True)
    assert metrics[ap_key(VEHICLE)] == pytest.approx(1.0)
    assert metrics[ap_key(PEDESTRIAN)] < 0.6 and math.isnan(metrics[ap_key(CYCLIST)])
    assert filtered["metrics"][ap_key(PEDESTRIAN)] == pytest.approx(1.0)
    assert filtered["delta"][MAP_KEY] == pytest.approx(filtered["metrics"][MAP_KEY] - metrics[MAP_KEY])
    assert filtered["delta"][MAP_KEY] > 0.2

    flat = {**metrics, **{FILTERED_PREFIX + k: v for k, v in filtered["metrics"].items()}, "loss/total": 1.0}
    rows = list(comparison_table({"exp": flat}).index)
    waymo_rows = [rows.index(k) for k in METRIC_NAMES]
    assert waymo_rows == sorted(waymo_rows) and rows[waymo_rows[0]] == MAP_KEY
    assert rows.index(PER_CLASS_AP50.format("cyclist")) < min(waymo_rows)
    assert max(waymo_rows) < rows.index(FILTERED_PREFIX + SUMMARY_METRICS[0]) < rows.index(FILTERED_PREFIX + MAP_KEY)
    assert rows.index(FILTERED_PREFIX + MAP_KEY) < rows.index(LOSS_METRICS[-1])
    assert len({short_metric_name(k) for k in rows}) == len(rows)  # figure labels stay distinct from COCO's
    assert mlflow_key(ap_key(VEHICLE)) == "Waymo2D/AP_at_.70IOU/vehicle"
    assert mlflow_key(ap_key(PEDESTRIAN)) == "Waymo2D/AP_at_.50IOU/pedestrian"
