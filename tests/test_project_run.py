"""End to end through Kedro: synthetic trips -> ingest -> split -> configs -> training chain.

The ``train`` pipeline includes ingest and split, so it runs from an empty data folder."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from kedro_project import TINY_PARAMS, run_kedro

pytestmark = pytest.mark.slow


def test_ingest_split_and_finetune_chain_end_to_end(tiny_project: Path):
    params = json.loads(json.dumps(TINY_PARAMS))
    params["train"]["experiments"] = ["augmentations2_small_lr", "augs3"]
    run_kedro(tiny_project, ["train"], params)  # like `kedro run --pipeline=train` on a fresh clone

    report = json.loads((tiny_project / "data/08_reporting/ingest_report.json").read_text())
    assert report["files"] == 6 and report["trips"] == 6
    assert report["frames_written"] == 6 * 4
    assert sum(report["objects_written"].values()) > 0

    split = json.loads((tiny_project / "data/08_reporting/split_report.json").read_text())
    trips = [t for s in split["splits"].values() for t in s["trips"]]
    assert len(trips) == len(set(trips)) == 6 and split["leaks"] == []

    index = pd.read_parquet(tiny_project / "data/02_intermediate/frame_index.parquet")
    assert len(index) == 24 and index.image_hash.is_unique

    configs = {p.stem: yaml.safe_load(p.read_text())
               for p in (tiny_project / "data/05_model_input/experiment_configs").glob("*.yml")}
    assert set(configs) == {"augmentations2_small_lr", "augs3"}
    assert configs["augs3"]["parent"] == "augmentations2_small_lr"
    assert configs["augs3"]["optimizer"]["schedule"]["base_lr"] == 0.004
    assert configs["augs3"]["train"]["steps"] == 4  # settings applied last

    results = {}
    for name in ("augmentations2_small_lr", "augs3"):
        res = json.loads((tiny_project / f"data/06_models/{name}/train_result.json").read_text())
        assert res["selected"] and res["final_step"] == 4
        assert Path(res["last_checkpoint"] + ".index").exists()
        assert (tiny_project / f"data/08_reporting/{name}/augmentation_preview.png").stat().st_size > 1000
        results[name] = res
    # experiments that were not selected did not train
    assert not (tiny_project / "data/06_models/baseline/checkpoints").exists()

    # MLflow: a child run per experiment with flattened params, loss history and the model
    mlflow.set_tracking_uri(f"sqlite:///{tiny_project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    for name, res in results.items():
        run = client.get_run(res["run_id"])
        assert run.data.tags["experiment"] == name
        assert "mlflow.parentRunId" in run.data.tags
        assert run.data.params["optimizer.schedule.base_lr"] == "0.004"
        history = client.get_metric_history(res["run_id"], "loss/total")
        assert [m.step for m in history] == [1, 2, 3, 4]
        assert client.get_metric_history(res["run_id"], "val_loss/total")
        arts = {a.path for a in client.list_artifacts(res["run_id"])}
        assert {"config.yml", "augmentation_preview.png", "checkpoints", "model_weights"} <= arts

    # the Keras flavour gives the model back
    import urban_detection.detection.model  # noqa: F401  (registers the custom layers)

    logged = mlflow.search_logged_models(filter_string=f"source_run_id = '{results['augs3']['run_id']}'",
                                         output_format="list")
    model = mlflow.keras.load_model(logged[0].model_uri)
    assert model.name == "retinanet_resnet18_fpn_small"


def test_finetune_without_parent_checkpoint_is_a_clear_error(tiny_project: Path):
    params = json.loads(json.dumps(TINY_PARAMS))
    params["train"]["experiments"] = ["augs3"]
    run_kedro(tiny_project, ["ingest", "split"], params)
    with pytest.raises(Exception, match="fine-tunes from 'augmentations2_small_lr'"):
        run_kedro(tiny_project, ["train"], params)


def test_unknown_augmentation_fails_before_training(tiny_project: Path):
    params = json.loads(json.dumps(TINY_PARAMS))
    params["train"]["settings"]["augmentations"] = [{"name": "random_teleport"}]
    with pytest.raises(Exception, match="unknown augmentation 'random_teleport'"):
        run_kedro(tiny_project, ["train"], {**params, "train": {**params["train"], "experiments": ["fast_cpu"]}})
