"""The exported checkpoint is the best by train.best_metric in its own direction: the highest AP or AR,
the lowest loss; under multi-worker training the chief scores a copy loaded from the checkpoint file
and chooses what one worker would."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from urban_detection.detection.best_checkpoint import CheckpointJudge
from urban_detection.detection.best_metric import BEST_METRICS, MAXIMISED, MINIMISED, metric_direction
from urban_detection.detection.checkpoint_eval import MAP, MAP50, BestCheckpoint, val_coco_metrics
from urban_detection.detection.checkpoints import TrainingRecord
from urban_detection.detection.coco import coco_metrics, to_coco_detections, to_coco_ground_truth
from urban_detection.detection.model import build_detector, checkpoint_weights
from urban_detection.detection.results_figure import best_step_of

SIZE = 32
LOSS = "loss/total"


def frames(n: int = 4):
    """``n`` dark images with one bright square (a vehicle) each, and their ground truth records."""
    images = np.full((n, SIZE, SIZE, 3), 10, np.uint8)
    ground_truth = []
    for k in range(n):
        images[k, k:k + 12, k:k + 12] = 230
        ground_truth.append({"image_id": k + 1, "source_id": f"trip/{k}", "height": SIZE, "width": SIZE,
                             "boxes": np.array([[k, k, k + 12, k + 12]], np.float32) / SIZE,
                             "labels": np.array([1], np.int32)})
    return images, ground_truth


class Stage:
    """A detector with the exported-model interface at one training stage: it boxes the bright square
    with label ``label`` (1: right, AP 1; 2: wrong class, AP 0) and has one weight, ``stage``."""

    def __init__(self, stage: int, label: int):
        self.stage, self.label = stage, label

    def __call__(self, images):
        b = len(images)
        boxes = np.zeros((b, 1, 4), np.float32)
        for i, image in enumerate(np.asarray(images)):
            ys, xs = np.nonzero(image[..., 0] > 150)
            boxes[i, 0] = [ys.min() / SIZE, xs.min() / SIZE, (ys.max() + 1) / SIZE, (xs.max() + 1) / SIZE]
        return {"detection_boxes": boxes, "detection_scores": np.full((b, 1), 0.9, np.float32),
                "detection_classes": np.full((b, 1), self.label, np.int32), "num_detections": np.ones(b, np.int32)}

    def get_weights(self):
        return [np.array(self.stage)]

    def set_weights(self, weights):
        self.stage = int(weights[0])


# Three checkpoints: AP rises (0, 0, 1) while the validation loss rises too (1, 2, 3).
STAGES = [(1, Stage(1, label=2), 1.0), (2, Stage(2, label=2), 2.0), (3, Stage(3, label=1), 3.0)]


def judge_all(folder, metric: str) -> TrainingRecord:
    record = TrainingRecord.open(folder, metric)
    judge = CheckpointJudge(record, frames(), SIZE, STAGES[0][1])
    for step, model, loss in STAGES:
        judge.model = model  # the weights training has reached at this step
        judge(step, f"ckpt-{step}", {LOSS: loss, "batches": 2})
    return record


@pytest.mark.parametrize("metric, step", [(MAP50, 3), ("DetectionBoxes_Recall/AR@100", 3), (LOSS, 1),
                                          ("loss/classification", None)])
def test_the_best_checkpoint_follows_the_direction_of_the_metric(tmp_path, metric, step):
    record = judge_all(tmp_path, metric)
    assert record.best.mode == metric_direction(metric) == ("min" if metric.startswith("loss/") else "max")
    assert record.best.best_step == step  # loss/classification was not computed: no best, the last step is kept
    if step is not None:
        exported = Stage(0, label=1)
        assert record.restore_best_weights(exported) and exported.stage == step
        assert best_step_of(record.val_history, metric) == step  # results.png marks the same step
    assert [h[MAP50] for h in record.val_history] == [0.0, 0.0, 1.0]
    assert [h[LOSS] for h in record.val_history] == [1.0, 2.0, 3.0]  # the losses are not overwritten by COCO


def test_a_record_of_the_other_direction_is_judged_again(tmp_path):
    judge_all(tmp_path, MAP50)
    reopened = TrainingRecord.open(tmp_path, LOSS)
    assert reopened.best.best_step is None and reopened.best.mode == "min"
    stored = TrainingRecord.open(tmp_path, MAP50)
    assert stored.best.best_step == 3 and len(stored.val_history) == 3


def test_every_best_metric_has_a_direction_and_is_computed_at_checkpoints():
    assert set(BEST_METRICS) == set(MAXIMISED) | set(MINIMISED) and not set(MAXIMISED) & set(MINIMISED)
    images, gt_frames = frames()
    dets = [{**g, "scores": np.array([0.9], np.float32)} for g in gt_frames]
    gt = to_coco_ground_truth(gt_frames)
    assert set(MAXIMISED) <= set(coco_metrics(gt, to_coco_detections(dets, gt)))
    assert BestCheckpoint(LOSS).mode == "min" and BestCheckpoint(MAP).mode == "max"
    with pytest.raises(ValueError, match=r"unknown train.best_metric 'AP50' \(valid: .*loss/total"):
        metric_direction("AP50")


def test_a_copy_loaded_from_the_checkpoint_scores_as_the_model_itself(tmp_path):
    """The multi-worker chief's way: the same metrics, the same best weights, the trained model untouched."""
    def build():
        return build_detector("retinanet_resnet18_fpn_small", SIZE * 2, fpn_filters=16, head_filters=16,
                              head_convs=1, encoder={"stackwise_num_filters": [64, 16, 16, 16]})

    tf.keras.utils.set_random_seed(1)
    model = build()
    prefix = tf.train.Checkpoint(weights=checkpoint_weights(model)).write(str(tmp_path / "ckpt-5"))
    data = frames()
    record = TrainingRecord.open(tmp_path, MAP)
    judge = CheckpointJudge(record, data, SIZE * 2, model, copy=build)
    judged, is_best = judge(5, prefix, {LOSS: 1.0})
    assert is_best and judge.copy is not model
    expected = val_coco_metrics(model, data, SIZE * 2)
    assert judged[MAP] == expected[MAP] and judged[MAP50] == expected[MAP50]
    exported = build()
    assert record.restore_best_weights(exported)
    for a, b in zip(exported.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_other_workers_only_record_their_losses(tmp_path):
    record = TrainingRecord.open(tmp_path, MAP50)
    judge = CheckpointJudge(record, None, SIZE, None, chief=False)
    assert judge(2, None, {LOSS: 1.0, "batches": 1}) == ({LOSS: 1.0}, False)
    assert record.val_history == [{"step": 2, LOSS: 1.0}] and record.best.best_step is None
    assert not (tmp_path / "training_record.json").exists()
