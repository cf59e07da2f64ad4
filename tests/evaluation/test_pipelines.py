"""The evaluate and render Kedro pipelines end to end on the tiny trained model (slow)."""
import json
import shutil

import mlflow
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.partitions import PartitionedDataset

from urban_detection.detection.coco import PER_CLASS_AP, SUMMARY_METRICS
from urban_detection.pipelines.evaluate import create_pipeline as evaluate_pipeline
from urban_detection.pipelines.evaluate.nodes import compare_experiments, make_evaluate_node, make_export_node
from urban_detection.pipelines.render import create_pipeline as render_pipeline
from urban_detection.pipelines.train.pipeline import defined_experiments

from .helpers import plain_pycocotools

pytestmark = pytest.mark.slow

EVALUATE = {
    "experiments": None, "splits": ["val", "test"], "batch_size": 4, "max_frames": None, "loss_batches": None,
    "pr_iou": 0.5, "examples": {"split": "test", "count": 2, "score_threshold": 0.3},
    "large_box_filter": {"enabled": True, "max_area_frac": {"vehicle": 0.6, "pedestrian": 0.05, "cyclist": 0.4}},
    "export": {"log_to_mlflow": True},
}
NAME = "fast_cpu"


@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    """A throwaway MLflow store with an open parent run, as kedro-mlflow gives the nodes."""
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("test")
    with mlflow.start_run() as parent:
        yield parent
    mlflow.set_tracking_uri(None)


def test_evaluate_pipeline_saves_files_whose_metrics_pycocotools_reproduces(tiny_data, tiny_trained, tmp_path,
                                                                             tracking, request):
    out = tmp_path / "data"
    train_results = {f"{n}.train_result": {"experiment": n, "selected": False,
                                           "model_dir": str(out / "06_models" / n),
                                           "checkpoint_dir": str(out / "06_models" / n / "checkpoints")}
                     for n in defined_experiments(request.config.rootpath / "conf")}
    train_results[f"{NAME}.train_result"] = {"experiment": NAME, "selected": True, "final_step": 150,
                                             "model_dir": str(tiny_trained["model_dir"]),
                                             "checkpoint_dir": str(tiny_trained["checkpoint_dir"])}
    datasets = {k: MemoryDataset(v) for k, v in train_results.items()}
    datasets.update({
        "experiment_configs": MemoryDataset({NAME: tiny_trained["config"]}),
        "split_manifest": MemoryDataset(tiny_data["split_manifest"]),
        "frame_index": MemoryDataset(tiny_data["frame_index"]),
        "params:evaluate": MemoryDataset(EVALUATE),
        "params:paths": MemoryDataset({"models": str(out / "06_models"), "reporting": str(out / "08_reporting")}),
        f"{NAME}.metrics": JSONDataset(filepath=str(out / "08_reporting" / NAME / "metrics.json")),
        "baseline.metrics": JSONDataset(filepath=str(out / "08_reporting" / "baseline" / "metrics.json")),
        f"{NAME}.coco_files": PartitionedDataset(path=str(out / "07_model_output" / NAME),
                                                 dataset="json.JSONDataset", filename_suffix=".json"),
    })
    catalog = DataCatalog(datasets=datasets)
    SequentialRunner().run(evaluate_pipeline(), catalog)

    metrics = json.loads((out / "08_reporting" / NAME / "metrics.json").read_text())
    assert metrics["evaluated"] and metrics["step"] == 150 and set(metrics["splits"]) == {"val", "test"}
    files = out / "07_model_output" / NAME
    assert sorted(p.name for p in files.iterdir()) == sorted(
        f"{s}_{k}.json" for s in ("val", "test") for k in ("ground_truth", "detections", "detections_filtered"))
    for split in ("val", "test"):
        doc = metrics["splits"][split]
        stats, per_class = plain_pycocotools(files / f"{split}_ground_truth.json", files / f"{split}_detections.json")
        for name, value in zip(SUMMARY_METRICS, stats):
            ours = doc["metrics"][name]
            assert (value == -1) if ours is None else ours == pytest.approx(value, abs=1e-12), (split, name)
        for cls, value in per_class.items():
            ours = doc["metrics"][PER_CLASS_AP.format(cls)]
            assert (value == -1) if ours is None else ours == pytest.approx(value, abs=1e-12), (split, cls)
        fstats, _ = plain_pycocotools(files / f"{split}_ground_truth.json", files / f"{split}_detections_filtered.json")
        assert doc["large_box_filter"]["metrics"]["DetectionBoxes_Precision/mAP"] == pytest.approx(fstats[0])
        assert doc["large_box_filter"]["dropped"]["pedestrian"] > 0  # 0.05 of the image: every pedestrian box
        assert doc["large_box_filter"]["delta"][PER_CLASS_AP.format("pedestrian")] < 0
        assert set(doc["losses"]) >= {"loss/classification", "loss/localization", "loss/total"}
        assert doc["frames"] == {"val": 4, "test": 5}[split]
        assert doc["timing"]["inference_s"] > 0 and doc["timing"]["coco_s"] > 0
        assert len(doc["pr_curves"]["vehicle"]) == 101
    assert metrics["splits"]["test"]["metrics"]["DetectionBoxes_Precision/mAP@.50IOU"] > 0.5

    # other experiments were skipped quickly and said why
    skipped = catalog.load("baseline.metrics")
    assert skipped == {"experiment": "baseline", "evaluated": False,
                       "reason": skipped["reason"]} and "no checkpoint" in skipped["reason"]
    assert catalog.load("baseline.export_info")["exported"] is False

    # export
    export_info = catalog.load(f"{NAME}.export_info")
    assert export_info["exported"] and export_info["step"] == 150 and export_info["image_size"] == 64
    assert (tiny_trained["model_dir"] / "export" / "model.keras").is_file()
    assert (tiny_trained["model_dir"] / "export" / "saved_model" / "saved_model.pb").is_file()

    # figures and comparison
    figures = catalog.load(f"{NAME}.evaluation_figures")
    assert {"pr_curves_val.png", "pr_curves_test.png"} <= set(figures)
    assert sum(k.startswith("test_example_") for k in figures) == 2
    table = catalog.load("evaluation_comparison")
    assert list(table.columns) == ["split", "metric", NAME]  # only evaluated experiments get a column
    row = table[(table.split == "test") & (table.metric == "DetectionBoxes_Precision/mAP")]
    assert row[NAME].item() == pytest.approx(metrics["splits"]["test"]["metrics"]["DetectionBoxes_Precision/mAP"])
    assert "large_box_filter/DetectionBoxes_Precision/mAP" in set(table.metric)
    assert "loss/total" in set(table.metric)
    md = catalog.load("evaluation_comparison_md")
    assert "## val" in md and "## test" in md and "not evaluated (no checkpoint): baseline" in md

    # MLflow: the experiment's child run has the metrics and the files
    client = mlflow.tracking.MlflowClient()
    child_id = (tiny_trained["model_dir"] / "mlflow_run_id.txt").read_text().strip()
    child = client.get_run(child_id)
    assert child.data.tags["mlflow.parentRunId"] == tracking.info.run_id
    assert child.data.metrics["test/DetectionBoxes_Precision/mAP"] == pytest.approx(
        metrics["splits"]["test"]["metrics"]["DetectionBoxes_Precision/mAP"])
    assert "val/DetectionBoxes_Precision/mAP_at_.50IOU" in child.data.metrics
    assert "test/loss/total" in child.data.metrics
    history = client.get_metric_history(child_id, "test/DetectionBoxes_Precision/mAP")
    assert [m.step for m in history] == [150]
    coco = {a.path for a in client.list_artifacts(child_id, "evaluation/coco")}
    assert "evaluation/coco/test_detections.json" in coco and "evaluation/coco/val_ground_truth.json" in coco
    assert {a.path for a in client.list_artifacts(child_id, "export")} >= {"export/model.keras",
                                                                            "export/saved_model"}

    # render, from the export, reading the raw segment of the test trip at full rate
    from urban_detection.waymo.synthetic import write_trip

    raw_dir = tmp_path / "raw"
    segment = write_trip(raw_dir, 1, frames=12, width=96, height=64, cameras=("FRONT",))
    shutil.move(segment, raw_dir / "trip_test.tfrecord")
    render_params = {"experiments": None, "trip": None, "split": "test", "raw_dir": str(raw_dir),
                     "camera": "FRONT", "model_format": "saved_model", "score_threshold": 0.3, "fps": 10,
                     "tracking": True, "tracker": {"max_age": 2}, "large_box_filter": EVALUATE["large_box_filter"],
                     "batch_size": 8, "max_frames": None, "max_side": 960, "gif": True, "gif_max_side": 48}
    catalog["params:render"] = MemoryDataset(render_params)
    SequentialRunner().run(render_pipeline(), catalog)
    info = catalog.load(f"{NAME}.render_info")
    assert info["rendered"] and info["trip"] == "trip_test" and info["source"] == "raw_segment"
    assert info["frames"] == 12 and info["first_frame"] == 0 and info["last_frame"] == 11
    video = out / "08_reporting" / "videos" / f"{NAME}_trip_test.mp4"
    assert info["video"] == str(video) and video.stat().st_size > 0
    assert (out / "08_reporting" / "videos" / f"{NAME}_trip_test.gif").is_file()
    assert catalog.load("baseline.render_info")["rendered"] is False
    child = client.get_run(child_id)
    assert "render/frames_per_sec" in child.data.metrics
    assert {a.path for a in client.list_artifacts(child_id, "videos")} >= {f"videos/{NAME}_trip_test.mp4"}

    # without a raw segment the ingested frames are used (every 10th frame)
    (raw_dir / "trip_test.tfrecord").unlink()
    catalog["params:render"] = MemoryDataset({**render_params, "gif": False, "tracking": False})
    SequentialRunner().run(render_pipeline().only_nodes_with_namespaces([NAME]), catalog)
    info = catalog.load(f"{NAME}.render_info")
    assert info["source"] == "trip_tfrecord" and info["frames"] == 5 and info["persistence_tracked"] is None


def test_unselected_experiment_without_checkpoint_skips_quickly(tmp_path):
    result = {"experiment": "baseline", "selected": False, "model_dir": str(tmp_path / "baseline"),
              "checkpoint_dir": str(tmp_path / "baseline" / "checkpoints")}
    paths = {"models": str(tmp_path), "reporting": str(tmp_path / "rep")}
    doc, files, figures = make_evaluate_node("baseline")(result, {}, pd.DataFrame(), pd.DataFrame(), EVALUATE, paths)
    assert doc["evaluated"] is False and "not selected" in doc["reason"] and files == {} and figures == {}
    assert make_export_node("baseline")(result, {}, EVALUATE, paths)["exported"] is False
    table, md, fig, pr = compare_experiments(EVALUATE, doc)
    assert table.empty and "no experiment was evaluated" in md
    picked = make_evaluate_node("baseline")(result, {}, pd.DataFrame(), pd.DataFrame(),
                                            {**EVALUATE, "experiments": ["fast_cpu"]}, paths)[0]
    assert picked["reason"] == "not in evaluate.experiments"
