"""detection/bootstrap.py: every trip draw's COCO numbers equal pycocotools on the drawn (repeated) frames."""
import contextlib
import copy
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from urban_detection.detection.bootstrap import (
    AP50,
    COCO_DRAW_METRICS,
    coco_draw_metrics,
    only_trips,
    ranked_matches,
    sized,
    trip_draws,
    trip_index,
)
from urban_detection.detection.coco import (
    SUMMARY_METRICS,
    PER_CLASS_AP,
    PER_CLASS_AP50,
    coco_eval,
    to_coco_detections,
    to_coco_ground_truth,
)
from urban_detection.waymo.example import CLASS_NAMES, LABEL_MAP

LABELS = np.array(sorted(LABEL_MAP))


def random_split(seed: int, trips: int = 5, frames: int = 4, ties: bool = False):
    """Ground truth and detections of ``trips`` trips: jittered copies of the boxes (some missed), false
    positives, boxes of every COCO size at 640 px; scores continuous, or with ``ties`` on a coarse grid
    (the same scores in many frames)."""
    rng = np.random.default_rng(seed)
    gt_frames, det_frames = [], []
    for t in range(trips):
        hard = rng.uniform(0.0, 0.6)  # trips differ: some are much harder than others
        for f in range(frames):
            n = int(rng.integers(0, 8))
            size = rng.choice([0.03, 0.1, 0.3], size=n) * rng.uniform(0.5, 1.5, size=n)
            y, x = rng.uniform(0, 0.7, size=(2, n))
            boxes = np.stack([y, x, y + size, x + size * rng.uniform(0.5, 2, n)], axis=1).clip(0, 1)
            labels = rng.choice(LABELS, size=n, p=[0.6, 0.3, 0.1])
            image_id = len(gt_frames) + 1
            gt_frames.append({"image_id": image_id, "source_id": f"trip{t}_{f}", "height": 640, "width": 640,
                              "path": f"/x/trip{t}.tfrecord", "boxes": boxes.astype(np.float32), "labels": labels})
            found = rng.uniform(size=n) > hard
            jitter = rng.normal(0, 0.02, size=(n, 4)) * size[:, None]
            det_boxes = [boxes[found] + jitter[found]]
            det_labels = [np.where(rng.uniform(size=n) < 0.9, labels, rng.choice(LABELS, size=n))[found]]
            fp = int(rng.integers(0, 6))
            y, x = rng.uniform(0, 0.8, size=(2, fp))
            det_boxes.append(np.stack([y, x, y + 0.1, x + 0.15], axis=1))
            det_labels.append(rng.choice(LABELS, size=fp))
            k = sum(len(b) for b in det_labels)
            scores = rng.uniform(0.05, 1.0, size=k)
            if ties:  # across frames only: within a frame pycocotools' order of tied boxes is the record order
                scores = np.round(scores * 5) / 5 + 0.001 * np.arange(k)
            det_frames.append({"image_id": image_id, "height": 640, "width": 640,
                               "boxes": np.concatenate(det_boxes).clip(0, 1).astype(np.float32),
                               "labels": np.concatenate(det_labels), "scores": scores.astype(np.float32)})
    return gt_frames, det_frames


def repeated(gt_frames, det_frames, counts, trip_of_image):
    """The frames of a draw: each frame as many times as its trip was drawn, copies adjacent, new ids."""
    gt_out, det_out = [], []
    for g, d in zip(gt_frames, det_frames):
        for _ in range(int(counts[trip_of_image[g["image_id"]]])):
            image_id = len(gt_out) + 1
            gt_out.append({**g, "image_id": image_id})
            det_out.append({**d, "image_id": image_id})
    return gt_out, det_out


def pycocotools_metrics(gt_frames, det_frames):
    """pycocotools' own summary numbers (its ``COCOeval``, not the project's scorer) under the project's names,
    per-class AP, and AP50 per size from its accumulated precision."""
    gt = to_coco_ground_truth(gt_frames)
    dets = to_coco_detections(det_frames, gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics = {name: float("nan") if v < 0 else float(v) for name, v in zip(SUMMARY_METRICS, ev.stats)}
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        metrics[PER_CLASS_AP.format(LABEL_MAP[cat])] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
        metrics[PER_CLASS_AP50.format(LABEL_MAP[cat])] = float(p[0][p[0] > -1].mean()) if (p[0] > -1).any() \
            else float("nan")
    for a, size in enumerate(("small", "medium", "large"), start=1):
        p = precision[0, :, :, a, -1]
        metrics[sized(AP50, size)] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
    return metrics


def draw_metrics(gt_frames, det_frames, weights):
    trips, trip_of_image = trip_index(gt_frames, lambda f: f["path"])
    gt = to_coco_ground_truth(gt_frames)
    ev = coco_eval(gt, to_coco_detections(det_frames, gt))
    names = {i: LABEL_MAP[i] for i in LABEL_MAP}
    ranked = ranked_matches(ev, trip_of_image, len(trips))
    return coco_draw_metrics(ev, ranked, weights, names, chunk=3), trip_of_image


def assert_same(expected: dict, got: dict, row: int):
    keys = [*COCO_DRAW_METRICS, *(sized(AP50, s) for s in ("small", "medium", "large")),
            *(PER_CLASS_AP.format(c) for c in CLASS_NAMES),
            *(PER_CLASS_AP50.format(c) for c in CLASS_NAMES)]
    for key in keys:
        e, g = expected[key], float(got[key][row])
        if math.isnan(e):
            assert math.isnan(g), (key, e, g)
        else:
            assert abs(e - g) <= 1e-9, (key, e, g)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False), (2, True)])
def test_each_draw_equals_pycocotools_on_the_drawn_frames(seed, ties):
    gt_frames, det_frames = random_split(seed, ties=ties)
    weights = trip_draws(5, 7, seed=seed)
    weights[0] = 1  # the plain evaluation
    weights[1] = [2, 0, 0, 3, 0]
    got, trip_of_image = draw_metrics(gt_frames, det_frames, weights)
    plain = pycocotools_metrics(gt_frames, det_frames)
    assert plain == pytest.approx({**plain, **{k: float(v[0]) for k, v in got.items() if k in plain}},
                                  abs=1e-12, nan_ok=True)
    assert {sized(AP50, "small"), sized(PER_CLASS_AP.format("cyclist"), "large")} <= set(got)
    for row, counts in enumerate(weights):
        assert_same(pycocotools_metrics(*repeated(gt_frames, det_frames, counts, trip_of_image)), got, row)


def test_a_draw_without_a_class_leaves_it_undefined():
    gt_frames, det_frames = random_split(3, trips=3, frames=2)
    for g in gt_frames[:2]:  # trip 0 alone holds the cyclists
        g["labels"] = np.where(np.arange(len(g["labels"])) == 0, 4, g["labels"])
    for g in gt_frames[2:]:
        g["labels"] = np.where(g["labels"] == 4, 1, g["labels"])
    weights = np.array([[0, 2, 1], [1, 1, 1]])
    got, trip_of_image = draw_metrics(gt_frames, det_frames, weights)
    assert math.isnan(got[PER_CLASS_AP.format("cyclist")][0])
    assert not math.isnan(got[PER_CLASS_AP.format("cyclist")][1])
    for row, counts in enumerate(weights):
        assert_same(pycocotools_metrics(*repeated(gt_frames, det_frames, counts, trip_of_image)), got, row)


@pytest.mark.parametrize("ties", [False, True])
def test_a_slices_own_matches_give_the_draws_of_the_whole_split_with_the_others_left_out(ties):
    gt_frames, det_frames = random_split(5, trips=7, frames=3, ties=ties)
    trips, trip_of_image = trip_index(gt_frames, lambda f: f["path"])
    gt = to_coco_ground_truth(gt_frames)
    ev = coco_eval(gt, to_coco_detections(det_frames, gt))
    ranked = ranked_matches(ev, trip_of_image, len(trips))
    members = [1, 4, 6]
    weights = np.zeros((40, len(trips)), dtype=np.int64)
    weights[:, members] = trip_draws(len(members), 40, seed=3)
    weights[0, members] = 1
    names = {i: LABEL_MAP[i] for i in LABEL_MAP}
    whole = coco_draw_metrics(ev, ranked, weights, names)
    alone = only_trips(ranked, members)
    own = coco_draw_metrics(ev, alone, weights[:, members], names)
    assert set(own) == set(whole)
    for key in whole:
        np.testing.assert_array_equal(own[key], whole[key], err_msg=key)
    kept = alone[(1, "all")].per_threshold[0].trips.size
    assert 0 < kept < ranked[(1, "all")].per_threshold[0].trips.size  # fewer ranks to scan


def test_trip_draws_are_fixed_by_the_seed_and_resample_trips():
    a, b, c = trip_draws(6, 200, seed=1), trip_draws(6, 200, seed=1), trip_draws(6, 200, seed=2)
    assert a.shape == (200, 6) and (a.sum(axis=1) == 6).all()
    assert (a == b).all() and not (a == c).all()
    assert (a == 0).any() and (a >= 2).any()  # with replacement: some trips left out, some twice
    assert abs(a.mean() - 1.0) < 1e-12
    with pytest.raises(ValueError, match="at least one trip"):
        trip_draws(0, 10, seed=0)


def test_split_bootstrap_slices_and_trips_equal_pycocotools_on_their_own_frames():
    from urban_detection.detection.split_bootstrap import bootstrap_split
    from urban_detection.detection.waymo_ap import MAP_KEY, waymo_metrics

    gt_frames, det_frames = random_split(4, trips=6, frames=3)
    gt = to_coco_ground_truth(gt_frames)
    ev = coco_eval(gt, to_coco_detections(det_frames, gt))
    slices = {"odd": ["trip1", "trip3", "trip5"], "none": ["trip9"]}
    boot = bootstrap_split(ev, gt_frames, det_frames, draws=50, seed=1, slices=slices)
    assert boot["trips"] == [f"trip{i}" for i in range(6)] and set(boot["slices"]) == {"odd"}  # empty slice dropped

    def own(trips):
        keep = [i for i, g in enumerate(gt_frames) if g["path"].split("/")[-1].split(".")[0] in trips]
        gts, dets = [gt_frames[i] for i in keep], [det_frames[i] for i in keep]
        return {**pycocotools_metrics(gts, dets), MAP_KEY: waymo_metrics(gts, dets)[MAP_KEY]}

    for expected, got in ((own(boot["trips"]), boot["point"]), (own(slices["odd"]), boot["slices"]["odd"]["metrics"]),
                          (own(["trip2"]), boot["per_trip"]["trip2"])):
        for key in (*COCO_DRAW_METRICS, sized(AP50, "small"), MAP_KEY):
            e, g = expected[key], got[key]
            assert (math.isnan(e) and math.isnan(g)) or abs(e - g) <= 1e-9, (key, e, g)
    ci = boot["slices"]["odd"]["intervals"][AP50]
    assert ci["low"] <= boot["slices"]["odd"]["metrics"][AP50] <= ci["high"]
    assert len(boot["values"][AP50]) == 50


@pytest.mark.parametrize("threads", [1, 3])
def test_draws_in_small_chunks_equal_draws_in_one(threads):
    """Few cells per chunk (a split with many true positives) gives the same numbers, a few draws at a time,
    on one thread or several (classes and sizes side by side)."""
    gt_frames, det_frames = random_split(6, trips=6, frames=4)
    trips, trip_of_image = trip_index(gt_frames, lambda f: f["path"])
    gt = to_coco_ground_truth(gt_frames)
    ev = coco_eval(gt, to_coco_detections(det_frames, gt))
    ranked = ranked_matches(ev, trip_of_image, len(trips))
    weights = trip_draws(len(trips), 30, seed=4)
    names = {i: LABEL_MAP[i] for i in LABEL_MAP}
    whole = coco_draw_metrics(ev, ranked, weights, names)
    pieces = coco_draw_metrics(ev, ranked, weights, names, cells=10, threads=threads)
    assert set(pieces) == set(whole)
    for key in whole:
        np.testing.assert_array_equal(pieces[key], whole[key], err_msg=key)
