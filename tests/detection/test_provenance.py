"""Model fingerprints cover everything that decides the exported weights: the weight-relevant config,
how the checkpoint is chosen (best_metric, val_coco_frames, checkpoint_every), the train data and the
val (selection) frames; check_provenance refuses a model they did not make, saying what changed."""
from __future__ import annotations

import copy

import pandas as pd
import pytest

from urban_detection.detection.provenance import (
    StaleModelError,
    StoredModel,
    check_provenance,
    explain_mismatch,
    model_provenance,
)
from urban_detection.waymo.trips import Trips

CONFIG = {
    "name": "fast_cpu", "parent": None,
    "model": {"arch": "retinanet_resnet18_fpn_small", "image_size": 64, "weights": None},
    "optimizer": {"type": "adam", "learning_rate": 0.001}, "augmentations": [],
    "train": {"batch_size": 2, "steps": 10, "checkpoint_every": 5, "log_every": 1, "keep_checkpoints": 3,
              "best_metric": "DetectionBoxes_Precision/mAP@.50IOU", "val_coco_frames": 128, "val_batches": 4},
}
MANIFEST = pd.DataFrame({"trip": ["a", "b", "v1", "v2", "t"], "split": ["train", "train", "val", "val", "test"]})


def trips(**hash_of: str) -> Trips:
    """Two frames per trip of MANIFEST; ``hash_of``: another image hash for that trip's frames."""
    rows = [{"trip": t, "frame": f, "image_hash": hash_of.get(t, f"{t}/{f}"), "path": f"/trips/{t}.tfrecord"}
            for t in MANIFEST["trip"] for f in (0, 1)]
    return Trips(root="/trips", index=pd.DataFrame(rows))


def changed(path: str, value) -> dict:
    cfg = copy.deepcopy(CONFIG)
    section, key = path.split(".")
    cfg[section][key] = value
    return cfg


def fingerprint(cfg=CONFIG, data=None, manifest=MANIFEST) -> str:
    return model_provenance(cfg, data or trips(), manifest)["fingerprint"]


@pytest.mark.parametrize("path, value", [
    ("train.best_metric", "DetectionBoxes_Precision/mAP"),
    ("train.val_coco_frames", 64),
    ("train.checkpoint_every", 2),
    ("model.image_size", 96),
])
def test_a_change_of_what_chooses_the_checkpoint_gives_a_new_fingerprint(path, value):
    assert fingerprint(changed(path, value)) != fingerprint()


def test_val_trips_are_part_of_the_fingerprint():
    other_frames = trips(v1="changed pixels")
    other_split = MANIFEST.assign(split=MANIFEST["split"].where(MANIFEST["trip"] != "v2", "test"))
    assert fingerprint(data=other_frames) != fingerprint()
    assert fingerprint(manifest=other_split) != fingerprint()
    assert fingerprint(data=trips(t="changed test pixels")) == fingerprint()  # test frames choose nothing
    record = model_provenance(CONFIG, trips(), MANIFEST)
    assert (record["val_trips"], record["val_frames"], record["train_trips"], record["train_frames"]) == (2, 4, 2, 4)


def test_operational_settings_do_not_change_the_fingerprint():
    for path, value in [("train.log_every", 50), ("train.keep_checkpoints", 1), ("train.val_batches", 8)]:
        assert fingerprint(changed(path, value)) == fingerprint(), path


def test_validation_loss_batches_count_when_a_loss_chooses_the_checkpoint():
    by_loss = changed("train.best_metric", "loss/total")
    more_batches = copy.deepcopy(by_loss)
    more_batches["train"]["val_batches"] = 8
    assert fingerprint(more_batches) != fingerprint(by_loss)


def test_the_mismatch_is_named_in_words():
    stored = model_provenance(CONFIG, trips(), MANIFEST)
    new_metric = changed("train.best_metric", "DetectionBoxes_Recall/AR@100")
    text = explain_mismatch(stored, model_provenance(new_metric, trips(), MANIFEST), CONFIG, new_metric)
    assert text == ("the checkpoint selection changed (train.best_metric: 'DetectionBoxes_Precision/mAP@.50IOU' -> "
                    "'DetectionBoxes_Recall/AR@100')")
    smaller = changed("model.image_size", 32)
    text = explain_mismatch(stored, model_provenance(smaller, trips(), MANIFEST), CONFIG, smaller)
    assert text == "the config changed (model.image_size: 64 -> 32)"
    one_val_trip = MANIFEST[MANIFEST["trip"] != "v2"]
    text = explain_mismatch(stored, model_provenance(CONFIG, trips(), one_val_trip), CONFIG, CONFIG)
    assert text == "the selection frames changed (val trips: 2 trips / 4 frames then, 1 / 2 now)"


def test_check_provenance_passes_a_current_model_and_refuses_a_stale_one():
    record = model_provenance(CONFIG, trips(), MANIFEST)
    model = StoredModel("fast_cpu", 10, record["fingerprint"], record, CONFIG)
    check_provenance(model, CONFIG, trips(), MANIFEST)
    expected = (rf"the stored fast_cpu model \({record['fingerprint'][:12]}, step 10\) does not match the current "
                r"run: the checkpoint selection changed \(train.val_coco_frames: 128 -> 16\)\. Train it first: "
                r"kedro run --pipeline=train")
    with pytest.raises(StaleModelError, match=expected):
        check_provenance(model, changed("train.val_coco_frames", 16), trips(), MANIFEST)
    with pytest.raises(StaleModelError, match=r"the selection frames changed \(val trips: 2 trips / 4 frames then, "
                                              r"2 / 4 now\)"):
        check_provenance(model, CONFIG, trips(v2="other"), MANIFEST)
    old = StoredModel("fast_cpu", 10, "f" * 40, {}, CONFIG)
    with pytest.raises(StaleModelError, match="records no provenance"):
        check_provenance(old, CONFIG, trips(), MANIFEST)


def test_a_model_of_another_parent_is_refused_when_the_parent_is_known():
    parent = {"fingerprint": "p" * 64}
    model = StoredModel("augs3", 10, None, model_provenance(CONFIG, trips(), MANIFEST, parent), CONFIG)
    check_provenance(model, CONFIG, trips(), MANIFEST)  # parent unknown here: not judged
    check_provenance(model, CONFIG, trips(), MANIFEST, parent=parent)
    with pytest.raises(StaleModelError, match="the parent model changed"):
        check_provenance(model, CONFIG, trips(), MANIFEST, parent={"fingerprint": "q" * 64})
