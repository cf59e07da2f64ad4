"""pipelines/evaluate/compare.py: intervals in every output, paired verdicts that find a built-in difference
and none between identical detections, val labelled as the selection set."""
import mlflow
import numpy as np
import pandas as pd
import pytest

from urban_detection.detection.evaluate import evaluate_detections
from urban_detection.pipelines.evaluate.compare import compare_experiments

AP50 = "DetectionBoxes_Precision/mAP@.50IOU"
SETTINGS = {"draws": 300, "seed": 0, "level": 0.95}


def split_records(trips: int = 12, frames: int = 3, seed: int = 0):
    """Ground truth and good detections (jittered boxes, a few misses) of ``trips`` trips."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for t in range(trips):
        for f in range(frames):
            n = int(rng.integers(2, 6))
            y, x = rng.uniform(0, 0.7, size=(2, n))
            boxes = np.stack([y, x, y + 0.2, x + 0.2], axis=1).astype(np.float32)
            labels = rng.choice([1, 2, 4], size=n, p=[0.6, 0.3, 0.1])
            image_id = len(gts) + 1
            gts.append({"image_id": image_id, "source_id": f"t{t}_{f}", "height": 320, "width": 320,
                        "path": f"/d/trip_{t:02d}.tfrecord", "boxes": boxes, "labels": labels})
            keep = rng.uniform(size=n) > 0.1
            dets.append({"image_id": image_id, "height": 320, "width": 320,
                         "boxes": (boxes + rng.normal(0, 0.01, boxes.shape)).clip(0, 1)[keep].astype(np.float32),
                         "labels": labels[keep], "scores": rng.uniform(0.5, 1.0, int(keep.sum())).astype(np.float32)})
    return gts, dets


def with_false_positives(gts, dets, trips: set[int]):
    """``dets`` plus confident false positives (every class, away from the objects) on frames of ``trips``."""
    out = []
    for g, d in zip(gts, dets):
        if int(g["path"].split("_")[-1].split(".")[0]) in trips:
            fp = np.array([[0.9, 0.9, 0.99, 0.99]] * 3, np.float32)
            d = {**d, "boxes": np.concatenate([d["boxes"], fp]), "labels": np.concatenate([d["labels"], [1, 2, 4]]),
                 "scores": np.concatenate([d["scores"], np.full(3, 0.99, np.float32)])}
        out.append(d)
    return out


def experiment(name: str, gts, dets):
    """The metrics doc and draws table evaluate_model gives, for the test split."""
    result = evaluate_detections(gts, dets, bootstrap=SETTINGS)
    boot = result["bootstrap"]
    split_doc = {"frames": len(gts), "trips": len(boot["trips"]), "metrics": result["metrics"], "losses": {},
                 "bootstrap": {k: boot[k] for k in ("trips", "draws", "seed", "level", "point", "intervals")}}
    doc = {"experiment": name, "evaluated": True, "step": 10, "fingerprint": name * 4, "arch": "a", "image_size": 320,
           "splits": {"test": split_doc}, "waymo_matcher": "hungarian"}
    draws = pd.DataFrame({"split": "test", "slice": "all", "draw": range(boot["draws"]), **boot["values"]})
    return doc, draws


def test_paired_verdicts_find_a_built_in_difference_and_none_between_identical_detections(tmp_path):
    gts, dets = split_records()
    worse = with_false_positives(gts, dets, trips=set(range(0, 12, 2)))
    docs = [experiment("a", gts, dets), experiment("same", gts, dets), experiment("fp", gts, worse)]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("compare")  # this store's own experiment, whatever an earlier test left active
    try:
        with mlflow.start_run() as run:  # the kedro run's, as kedro-mlflow opens it
            table, md, _, _, headline, _ = compare_experiments({"splits": ["test"]}, *[d for d, _ in docs],
                                                               *[t for _, t in docs])
        logged = mlflow.tracking.MlflowClient().get_run(run.info.run_id).data.metrics
    finally:
        mlflow.set_tracking_uri(None)
    row = table[(table.split == "test") & (table.metric == AP50)].iloc[0]
    assert row["same verdict"] == "not distinguishable" and row["same - a"] == 0.0
    assert row["same - a ci95_low"] == 0.0 == row["same - a ci95_high"]
    assert row["fp verdict"] == "worse" and row["fp - a ci95_high"] < 0
    key = "paired/test/fp/DetectionBoxes_Precision/mAP_at_.50IOU"
    assert logged[f"{key}/difference"] == pytest.approx(row["fp - a"])
    assert logged[f"{key}/ci95_high"] == pytest.approx(row["fp - a ci95_high"])
    assert row["fp"] < row["a"] and row["a ci95_low"] <= row["a"] <= row["a ci95_high"]
    assert row["a ci95_low"] < row["a ci95_high"]  # 12 trips of different frames: a real interval
    assert "## test: difference from a (paired trip bootstrap)" in md and "**worse**" in md
    # metrics COCO does not report (AP50 of medium objects: all here) are paired from the bootstrap's point values
    medium = next(line for line in md.splitlines() if line.startswith(f"| {AP50} (medium) |"))
    assert "n/a" not in medium and "+0.000 [+0.000, +0.000] not distinguishable" in medium
    value, ci = row["a"], (row["a ci95_low"], row["a ci95_high"])
    assert f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" in md
    assert list(headline["experiment"]) == ["a", "same", "fp"]
    assert headline.loc[0, f"{AP50} ci95_low"] == pytest.approx(ci[0])

    # the reference is a setting: against "fp", "a" is better
    table, *_ = compare_experiments({"splits": ["test"], "reference": "fp"}, *[d for d, _ in docs],
                                    *[t for _, t in docs])
    row = table[(table.split == "test") & (table.metric == AP50)].iloc[0]
    assert row["a verdict"] == "better" and "fp verdict" not in table
    with pytest.raises(ValueError, match="evaluate.reference 'zz' was not evaluated"):
        compare_experiments({"splits": ["test"], "reference": "zz"}, *[d for d, _ in docs], *[t for _, t in docs])


def test_val_is_labelled_as_the_selection_set_and_not_paired():
    gts, dets = split_records(trips=4)
    docs = []
    for name in ("a", "b"):
        doc, draws = experiment(name, gts, dets)
        doc["splits"]["val"] = doc["splits"]["test"]
        docs.append((doc, pd.concat([draws, draws.assign(split="val")])))
    table, md, *_ = compare_experiments({"splits": ["val", "test"]}, *[d for d, _ in docs], *[t for _, t in docs])
    assert "## val (selection set: it chose the checkpoint, so optimistic)" in md
    assert "## test: difference from a" in md and "## val: difference" not in md
    assert table.loc[table.split == "val", "b verdict"].isna().all()
