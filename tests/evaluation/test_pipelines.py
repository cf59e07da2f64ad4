"""The evaluate and render Kedro pipelines on the tiny trained model, through their catalog datasets (slow)."""
import json
import shutil
from pathlib import Path

import mlflow
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import ParquetDataset
from kedro_datasets.partitions import PartitionedDataset

from urban_detection.datasets import DetectorDataset, ExportDataset, VideoDataset
from urban_detection.detection.coco import PER_CLASS_AP, SUMMARY_METRICS
from urban_detection.detection.provenance import model_provenance
from urban_detection.detection.trained import TrainedDetector
from urban_detection.pipelines import selection
from urban_detection.pipelines.evaluate import create_pipeline as evaluate_pipeline
from urban_detection.pipelines.evaluate.compare import compare_experiments
from urban_detection.pipelines.evaluate.nodes import StaleModelError, make_evaluate_node
from urban_detection.pipelines.render import create_pipeline as render_pipeline
from urban_detection.waymo.trips import Trips

from .helpers import plain_pycocotools

pytestmark = pytest.mark.slow

EVALUATE = {
    "splits": ["val", "test"], "batch_size": 4, "max_frames": None,
    "pr_iou": 0.5, "examples": {"split": "test", "count": 2, "score_threshold": 0.3},
    "large_box_filter": {"enabled": True, "max_area_frac": {"vehicle": 0.6, "pedestrian": 0.05, "cyclist": 0.4}},
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


@pytest.fixture()
def selected():
    selection.configure({"experiments": [NAME], "catalog": {NAME: {}}})
    yield
    selection.configure(None)
    selection._train_params = None


def tiny_trips(tiny_data) -> Trips:
    index = tiny_data["frame_index"].copy()
    index["image_hash"] = index["trip"] + "/" + index["frame"].astype(str)
    return Trips(root=Path(tiny_data["paths"]["trip_train"]).parent, index=index)


def tiny_detector(tiny_trained, trips, manifest) -> TrainedDetector:
    cfg = {**tiny_trained["config"], "name": NAME}
    record = model_provenance(cfg, trips, manifest)
    return TrainedDetector(model=tiny_trained["model"], config=cfg, provenance=record,
                           step=int(cfg["train"]["steps"]), run_id=None)


def test_evaluate_and_render_pipelines_through_the_catalog(tiny_data, tiny_trained, tmp_path, tracking, selected):
    out = tmp_path / "data"
    trips, manifest = tiny_trips(tiny_data), tiny_data["split_manifest"]
    trained = tiny_detector(tiny_trained, trips, manifest)
    DetectorDataset(str(out / "06_models" / NAME / "model")).save(trained)
    catalog = DataCatalog(datasets={
        f"{NAME}.model": DetectorDataset(str(out / "06_models" / NAME / "model")),
        f"{NAME}.config": MemoryDataset(trained.config),
        f"{NAME}.export": ExportDataset(str(out / "06_models" / NAME / "export")),
        "trips": MemoryDataset(trips, copy_mode="assign"),
        "eval_trips": MemoryDataset(trips, copy_mode="assign"),
        "split_manifest": MemoryDataset(manifest),
        "params:evaluate": MemoryDataset(EVALUATE),
        f"{NAME}.metrics": JSONDataset(filepath=str(out / "08_reporting" / NAME / "metrics.json")),
        f"{NAME}.coco_files": PartitionedDataset(path=str(out / "07_model_output" / NAME),
                                                 dataset="json.JSONDataset", filename_suffix=".json"),
        f"{NAME}.bootstrap_draws": ParquetDataset(filepath=str(out / "08_reporting" / NAME / "bootstrap_draws.parquet")),
    })
    pipe = evaluate_pipeline()
    assert {n.name for n in pipe.nodes} == {"ingest_eval_trips", "report_eval_frames", f"{NAME}.export",
                                            f"{NAME}.evaluate", "compare_experiments"}
    SequentialRunner().run(pipe.from_inputs(f"{NAME}.config", f"{NAME}.model"), catalog)

    metrics = json.loads((out / "08_reporting" / NAME / "metrics.json").read_text())
    assert metrics["evaluated"] and set(metrics["splits"]) == {"val", "test"}
    assert metrics["step"] == trained.step and metrics["fingerprint"] == trained.fingerprint
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
        assert set(doc["losses"]) >= {"loss/classification", "loss/localization", "loss/total"}
        assert doc["frames"] == {"val": len(tiny_data["frame_index"].query("trip == 'trip_val'")),
                                 "test": len(tiny_data["frame_index"].query("trip == 'trip_test'"))}[split]
        assert len(doc["pr_curves"]["vehicle"]) == 101

    # export: the dataset wrote both formats, loading gives the SavedModel detector with its provenance
    export = catalog.load(f"{NAME}.export")
    assert export.info["fingerprint"] == trained.fingerprint and export.info["image_size"] == trained.image_size
    assert (out / "06_models" / NAME / "export" / "model.keras").is_file()

    figures = catalog.load(f"{NAME}.evaluation_figures")
    assert {"pr_curves_val.png", "pr_curves_test.png", "confusion_val.png", "confusion_test.png"} <= set(figures)
    counts = metrics["splits"]["test"]["confusion_matrix"]["counts"]
    gt_boxes = metrics["splits"]["test"]["ground_truth_boxes"]
    assert sum(map(sum, counts[:3])) == gt_boxes  # every ground truth box is in one row
    table = catalog.load("evaluation_comparison")
    assert list(table.columns) == ["split", "metric", NAME, f"{NAME} ci95_low", f"{NAME} ci95_high"]
    row = table[(table.split == "test") & (table.metric == "DetectionBoxes_Precision/mAP")]
    assert row[NAME].item() == pytest.approx(metrics["splits"]["test"]["metrics"]["DetectionBoxes_Precision/mAP"])
    # one trip per split here: every draw is that trip, so the interval is the value itself
    boot = metrics["splits"]["test"]["bootstrap"]
    assert boot["trips"] == ["trip_test"] and boot["draws"] == 1000
    assert row[f"{NAME} ci95_low"].item() == pytest.approx(row[NAME].item(), abs=1e-12)
    draws = catalog.load(f"{NAME}.bootstrap_draws")
    assert len(draws) == 2000 and set(draws["split"]) == {"val", "test"}
    headline = catalog.load("evaluation_headline")
    assert headline.to_dict("records")[0]["model"] == trained.fingerprint[:12]
    assert headline["DetectionBoxes_Precision/mAP"].item() == pytest.approx(
        metrics["splits"]["test"]["metrics"]["DetectionBoxes_Precision/mAP"])
    md = catalog.load("evaluation_comparison_md")
    assert "## val" in md and "## test" in md and trained.fingerprint[:12] in md and "not evaluated" not in md

    # MLflow: the model's run (new here, as the model has none) holds its params, fingerprint and metrics
    client = mlflow.tracking.MlflowClient()
    runs = client.search_runs([tracking.info.experiment_id], f"tags.experiment = '{NAME}'")
    assert len(runs) == 1
    child = runs[0]
    assert child.data.tags["fingerprint"] == trained.fingerprint
    assert child.data.tags["mlflow.parentRunId"] == tracking.info.run_id
    assert child.data.params["model.image_size"] == str(trained.image_size)
    assert child.data.metrics["test/DetectionBoxes_Precision/mAP"] == pytest.approx(
        metrics["splits"]["test"]["metrics"]["DetectionBoxes_Precision/mAP"])

    # render from the export, reading the raw segment of the test trip at full rate
    from urban_detection.waymo.synthetic import write_trip

    raw_dir = tmp_path / "raw"
    segment = write_trip(raw_dir, 1, frames=12, width=96, height=64, cameras=("FRONT",))
    shutil.move(segment, raw_dir / "trip_test.tfrecord")
    render_params = {"trip": None, "split": "test", "camera": "FRONT", "score_threshold": 0.3, "fps": 10,
                     "tracking": True, "tracker": {"max_age": 2}, "large_box_filter": EVALUATE["large_box_filter"],
                     "batch_size": 8, "max_frames": None, "max_side": 960, "gif": True, "gif_max_side": 48}
    catalog["params:render"] = MemoryDataset(render_params)
    catalog["ingest_source"] = MemoryDataset(raw_dir, copy_mode="assign")
    catalog[f"{NAME}.video"] = VideoDataset(str(out / "08_reporting" / "videos" / f"{NAME}.mp4"))
    catalog[f"{NAME}.render_info"] = MemoryDataset()
    SequentialRunner().run(render_pipeline(), catalog)
    info = catalog.load(f"{NAME}.render_info")
    assert info["trip"] == "trip_test" and info["source"] == "raw_segment" and info["fingerprint"] == trained.fingerprint
    assert info["frames"] == 12 and info["first_frame"] == 0 and info["last_frame"] == 11
    video = catalog.load(f"{NAME}.video")
    assert len(video.frames) == 12 and video.fps == pytest.approx(10)
    assert (out / "08_reporting" / "videos" / f"{NAME}.gif").is_file()

    # without a raw segment the ingested frames are used, and the info says so
    shutil.move(raw_dir / "trip_test.tfrecord", tmp_path / "elsewhere.tfrecord")
    catalog["params:render"] = MemoryDataset({**render_params, "gif": False, "tracking": False, "fps": 1})
    SequentialRunner().run(render_pipeline(), catalog)
    info = catalog.load(f"{NAME}.render_info")
    assert info["source"] == "trip_tfrecord" and info["persistence_tracked"] is None and "played at 1" in info["note"]
    assert info["frames"] == len(tiny_data["frame_index"].query("trip == 'trip_test'"))


def test_evaluation_refuses_a_model_of_another_config_or_data(tiny_data, tiny_trained):
    trips, manifest = tiny_trips(tiny_data), tiny_data["split_manifest"]
    trained = tiny_detector(tiny_trained, trips, manifest)
    node = make_evaluate_node(NAME)
    changed = json.loads(json.dumps(trained.config))
    changed["model"]["image_size"] = 96
    with pytest.raises(StaleModelError, match=r"model.image_size: 64 -> 96"):
        node(trained, changed, trips, trips, manifest, EVALUATE)
    other_data = Trips(root=trips.root, index=trips.index.assign(image_hash=trips.index.image_hash + "x"))
    with pytest.raises(StaleModelError, match="training data changed"):
        node(trained, trained.config, other_data, other_data, manifest, EVALUATE)


def test_no_selected_experiment_gives_no_branch_and_an_empty_comparison():
    selection.configure({"experiments": [], "catalog": {NAME: {}}})
    try:
        assert not evaluate_pipeline().nodes and not render_pipeline().nodes
    finally:
        selection._train_params = None
    table, md, _, _, headline, _ = compare_experiments(EVALUATE)
    assert table.empty and headline.empty and "no experiment was evaluated" in md
