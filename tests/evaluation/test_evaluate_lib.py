"""detection/predict.py, evaluate.py and report.py: prediction records, COCO evaluation cross-checked with
plain pycocotools, large-box filter, losses, comparison report."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from urban_detection.detection.coco import PER_CLASS_AP, SUMMARY_METRICS
from urban_detection.detection.evaluate import evaluate_detections
from urban_detection.detection.predict import (
    evaluation_losses,
    load_trained_model,
    predict_split,
    predict_split_and_losses,
)
from urban_detection.detection.report import (
    comparison_figure,
    comparison_markdown,
    comparison_table,
    example_figures,
    select_examples,
)

from .helpers import ARCH, IMAGE_SIZE, frame, plain_pycocotools


def test_trained_model_loads_from_final_weights_and_from_a_checkpoint(tiny_trained):
    import tensorflow as tf

    trained = tiny_trained["model"]
    full = load_trained_model(ARCH, IMAGE_SIZE, weights_file=tiny_trained["model_dir"] / "final.weights.h5")
    for a, b in zip(trained.weights, full.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    prefix = tf.train.latest_checkpoint(str(tiny_trained["checkpoint_dir"]))
    from_ckpt = load_trained_model(ARCH, IMAGE_SIZE, checkpoint=prefix)
    for a, b in zip(trained.trainable_weights, from_ckpt.trainable_weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    with pytest.raises(ValueError, match="weights_file or checkpoint"):
        load_trained_model(ARCH, IMAGE_SIZE)


def same(ours, theirs):
    """Ours reports COCO's -1 (undefined) as NaN (None in JSON)."""
    if ours is None or (isinstance(ours, float) and math.isnan(ours)):
        return theirs == -1
    return ours == pytest.approx(theirs, abs=1e-12)


def test_predict_split_gives_stable_ids_and_the_recorded_ground_truth(tiny_data, tiny_trained):
    paths = [tiny_data["paths"]["trip_val"], tiny_data["paths"]["trip_test"]]
    gt, det = predict_split(tiny_trained["model"], paths, IMAGE_SIZE, batch_size=3)
    assert [g["image_id"] for g in gt] == list(range(1, 10)) == [d["image_id"] for d in det]
    assert [g["source_id"] for g in gt][:5] == [f"trip_val/{i * 10}" for i in range(4)] + ["trip_test/0"]
    assert gt[4]["path"] == tiny_data["paths"]["trip_test"] and gt[4]["height"] == IMAGE_SIZE
    _, boxes, labels = frame(104)  # first test frame
    np.testing.assert_allclose(gt[4]["boxes"], boxes, atol=1e-6)
    np.testing.assert_array_equal(gt[4]["labels"], labels)
    d = det[4]
    assert d["boxes"].shape == (len(d["scores"]), 4) and np.all(np.diff(d["scores"]) <= 0)
    assert set(np.unique(d["labels"])) <= {1, 2, 4}
    gt2, det2 = predict_split(tiny_trained["model"], paths, IMAGE_SIZE, batch_size=4, max_frames=5)
    assert [g["source_id"] for g in gt2] == [g["source_id"] for g in gt][:5]
    np.testing.assert_allclose(det2[4]["scores"], det[4]["scores"], rtol=1e-5)


def test_metrics_match_plain_pycocotools_on_the_written_json(tiny_data, tiny_trained, tmp_path):
    gt, det = predict_split(tiny_trained["model"], [tiny_data["paths"]["trip_test"]], IMAGE_SIZE, 4)
    result = evaluate_detections(gt, det)
    (tmp_path / "gt.json").write_text(json.dumps(result["ground_truth"]))
    (tmp_path / "dt.json").write_text(json.dumps(list(result["detections"])))
    stats, per_class = plain_pycocotools(tmp_path / "gt.json", tmp_path / "dt.json")
    metrics = result["metrics"]
    for name, value in zip(SUMMARY_METRICS, stats):
        assert same(metrics[name], value), name
    for cls, value in per_class.items():
        assert same(metrics[PER_CLASS_AP.format(cls)], value), cls
    # the trained model finds the two coloured boxes: a real check, not 0 == 0
    assert metrics["DetectionBoxes_Precision/mAP@.50IOU"] > 0.5
    assert len(result["pr_curves"]) == 2  # vehicle and pedestrian have ground truth, cyclist has none


def test_large_box_filter_drops_implausible_boxes_and_reports_the_ap_change():
    gt_frames, det_frames = [], []
    for i in range(4):
        _, boxes, labels = frame(i)
        gt_frames.append({"image_id": i + 1, "source_id": f"t/{i}", "height": 64, "width": 64,
                          "boxes": boxes, "labels": labels})
        # a confident full-frame 'pedestrian' false positive above the true detections
        det_frames.append({"image_id": i + 1, "height": 64, "width": 64,
                           "boxes": np.vstack([[0.0, 0.0, 1.0, 1.0], boxes]),
                           "labels": np.array([2, *labels]), "scores": np.array([0.99, 0.9, 0.8])})
    result = evaluate_detections(gt_frames, det_frames, {"pedestrian": 0.3, "vehicle": 0.9})
    filtered = result["filtered"]
    assert filtered["dropped"] == {"pedestrian": 4, "vehicle": 0}
    assert len(filtered["detections"]) == len(result["detections"]) - 4
    ped = PER_CLASS_AP.format("pedestrian")
    assert filtered["metrics"][ped] == pytest.approx(1.0)
    assert result["metrics"][ped] < 0.6
    assert filtered["delta"][ped] == pytest.approx(filtered["metrics"][ped] - result["metrics"][ped])
    assert filtered["delta"][PER_CLASS_AP.format("vehicle")] == pytest.approx(0.0)
    assert "filtered" not in evaluate_detections(gt_frames, det_frames, None)

    # a filter that removes nothing: the same detections and numbers, reported as such
    loose = evaluate_detections(gt_frames, det_frames, {"pedestrian": 1.0, "vehicle": 1.0})
    assert loose["filtered"]["dropped"] == {"pedestrian": 0, "vehicle": 0}
    assert loose["filtered"]["detections"] == loose["detections"]
    np.testing.assert_equal(loose["filtered"]["metrics"], loose["metrics"])
    assert all(v == 0 or np.isnan(v) for v in loose["filtered"]["delta"].values())  # NaN: undefined (no cyclist)


def test_evaluation_losses_are_the_training_losses(tiny_data, tiny_trained):
    from urban_detection.detection.data import make_dataset

    ds = make_dataset([tiny_data["paths"]["trip_test"]], IMAGE_SIZE, 4, training=False)
    losses = evaluation_losses(tiny_trained["model"], ds)
    assert losses["batches"] == 2
    assert all(np.isfinite(losses[k]) for k in ("loss/classification", "loss/localization", "loss/total"))
    assert losses["loss/total"] == pytest.approx(
        losses["loss/classification"] + losses["loss/localization"] + losses["loss/regularization"])
    # trained on these frames: far below the ~1.1 focal loss of the prior-initialised heads
    assert losses["loss/classification"] < 0.5


def test_one_forward_pass_gives_the_detections_and_the_training_losses(tiny_data, tiny_trained):
    """The evaluation's pass: predict_split's detections bit for bit, and the losses of the loss dataset over
    the same frames in the same batches (3 frames a batch: the short last batch is padded with blank frames
    that must not count). The images differ only by the loss dataset's rounding to uint8 after resizing."""
    from urban_detection.detection.data import make_dataset

    path = [tiny_data["paths"]["trip_test"]]
    gt, det = predict_split(tiny_trained["model"], path, IMAGE_SIZE, 3)
    assert len(gt) % 3  # a short last batch
    gt2, det2, losses = predict_split_and_losses(tiny_trained["model"], path, IMAGE_SIZE, 3, focal_gamma=1.5)
    assert [g["source_id"] for g in gt2] == [g["source_id"] for g in gt]
    for a, b in zip(det, det2):
        for key in ("boxes", "scores", "labels"):
            np.testing.assert_array_equal(a[key], b[key])
    reference = evaluation_losses(tiny_trained["model"], make_dataset(path, IMAGE_SIZE, 3, training=False),
                                  focal_gamma=1.5)
    assert losses["batches"] == reference["batches"] == -(-len(gt) // 3)
    for key in ("loss/classification", "loss/localization", "loss/total"):
        assert losses[key] == pytest.approx(reference[key], rel=2e-3), key
    other = evaluation_losses(tiny_trained["model"], make_dataset(path, IMAGE_SIZE, 3, training=False),
                              focal_gamma=2.0)
    assert abs(other["loss/classification"] - losses["loss/classification"]) > 1e-3  # the settings do count
    _, _, capped = predict_split_and_losses(tiny_trained["model"], path, IMAGE_SIZE, 3, max_frames=2)
    assert capped["batches"] == 1


def test_a_split_without_a_readable_frame_gives_no_records_and_nan_losses(tiny_trained, tmp_path, caplog):
    import tensorflow as tf

    path = tmp_path / "bad.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(b"not a tf.Example")
    gt, det, losses = predict_split_and_losses(tiny_trained["model"], [path], IMAGE_SIZE, 3)
    assert gt == [] and det == [] and losses["batches"] == 0 and np.isnan(losses["loss/total"])


def test_examples_pick_busy_frames_across_files_and_draw_them(tiny_data, tiny_trained):
    gt = [{"path": "a", "labels": [1] * n} for n in (1, 3, 2)] + [{"path": "b", "labels": [1] * n} for n in (2, 0)]
    assert select_examples(gt, 3) == [1, 3, 2]
    assert select_examples(gt, 0) == [] and select_examples([], 2) == []
    gts, dets = predict_split(tiny_trained["model"], [tiny_data["paths"]["trip_test"]], IMAGE_SIZE, 4)
    figures = example_figures(gts, dets, 2, 0.3)
    assert len(figures) == 2 and all(isinstance(f, Figure) for f in figures.values())
    assert all(k.startswith("example_") and k.endswith(".png") for k in figures)


def test_comparison_table_has_metrics_as_rows_and_experiments_as_columns():
    metrics = {
        "baseline": {"DetectionBoxes_Recall/AR@1": 0.1, "DetectionBoxes_Precision/mAP": 0.05,
                     "loss/total": 1.2, "DetectionBoxes_Precision/mAP (large)": None, "note": "text"},
        "augs3": {"DetectionBoxes_Precision/mAP": 0.108, "loss/total": 0.9, "custom": 3},
    }
    table = comparison_table(metrics)
    assert list(table.columns) == ["baseline", "augs3"]
    assert list(table.index) == ["DetectionBoxes_Precision/mAP", "DetectionBoxes_Precision/mAP (large)",
                                 "DetectionBoxes_Recall/AR@1", "loss/total", "custom"]
    assert table.loc["DetectionBoxes_Precision/mAP", "augs3"] == pytest.approx(0.108)
    assert np.isnan(table.loc["DetectionBoxes_Precision/mAP (large)", "baseline"])
    assert np.isnan(table.loc["custom", "baseline"])
    md = comparison_markdown(table)
    assert "| metric | baseline | augs3 |" in md
    assert "| DetectionBoxes_Precision/mAP | 0.050 | **0.108** |" in md
    assert "| loss/total | 1.200 | **0.900** |" in md  # lower is better for losses
    assert "n/a" in md
    split_table = pd.concat({"val": table, "test": table}, names=["split", "metric"])
    md2 = comparison_markdown(split_table)
    assert "## val" in md2 and "## test" in md2
    assert isinstance(comparison_figure(split_table), Figure)
    assert isinstance(comparison_figure(comparison_table({})), Figure)
