import math

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from urban_detection.detection.checkpoint_eval import (
    MAP,
    MAP50,
    BestCheckpoint,
    count_records,
    detect_frames,
    load_frames,
    spread_indices,
    val_coco_metrics,
)
from urban_detection.detection.evaluate import evaluate_detections
from urban_detection.detection.predict import predict_split
from urban_detection.waymo.example import DetectionExample, encode_example

SIZE = 32


def _write(path, n, start=0, bad_at=None):
    """``n`` frames of one bright square (a vehicle) on a dark, noisy background; frame k's square is at (k, k)."""
    rng = np.random.default_rng(start)
    with tf.io.TFRecordWriter(str(path)) as w:
        for k in range(start, start + n):
            if k == bad_at:
                w.write(b"not a tf.Example")
                continue
            image = rng.integers(0, 40, (SIZE, SIZE, 3)).astype(np.uint8)
            y = x = k % 16
            image[y:y + 12, x:x + 12] = (230, 220, 40)
            box = np.array([[y, x, y + 12, x + 12]], np.float32) / SIZE
            png = tf.io.encode_png(image).numpy()
            w.write(encode_example(DetectionExample(png, SIZE, SIZE, f"{k}.png", f"trip/{k}", box,
                                                    np.array([1], np.int32), "png")))
    return str(path)


class SquareFinder:
    """A real (trivial) detector with the exported-model interface: the bounding box of the bright pixels,
    reported with the label id ``label``; images without bright pixels get no detection."""

    def __init__(self, label=1):
        self.label = label

    def __call__(self, images):
        images = np.asarray(images)
        b, h, w = images.shape[:3]
        boxes = np.full((b, 1, 4), -1.0, np.float32)
        num = np.zeros(b, np.int32)
        for i, image in enumerate(images):
            ys, xs = np.nonzero(image[..., 0] > 150)
            if len(ys):
                boxes[i, 0] = [ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w]
                num[i] = 1
        return {"detection_boxes": boxes, "detection_scores": np.full((b, 1), 0.9, np.float32),
                "detection_classes": np.full((b, 1), self.label, np.int32), "num_detections": num}


class BlurredSquareFinder(SquareFinder):
    """Boxes a few pixels too large on half of the frames, so that mAP is between 0 and 1."""

    def __call__(self, images):
        out = super().__call__(images)
        out["detection_boxes"][::2, 0, 2:] = np.minimum(out["detection_boxes"][::2, 0, 2:] + 5 / SIZE, 1.0)
        return out


@pytest.fixture
def files(tmp_path):
    return [_write(tmp_path / "a.tfrecord", 6, 0), _write(tmp_path / "b.tfrecord", 4, 6)]


def test_spread_indices():
    assert spread_indices(5, 10).tolist() == [0, 1, 2, 3, 4]
    assert spread_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert spread_indices(10, None).tolist() == list(range(10))
    assert spread_indices(10, 0).tolist() == []


def test_load_frames_fixed_spread_subset(files):
    images, gt = load_frames(files, SIZE, max_frames=4)
    assert images.dtype == np.uint8 and images.shape == (4, SIZE, SIZE, 3)
    # 10 frames over two files: indices 0, 3, 6, 9 -> frames 0 and 3 of a, frames 6 and 9 of b
    assert [g["source_id"] for g in gt] == ["trip/0", "trip/3", "trip/6", "trip/9"]
    assert [g["image_id"] for g in gt] == [1, 2, 3, 4]
    assert [g["path"] for g in gt] == [files[0], files[0], files[1], files[1]]
    np.testing.assert_allclose(gt[1]["boxes"], [[3 / SIZE, 3 / SIZE, 15 / SIZE, 15 / SIZE]], atol=1e-6)
    assert gt[1]["labels"].tolist() == [1] and gt[1]["height"] == SIZE and gt[1]["width"] == SIZE
    # the square is where the box says, in the in-memory image
    assert images[1][3:15, 3:15, 0].min() == 230 and images[1][20:, 20:, 0].max() < 40
    again_images, again_gt = load_frames(files, SIZE, max_frames=4)
    assert np.array_equal(images, again_images) and [g["source_id"] for g in again_gt] == ["trip/0", "trip/3",
                                                                                           "trip/6", "trip/9"]


def test_load_frames_resizes_and_skips_bad_records(tmp_path, caplog):
    path = _write(tmp_path / "c.tfrecord", 5, 0, bad_at=2)
    assert count_records(path) == 5
    images, gt = load_frames(path, 16, max_frames=None)
    assert images.shape == (4, 16, 16, 3)
    assert [g["source_id"] for g in gt] == ["trip/0", "trip/1", "trip/3", "trip/4"]
    with pytest.raises(ValueError, match="no TFRecord"):
        load_frames([], 16)


def test_load_frames_reads_a_truncated_file_up_to_its_break_and_says_where(tmp_path, caplog):
    path = _write(tmp_path / "cut.tfrecord", 5, 0)
    path_obj = Path(path)
    path_obj.write_bytes(path_obj.read_bytes()[:-20])  # the last record loses its tail
    assert count_records(path) == 4
    images, gt = load_frames(path, 16, max_frames=None)
    assert [g["source_id"] for g in gt] == ["trip/0", "trip/1", "trip/2", "trip/3"] and images.shape[0] == 4
    assert any(str(path) in r.getMessage() and "record 4" in r.getMessage() for r in caplog.records)


def test_val_coco_metrics_of_a_perfect_and_a_wrong_detector(files):
    frames = load_frames(files, SIZE, max_frames=None)
    good = val_coco_metrics(SquareFinder(label=1), frames, SIZE, batch_size=4)
    assert good[MAP50] == pytest.approx(1.0) and good[MAP] == pytest.approx(1.0)
    wrong = val_coco_metrics(SquareFinder(label=2), frames, SIZE, batch_size=4)
    assert wrong[MAP50] == pytest.approx(0.0)
    dets = detect_frames(SquareFinder(), *frames, SIZE, batch_size=3)
    assert [d["image_id"] for d in dets] == list(range(1, 11)) and all(len(d["boxes"]) == 1 for d in dets)


def test_val_coco_metrics_agree_with_the_evaluate_pipeline_path(files):
    """All frames in memory give the numbers of predict_split + evaluate_detections on the files."""
    detector = BlurredSquareFinder()
    ours = val_coco_metrics(detector, load_frames(files, SIZE, max_frames=None), SIZE, batch_size=4)
    reference = evaluate_detections(*predict_split(detector, files, SIZE, 4))["metrics"]
    assert 0.0 < ours[MAP] < 1.0
    for name in (MAP, MAP50):
        assert ours[name] == pytest.approx(reference[name])


def test_val_coco_metrics_of_a_keras_detector(files):
    from urban_detection.detection.model import build_detector

    model = build_detector("retinanet_resnet18_fpn_small", SIZE * 2, encoder=dict(stackwise_num_filters=[64, 16, 16, 16]),
                           fpn_filters=16, head_filters=16, head_convs=1)
    frames = load_frames(files, SIZE * 2, max_frames=5)
    metrics = val_coco_metrics(model, frames, SIZE * 2, batch_size=4)
    assert {MAP, MAP50} <= set(metrics)
    assert 0.0 <= metrics[MAP] <= metrics[MAP50] <= 1.0


def test_best_checkpoint_max_min_and_resume():
    best = BestCheckpoint()
    assert best.metric == MAP and best.mode == "max"
    assert best.update(100, {MAP: 0.1}, checkpoint="ckpt-100")
    assert not best.update(200, {MAP: 0.05})
    assert not best.update(300, {MAP: 0.1})  # a tie keeps the earlier step
    assert not best.update(400, {MAP: float("nan")})
    assert not best.update(500, {"other": 1.0})
    assert best.update(600, {MAP: 0.2})
    assert (best.best_step, best.best_value, best.best_checkpoint) == (600, 0.2, None)

    resumed = BestCheckpoint.from_dict(best.to_dict())
    assert resumed == best
    assert not resumed.update(700, {MAP: 0.15}) and resumed.update(800, {MAP: 0.25})

    loss = BestCheckpoint("loss/total", mode="min")
    assert loss.update(1, {"loss/total": 2.0}) and loss.update(2, {"loss/total": 1.0})
    assert not loss.update(3, {"loss/total": 1.5}) and loss.best_step == 2
    assert math.isclose(loss.to_dict()["best_value"], 1.0)
    with pytest.raises(ValueError, match="mode"):
        BestCheckpoint(mode="largest")
