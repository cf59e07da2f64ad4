"""End to end through Kedro sessions on tiny generated projects: the train pipeline from an
empty data folder, the fine-tune chain, provenance of models, leak gating, catalog loading."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from kedro_project import TINY_PARAMS, run_kedro

pytestmark = pytest.mark.slow


def tiny(**train) -> dict:
    params = json.loads(json.dumps(TINY_PARAMS))
    params["train"].update(train)
    return params


def client_for(project: Path) -> mlflow.MlflowClient:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    return mlflow.MlflowClient()


def load_model(project: Path, name: str):
    from urban_detection.detection.trained import load_trained

    return load_trained(project / "data/06_models" / name / "model")


def test_finetune_chain_provenance_and_resume(tiny_project: Path):
    params = tiny(experiments=["augmentations2_small_lr", "augs3"])
    run_kedro(tiny_project, ["train"], params)  # like `kedro run --pipeline=train` on a fresh clone

    report = json.loads((tiny_project / "data/08_reporting/ingest_report.json").read_text())
    assert report["files"] == 6 and report["trips"] == 6 and report["frames_written"] == 6 * 4
    split = json.loads((tiny_project / "data/08_reporting/split_report.json").read_text())
    trips = [t for s in split["splits"].values() for t in s["trips"]]
    assert len(trips) == len(set(trips)) == 6

    configs = {p.stem: yaml.safe_load(p.read_text())
               for p in (tiny_project / "data/05_model_input/experiment_configs").glob("*.yml")}
    assert set(configs) == {"augmentations2_small_lr", "augs3"}
    assert configs["augs3"]["parent"] == "augmentations2_small_lr"
    assert configs["augs3"]["train"]["steps"] == 4  # settings applied last
    parent, child = load_model(tiny_project, "augmentations2_small_lr"), load_model(tiny_project, "augs3")
    assert parent.summary["last_step"] == child.summary["last_step"] == 4
    for model in (parent, child):  # the best checkpoint by val mAP@.50IOU is the model, its step recorded
        best = model.summary["best"]
        assert best["metric"] == "DetectionBoxes_Precision/mAP@.50IOU" and model.step == best["best_step"]
        assert [v["step"] for v in model.summary["val_history"]] == [2, 4]
    assert child.provenance["parent_fingerprint"] == parent.fingerprint
    assert parent.provenance["train_trips"] == len(split["splits"]["train"]["trips"])
    # augs3 started from its parent's weights: 4 small steps away from them, far from a fresh init
    from urban_detection.detection.model import build_detector

    fresh = build_detector(child.arch, image_size=child.image_size)
    kernels = [(c, p, f) for c, p, f in zip(child.model.weights, parent.model.weights, fresh.weights)
               if len(c.shape) == 4]
    to_parent = np.mean([np.abs(np.asarray(c) - np.asarray(p)).mean() for c, p, _ in kernels])
    to_fresh = np.mean([np.abs(np.asarray(c) - np.asarray(f)).mean() for c, _, f in kernels])
    assert to_parent < 0.1 * to_fresh, (to_parent, to_fresh)
    for name in ("augmentations2_small_lr", "augs3"):
        assert (tiny_project / f"data/08_reporting/{name}/augmentation_preview.png").stat().st_size > 1000
    assert not (tiny_project / "data/06_models/baseline").exists()  # not selected: no node, no files

    # MLflow: one child run per model, with the params and fingerprint it was trained with
    client = client_for(tiny_project)
    runs = {name: client.get_run(load_model(tiny_project, name).run_id) for name in configs}
    assert len({r.info.run_name for r in runs.values()}) == 2
    for name, run in runs.items():
        model = load_model(tiny_project, name)
        assert run.data.tags["experiment"] == name and run.data.tags["fingerprint"] == model.fingerprint
        assert "mlflow.parentRunId" in run.data.tags
        assert run.data.params["optimizer.schedule.base_lr"] == "0.004"
        assert run.data.params["provenance.data_fingerprint"] == model.provenance["data_fingerprint"]
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss/total")] == [1, 2, 3, 4]
        # scored at each checkpoint (val_checkpoint/), not the evaluate pipeline's final val/ metrics
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_checkpoint/loss/total")] == [2, 4]
        assert [m.step for m in client.get_metric_history(run.info.run_id,
                                                          "val_checkpoint/DetectionBoxes_Precision/mAP")] == [2, 4]
        assert not client.get_metric_history(run.info.run_id, "val/DetectionBoxes_Precision/mAP")
    # the kedro run's own (parent) run holds the wall time of each node: where the time went
    parent_run = client.get_run(runs["augs3"].data.tags["mlflow.parentRunId"]).data.metrics
    assert 0 < parent_run["time/augs3.train"] < parent_run["time/run"]
    assert parent_run["time/resolve_experiment_configs"] > 0

    # a changed setting trains a new model in a new checkpoint folder; the old one is kept
    first = load_model(tiny_project, "augmentations2_small_lr")
    params96 = tiny(experiments=["augmentations2_small_lr"])
    params96["train"]["settings"]["model"]["image_size"] = 96
    run_kedro(tiny_project, ["train"], params96)
    second = load_model(tiny_project, "augmentations2_small_lr")
    assert second.image_size == 96 and second.fingerprint != first.fingerprint
    assert second.run_id != first.run_id and second.summary["start_step"] == 0
    folders = sorted(p.name for p in (tiny_project / "data/06_models/augmentations2_small_lr/checkpoints").iterdir())
    assert folders == sorted([first.fingerprint[:12], second.fingerprint[:12]])

    # the same settings again: the finished model is reused, nothing is trained
    run_kedro(tiny_project, ["train"], params96)
    third = load_model(tiny_project, "augmentations2_small_lr")
    assert third.fingerprint == second.fingerprint and third.run_id == second.run_id
    assert third.summary["start_step"] == 4

    # evaluating the 96 px model under the 64 px config is refused, naming the change
    with pytest.raises(Exception, match=r"model.image_size: 96 -> 64"):
        run_kedro(tiny_project, ["evaluate"], tiny(experiments=["augmentations2_small_lr"]))


def test_finetune_without_a_trained_parent_is_a_clear_error(tiny_project: Path):
    with pytest.raises(Exception, match="no trained model in .*augmentations2_small_lr"):
        run_kedro(tiny_project, ["train"], tiny(experiments=["augs3"]))


def test_a_config_typo_fails_before_training(tiny_project: Path):
    params = tiny(experiments=["fast_cpu"])
    params["train"]["settings"]["train"]["step"] = 3
    with pytest.raises(Exception, match=r"train\.step.*train\.steps"):
        run_kedro(tiny_project, ["train"], params)
    assert not (tiny_project / "data/06_models/fast_cpu").exists()


def test_one_trip_under_two_names_stops_the_run_before_training(tiny_project: Path):
    from urban_detection.waymo.synthetic import write_synthetic_trips

    source = tiny_project / "data/01_raw/real"
    files = write_synthetic_trips(source, n_trips=5, frames_per_trip=8, width=160, height=96, seed=5,
                                  cameras=("FRONT",))
    shutil.copy(files[0], source / "segment-0000000000000000000_0_000_0_000_with_camera_labels.tfrecord")
    params = tiny(experiments=["fast_cpu"])
    params["ingest"]["source_dir"] = str(source)
    with pytest.raises(Exception, match="leak"):
        run_kedro(tiny_project, ["train"], params)
    assert not (tiny_project / "data/06_models/fast_cpu").exists()
    assert not (tiny_project / "data/03_primary/split_manifest.parquet").exists()


def test_catalog_loads_the_trained_detector_and_the_trips(tiny_project: Path):
    run_kedro(tiny_project, ["train"], tiny(experiments=["fast_cpu"]))
    from kedro.framework.session import KedroSession

    with KedroSession.create(project_path=tiny_project) as session:
        catalog = session.load_context().catalog
        detector = catalog.load("fast_cpu.model")
        trips = catalog.load("trips")
    assert trips.names and len(trips) == 24 and all(Path(p).is_file() for p in trips.paths())
    assert detector.name == "fast_cpu" and detector.summary["last_step"] == 4
    from urban_detection.detection.precision import policy_name

    # the default experiment's "auto" precision: what this machine computes, said on the model and its run
    assert detector.config["train"]["mixed_precision"] == "auto"
    assert detector.summary["dtype_policy"] == policy_name("auto")
    assert client_for(tiny_project).get_run(detector.run_id).data.tags["dtype_policy"] == policy_name("auto")
    images = np.zeros((1, detector.image_size, detector.image_size, 3), np.float32)
    out = detector.model.predict_on_batch(images)
    assert set(out) >= {"boxes", "confidence", "labels"}


def test_bfloat16_compute_is_a_training_setting(tiny_project: Path):
    params = tiny(experiments=["fast_cpu"])
    params["train"]["settings"]["train"]["mixed_precision"] = "bfloat16"  # CPUs with AVX512-BF16 or AMX
    run_kedro(tiny_project, ["train"], params)
    detector = load_model(tiny_project, "fast_cpu")
    assert detector.summary["dtype_policy"] == "mixed_bfloat16"  # not float16 (true) nor float32
    assert detector.config["train"]["mixed_precision"] == "bfloat16" and detector.summary["last_step"] == 4
    out = detector.model.predict_on_batch(np.zeros((1, detector.image_size, detector.image_size, 3), np.float32))
    assert np.isfinite(np.asarray(out["confidence"], np.float32)).all()
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"  # restored for what runs next
