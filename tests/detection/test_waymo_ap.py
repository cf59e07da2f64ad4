"""detection/waymo_ap.py: Waymo-style 2D AP checked against a brute-force reference and hand-worked cases,
and its place in evaluate_detections and the comparison report."""
import itertools
import math

import numpy as np
import pytest

from urban_detection.detection.waymo_ap import (
    IOU_THRESHOLDS,
    MAP_KEY,
    METRIC_NAMES,
    WAYMO_SCORE_CUTOFFS,
    ap_from_totals,
    ap_key,
    average_precision,
    box_iou,
    class_average_precision,
    count_matches,
    frame_counts,
    match_hungarian,
    match_score_first,
    precision_recall,
    waymo_metrics,
)
from urban_detection.detection.waymo_pr import aps_from_totals, average_precisions
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


def ref_quantised(iou) -> int:
    """Waymo's ``QuantizedIoU`` (matcher.cc): ``std::round(float(IoU) * kMaxIoU)``, kMaxIoU = 10**6."""
    return math.floor(float(np.float32(iou) * np.float32(1e6)) + 0.5)


def ref_optimal(kept_boxes, gts, threshold) -> int:
    """What Waymo's Hungarian matcher optimises, exhaustively: over every one-to-one assignment of pairs with
    IoU >= threshold (a pair below it is never a match), the largest total quantised IoU and, among assignments
    tying on it, the most pairs. Dynamic programming over the set of ground truth taken (every assignment is
    reached; two with the same taken set continue alike). Returns the number of pairs."""
    best = {0: (0, 0)}  # taken-set bitmask -> (total quantised IoU, pairs)
    for box in kept_boxes:
        nxt = dict(best)
        for taken, (total, pairs) in best.items():
            for j, g in enumerate(gts):
                iou = ref_iou(box, g)
                if not taken & (1 << j) and iou >= threshold:
                    cand = (total + ref_quantised(iou), pairs + 1)
                    key = taken | (1 << j)
                    nxt[key] = max(nxt.get(key, cand), cand)
        best = nxt
    return max(best.values())[1]


def ref_greedy(kept_boxes, gts, threshold):
    """Score-first: each kept box in turn (they come in descending score) takes the free box of largest IoU."""
    taken = set()
    for box in kept_boxes:
        best, best_iou = None, -1.0
        for j, g in enumerate(gts):
            iou = ref_iou(box, g)
            if j not in taken and iou >= threshold and iou > best_iou:
                best, best_iou = j, iou
        if best is not None:
            taken.add(best)
    return len(taken)


def ref_counts(gt_frames, det_frames, label, cutoffs, matcher="score_first"):
    """TP, FP, FN at each cutoff, every frame matched again from scratch with only the kept detections:
    greedily by score, or by the exhaustive optimum for ``hungarian`` (memoised per kept set)."""
    dets_by_image = {}
    for rec in det_frames:
        dets_by_image.setdefault(int(rec["image_id"]), []).append(rec)
    frames = []  # per frame: its ground truth and its detections of the class by descending score
    for gt in gt_frames:
        dets = [(float(np.float32(s)), i, list(b))
                for i, (b, lab, s) in enumerate((b, lab, s) for rec in dets_by_image.get(int(gt["image_id"]), [])
                                                for b, lab, s in zip(rec["boxes"], rec["labels"], rec["scores"]))
                if lab == label]
        frames.append((ref_ground_truth(gt, label), sorted(dets, key=lambda d: (-d[0], d[1]))))
    memo = {}
    out = []
    for cutoff in cutoffs:
        tp = fp = fn = 0
        for f, (gts, dets) in enumerate(frames):
            boxes = [box for s, _, box in dets if s >= float(np.float32(cutoff))]
            if (f, len(boxes)) not in memo:  # the kept set of a frame is fixed by its size
                match = ref_optimal if matcher == "hungarian" else ref_greedy
                memo[f, len(boxes)] = match(boxes, gts, IOU_THRESHOLDS[label])
            pairs = memo[f, len(boxes)]
            tp, fp, fn = tp + pairs, fp + len(boxes) - pairs, fn + len(gts) - pairs
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


def ref_metrics(gt_frames, det_frames, cutoffs_for, matcher="score_first"):
    aps = {}
    for label in LABEL_MAP:
        if not any(ref_ground_truth(gt, label) for gt in gt_frames):
            aps[ap_key(label)] = math.nan
        else:
            aps[ap_key(label)] = ref_ap(*ref_pr(ref_counts(gt_frames, det_frames, label, cutoffs_for(label), matcher)))
    defined = [v for v in aps.values() if not math.isnan(v)]
    return {MAP_KEY: sum(defined) / len(defined) if defined else math.nan, **aps}


# --------------------------------------------------------------------------- helpers


def gt_frame(image_id, boxes, labels):
    return {"image_id": image_id, "source_id": f"t/{image_id}", "height": 100, "width": 200,
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels, np.int32)}


def det_frame(image_id, boxes, labels, scores):
    return {"image_id": image_id, "height": 100, "width": 200, "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, np.int32), "scores": np.asarray(scores, np.float32)}


def random_case(seed: int, crowded: bool = False):
    """Frames with ground truth of every class and detections that are jittered copies (IoU around the
    thresholds), duplicates, misclassified copies and strays; scores partly on a 0.05 grid (ties, cutoffs).
    ``crowded``: the objects stand in a small area, so boxes overlap several others (where matchers differ)."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for image_id in range(1, int(rng.integers(2, 6)) + 1):
        n = int(rng.integers(0, 9 if crowded else 7))
        yx = rng.uniform(0.3, 0.34, (n, 2)) if crowded else rng.uniform(0.0, 0.7, (n, 2))
        hw = rng.uniform(0.1, 0.2, (n, 2)) if crowded else rng.uniform(0.05, 0.3, (n, 2))
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


CASES = [(seed, crowded, matcher) for seed in range(12) for crowded in (False, True)
         for matcher in ("hungarian", "score_first")]


@pytest.mark.parametrize("seed,crowded,matcher", CASES)
def test_counts_and_ap_match_the_brute_force_at_waymos_cutoffs(seed, crowded, matcher):
    gts, dets = random_case(seed, crowded)
    ours = waymo_metrics(gts, dets, matcher=matcher)
    for label in LABEL_MAP:
        counts = count_matches(gts, dets, label, matcher=matcher)
        ref = ref_counts(gts, dets, label, WAYMO_SCORE_CUTOFFS, matcher)
        assert list(zip(counts.true_positives, counts.false_positives)) == [(tp, fp) for tp, fp, _ in ref]
        assert all(counts.num_ground_truth == tp + fn for tp, _, fn in ref)
        per_frame = frame_counts(gts, dets, label, matcher=matcher)
        assert per_frame.true_positives.shape == (len(gts), len(WAYMO_SCORE_CUTOFFS))
        assert (per_frame.true_positives.sum(axis=0) == counts.true_positives).all()
        assert (per_frame.false_positives.sum(axis=0) == counts.false_positives).all()
        assert per_frame.num_ground_truth.sum() == counts.num_ground_truth
        assert ap_from_totals(counts.true_positives, counts.false_positives, counts.num_ground_truth) == pytest.approx(
            ours[ap_key(label)], abs=1e-15, nan_ok=True)
    theirs = ref_metrics(gts, dets, lambda label: WAYMO_SCORE_CUTOFFS, matcher)
    assert set(ours) == set(METRIC_NAMES)
    for key in METRIC_NAMES:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12, nan_ok=True), key
    assert any(0.0 < v < 1.0 for v in ours.values())  # the cases are not all trivial


@pytest.mark.parametrize("seed,crowded,matcher", [(s + 12, c, m) for s, c, m in CASES])
def test_ap_matches_the_brute_force_at_every_distinct_score(seed, crowded, matcher):
    gts, dets = random_case(seed, crowded)

    def distinct_scores(label):
        return sorted({float(np.float32(s)) for d in dets for s, lab in zip(d["scores"], d["labels"]) if lab == label})

    ours = waymo_metrics(gts, dets, score_cutoffs=None, matcher=matcher)
    theirs = ref_metrics(gts, dets, distinct_scores, matcher)
    for key in METRIC_NAMES:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12, nan_ok=True), key
    for label in LABEL_MAP:  # the per-frame rows at every distinct score add up too
        counts = count_matches(gts, dets, label, score_cutoffs=None, matcher=matcher)
        per_frame = frame_counts(gts, dets, label, score_cutoffs=None, matcher=matcher)
        np.testing.assert_array_equal(per_frame.score_cutoffs, counts.score_cutoffs)
        np.testing.assert_array_equal(per_frame.true_positives.sum(axis=0), counts.true_positives)
        np.testing.assert_array_equal(per_frame.false_positives.sum(axis=0), counts.false_positives)


def test_reference_ap_agrees_with_the_library_integration_on_random_curves():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        recalls = list(np.round(rng.random(n), int(rng.integers(1, 4))))
        precisions = list(rng.random(n))
        assert average_precision(precisions, recalls) == pytest.approx(ref_ap(precisions, recalls), abs=1e-9)


def test_many_rows_at_once_give_each_rows_own_ap():
    """The bootstrap scores every draw in one call: each row as the reference scores it alone, rows of
    recall 0 only score 0, and a row without ground truth is NaN."""
    rng = np.random.default_rng(3)
    recalls = np.round(rng.random((300, 9)), 1)
    recalls[:5] = 0.0
    precisions = rng.random((300, 9))
    got = average_precisions(precisions, recalls)
    assert got.shape == (300,) and (got[:5] == 0.0).all()
    for row in range(300):
        assert got[row] == pytest.approx(ref_ap(list(precisions[row]), list(recalls[row])), abs=1e-12), row
    tp = np.array([[3.0, 2.0, 0.0], [0.0, 0.0, 0.0], [5.0, 5.0, 1.0]])
    fp = np.array([[4.0, 1.0, 0.0], [2.0, 1.0, 0.0], [9.0, 2.0, 0.0]])
    gt = np.array([4.0, 0.0, 6.0])
    ap = aps_from_totals(tp, fp, gt)
    assert math.isnan(ap[1])
    assert ap[0] == ap_from_totals(tp[0], fp[0], 4.0) and ap[2] == ap_from_totals(tp[2], fp[2], 6.0)
    assert 0.0 < ap[0] < 1.0 and average_precisions(np.zeros((0, 3)), np.zeros((0, 3))).shape == (0,)


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
    records = [det_frame(1, [close], [PEDESTRIAN], [0.5]), det_frame(1, [far], [PEDESTRIAN], [0.9])]
    counts = count_matches(gts, records, PEDESTRIAN, score_cutoffs=[0.0, 0.6], matcher="score_first")
    assert list(counts.true_positives) == [1, 1] and list(counts.false_positives) == [1, 0]  # 'far' is the TP


def test_crowded_cases_do_separate_the_matchers():
    """The crowded random cases above include ones where greedy and optimal matching differ (so the brute-force
    agreement above does tell the matchers apart)."""
    differ = 0
    for seed in range(24):  # the seeds of both tests above
        gts, dets = random_case(seed, crowded=True)
        for label in LABEL_MAP:
            a = count_matches(gts, dets, label, matcher="hungarian").true_positives
            b = count_matches(gts, dets, label, matcher="score_first").true_positives
            differ += int((a != b).any())
    assert differ >= 5


def brute_force_assignment(iou, threshold):
    """Every one-to-one partial assignment of detections to ground truth (itertools), restricted to pairs with
    IoU >= threshold: the best by (total quantised IoU, number of pairs), which is what Waymo's Hungarian matcher
    maximises (matcher.cc: edge weight round(IoU * 10**6) where IoU >= threshold, else 0; 0-weight pairs are
    dropped, so a full assignment there is a partial one here) with ties on the total broken towards more pairs."""
    n_det, n_gt = iou.shape
    best = (0, 0)
    for k in range(min(n_det, n_gt) + 1):
        for dets in itertools.combinations(range(n_det), k):
            for gts in itertools.permutations(range(n_gt), k):
                if all(iou[d, g] >= threshold for d, g in zip(dets, gts)):
                    best = max(best, (sum(ref_quantised(iou[d, g]) for d, g in zip(dets, gts)), k))
    return best


def random_iou(rng, n_det, n_gt):
    """Continuous IoUs, or IoUs on a 0.1 grid (ties in the total, and between fewer and more pairs)."""
    iou = rng.uniform(0.0, 1.0, (n_det, n_gt))
    if rng.random() < 0.5:
        iou = np.round(iou * 10) / 10
    return iou * (rng.random((n_det, n_gt)) < 0.7)


@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_hungarian_matching_is_the_brute_force_optimum(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    for _ in range(300):
        n_det, n_gt = int(rng.integers(0, 6)), int(rng.integers(0, 6))
        iou = random_iou(rng, n_det, n_gt)
        matches = match_hungarian(iou, threshold)
        assert matches.shape == (n_det,) and matches.dtype == np.int64
        pairs = [(d, int(g)) for d, g in enumerate(matches) if g >= 0]
        assert len({g for _, g in pairs}) == len(pairs)  # one-to-one
        assert all(iou[d, g] >= threshold for d, g in pairs)  # never below the threshold
        assert (sum(ref_quantised(iou[d, g]) for d, g in pairs), len(pairs)) == brute_force_assignment(iou, threshold)


def test_hungarian_matching_hand_worked_cases():
    # Waymo's own matcher_test.cc (HungarianMatch, pedestrian threshold 0.5): 1.0 + 0.71 beats 0.65 + 0.70
    iou = np.array([[0.60, 0.0], [1.0, 0.70], [0.65, 0.71], [0.0, 0.0]])
    assert match_hungarian(iou, 0.5).tolist() == [-1, 0, 1, -1]
    assert match_score_first(iou, 0.5).tolist() == [0, 1, -1, -1]  # in this (score) order greedy pairs the others
    # total IoU, not the number of pairs: two pairs of 1.0 beat three of 0.6, where greedy gets three
    iou = np.array([[0.62, 0.0, 0.0], [1.0, 0.6, 0.0], [0.0, 1.0, 0.6]])
    assert match_hungarian(iou, 0.5).tolist() == [-1, 0, 1]
    assert match_score_first(iou, 0.5).tolist() == [0, 1, 2]
    # equal totals (1.0 either way): the assignment with more pairs
    assert match_hungarian(np.array([[1.0, 0.5], [0.5, 0.0]]), 0.5).tolist() == [1, 0]
    # a pair below the threshold is no match, though a full assignment has to pair the second detection
    assert match_hungarian(np.array([[0.9, 0.3], [0.3, 0.0]]), 0.5).tolist() == [0, -1]
    assert match_hungarian(np.array([[0.49]]), 0.5).tolist() == [-1]
    assert match_hungarian(np.array([[0.5]]), 0.5).tolist() == [0]  # at the threshold counts
    assert match_hungarian(np.zeros((3, 0)), 0.5).tolist() == [-1, -1, -1]
    assert match_hungarian(np.zeros((0, 2)), 0.5).tolist() == []


def test_hungarian_and_greedy_differ_where_one_detection_overlaps_two_boxes():
    # the higher-scored detection overlaps both boxes, best with the first; the other overlaps only the first
    iou = np.array([[0.8, 0.6], [0.7, 0.0]])
    assert match_score_first(iou, 0.5).tolist() == [0, -1]  # greedy: one match
    assert match_hungarian(iou, 0.5).tolist() == [1, 0]     # optimal: both (total 1.3 > 0.8)
    g1, g2 = [0.0, 0.0, 0.5, 0.5], [0.0, 0.2, 0.5, 0.7]
    d1, d2 = [0.0, 0.08, 0.5, 0.58], [0.0, -0.05, 0.5, 0.45]  # d1: IoU 0.72 with g1, 0.61 with g2; d2: 0.9, 0.36
    np.testing.assert_allclose(box_iou(np.clip([d1, d2], 0, 1), [g1, g2]), [[0.42 / 0.58, 0.38 / 0.62], [0.9, 0.25 / 0.7]])
    gts, dets = [gt_frame(1, [g1, g2], [PEDESTRIAN] * 2)], [det_frame(1, [d1, d2], [PEDESTRIAN] * 2, [0.9, 0.8])]
    hungarian = count_matches(gts, dets, PEDESTRIAN, score_cutoffs=[0.0, 0.85])
    greedy = count_matches(gts, dets, PEDESTRIAN, score_cutoffs=[0.0, 0.85], matcher="score_first")
    # at 0.85 only d1 is kept and takes g1; at 0 Hungarian moves d1 to g2 so that d2 can take g1
    assert hungarian.true_positives.tolist() == [2, 1] and hungarian.false_positives.tolist() == [0, 0]
    assert greedy.true_positives.tolist() == [1, 1] and greedy.false_positives.tolist() == [1, 0]
    assert waymo_metrics(gts, dets)[ap_key(PEDESTRIAN)] == pytest.approx(1.0)
    assert waymo_metrics(gts, dets, matcher="score_first")[ap_key(PEDESTRIAN)] == pytest.approx(0.5)


def test_frame_counts_rows_follow_the_ground_truth_frames_and_sum_to_count_matches():
    g1, g2 = [0.0, 0.0, 0.5, 0.5], [0.0, 0.2, 0.5, 0.7]
    d1, d2 = [0.0, 0.08, 0.5, 0.58], [0.0, -0.05, 0.5, 0.45]
    gts = [gt_frame(7, [g1], [VEHICLE]), gt_frame(3, [g1, g2], [PEDESTRIAN] * 2), gt_frame(5, [], []),
           gt_frame(9, [g1], [PEDESTRIAN])]
    dets = [det_frame(9, [g1], [PEDESTRIAN], [0.3]), det_frame(3, [d2], [PEDESTRIAN], [0.8]),
            det_frame(5, [g2], [PEDESTRIAN], [0.95]), det_frame(3, [d1], [PEDESTRIAN], [0.9])]
    cutoffs = [0.0, 0.5, 0.85, 0.92]
    expected = {  # rows: image 7 (no pedestrian), 3 (the two-box case above), 5 (a stray), 9 (one hit)
        "hungarian": ([[0] * 4, [2, 2, 1, 0], [0] * 4, [1, 0, 0, 0]], [[0] * 4, [0, 0, 0, 0], [1, 1, 1, 1], [0] * 4]),
        "score_first": ([[0] * 4, [1, 1, 1, 0], [0] * 4, [1, 0, 0, 0]], [[0] * 4, [1, 1, 0, 0], [1, 1, 1, 1], [0] * 4]),
    }
    for matcher, (tp, fp) in expected.items():
        rows = frame_counts(gts, dets, PEDESTRIAN, score_cutoffs=cutoffs, matcher=matcher)
        np.testing.assert_array_equal(rows.score_cutoffs, np.float32(cutoffs))
        assert rows.true_positives.dtype == rows.false_positives.dtype == rows.num_ground_truth.dtype == np.int64
        assert rows.true_positives.tolist() == tp and rows.false_positives.tolist() == fp
        assert rows.num_ground_truth.tolist() == [0, 2, 0, 1]
        total = count_matches(gts, dets, PEDESTRIAN, score_cutoffs=cutoffs, matcher=matcher)
        assert total.true_positives.tolist() == rows.true_positives.sum(axis=0).tolist()
        assert total.false_positives.tolist() == rows.false_positives.sum(axis=0).tolist()
        assert total.num_ground_truth == 3
    empty = frame_counts(gts, [], CYCLIST)
    assert empty.true_positives.shape == (4, len(WAYMO_SCORE_CUTOFFS)) and not empty.true_positives.any()
    assert frame_counts([], [], VEHICLE, score_cutoffs=None).true_positives.shape == (0, 0)


def test_ap_from_totals_takes_reweighted_sums():
    gts, dets = random_case(3, crowded=True)
    rows = frame_counts(gts, dets, PEDESTRIAN)
    counts = count_matches(gts, dets, PEDESTRIAN)
    assert ap_from_totals(rows.true_positives.sum(0), rows.false_positives.sum(0),
                          int(rows.num_ground_truth.sum())) == class_average_precision(counts)
    # weights 2 on every frame: the same precision and recall, the same AP, also as floats
    w = np.full(len(gts), 2.0)
    assert ap_from_totals(w @ rows.true_positives, w @ rows.false_positives, w @ rows.num_ground_truth) == (
        pytest.approx(class_average_precision(counts), abs=1e-15))
    assert math.isnan(ap_from_totals(np.zeros(3), np.ones(3), 0))
    assert ap_from_totals([1, 1], [0, 1], 2) == pytest.approx(0.5)


@pytest.mark.parametrize("call", [
    lambda m: waymo_metrics([], [], matcher=m), lambda m: count_matches([], [], VEHICLE, matcher=m),
    lambda m: frame_counts([], [], VEHICLE, matcher=m)])
def test_an_unknown_matcher_is_an_error_naming_the_valid_ones(call):
    with pytest.raises(ValueError, match="unknown Waymo AP matcher 'greedy'; use one of hungarian, score_first"):
        call("greedy")


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
