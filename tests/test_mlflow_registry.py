"""MLflow as its users expect, through real Kedro sessions on a tiny project (slow): every exported
model a registry version of ``urban_detection-<experiment>``, the alias ``champion`` moved only by a
*better* paired comparison (and the run says why), parent runs named and carrying the headline
metrics, distinct checkpoint / final val keys, one copy of the model per run without internal files,
the served model's default threshold the render threshold, and a copied project that keeps its artifacts.

Four kedro runs of ``fast_cpu`` on the same data (one test trip, so a positive difference is *better*):
4 steps of a model that outputs no box (``model.overrides.score_threshold`` above any score: test
mAP@.50IOU exactly 0, the first version, champion), 60 steps (above 0: better, the alias moves), the
evaluate pipeline again on that model (nothing new registered or stored), 4 steps of a boxless model with
another seed (0, below the champion: the alias stays). Which of two tiny trainings scores higher is
chance (it differs between CPUs), so the order of the scores is made by construction, not by training."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from kedro_project import TINY_PARAMS, make_project, run_kedro
from urban_detection import mlflow_store, registry

pytestmark = pytest.mark.slow

NAME = registry.model_name("fast_cpu")
MAP50 = "DetectionBoxes_Precision/mAP_at_.50IOU"  # the MLflow key of mAP@.50IOU


def params(steps: int, seed: int = 0, boxless: bool = False) -> dict:
    """``boxless``: the model keeps only scores above 2, so it outputs no box at all (mAP exactly 0)."""
    out = json.loads(json.dumps(TINY_PARAMS))
    out["train"]["experiments"] = ["fast_cpu"]
    out["train"]["settings"]["train"].update(steps=steps, checkpoint_every=2 if steps < 20 else 20, seed=seed)
    if boxless:
        out["train"]["settings"]["model"]["overrides"] = {"score_threshold": 2.0}
    return out


def jpeg_request(path: Path) -> Path:
    """A `dataframe_split` request with one 200 x 300 JPEG, written to ``path``."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.write_text(json.dumps({"dataframe_split": {"columns": ["image"],
                                                    "data": [[base64.b64encode(buf.getvalue()).decode()]]}}))
    return path


def state(project: Path, label: str) -> dict:
    """After a kedro run: its run ids, the registry's versions and alias, the model's logged models."""
    client = mlflow.MlflowClient()
    export = json.loads((project / "data/06_models/fast_cpu/export/export_info.json").read_text())
    child = client.get_run(export["run_id"])
    versions = client.search_model_versions(f"name = '{NAME}'")
    return {"label": label, "run_id": export["run_id"], "child": child,
            "decision": child.data.tags.get(registry.DECISION_TAG),  # the run's tag now (a later run may redo it)
            "parent": client.search_runs([child.info.experiment_id], "tags.pipelines LIKE '%'",  # the kedro run's
                                         order_by=["attributes.start_time DESC"], max_results=1)[0],
            "versions": sorted((int(v.version), v.run_id) for v in versions),
            "champion": int(client.get_model_version_by_alias(NAME, registry.CHAMPION).version),
            "logged_models": mlflow.search_logged_models(experiment_ids=[child.info.experiment_id],
                                                         output_format="list")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("registry") / "project")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)  # as `kedro run` in the project
        out = {}
        try:
            for label, pipelines, run_params in (("first", ["train", "evaluate"], params(4, boxless=True)),
                                                 ("better", ["train", "evaluate"], params(60)),
                                                 ("again", ["evaluate"], params(60)),
                                                 ("worse", ["train", "evaluate"], params(4, seed=1, boxless=True))):
                run_kedro(project, pipelines, run_params)
                mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
                out[label] = state(project, label)
            yield project, out
        finally:
            mlflow.set_tracking_uri(None)


def test_each_export_is_a_version_and_the_champion_moves_only_when_better(runs):
    project, out = runs
    first, better, again, worse = (out[k] for k in ("first", "better", "again", "worse"))
    test_map = {k: out[k]["child"].data.metrics[f"test/{MAP50}"] for k in out}
    assert test_map["first"] == 0 and test_map["worse"] == 0 and test_map["better"] > 0, \
        f"the tiny trainings did not come out as this test needs: {test_map}"
    assert first["versions"] == [(1, first["run_id"])] and first["champion"] == 1
    assert better["versions"] == [(1, first["run_id"]), (2, better["run_id"])] and better["champion"] == 2
    assert again["versions"] == better["versions"] and again["champion"] == 2  # same model: same version
    assert worse["versions"][-1] == (3, worse["run_id"]) and worse["champion"] == 2

    def decision(state):
        return state["decision"]

    assert decision(first) == "v1 is the first version: champion"
    assert decision(better).endswith("better, champion moved to v2") and "vs champion v1" in decision(better)
    assert decision(again) == "v2 is already the champion"
    assert decision(worse).endswith("worse, champion v2 kept") and "paired trip bootstrap" in decision(worse)
    version = mlflow.MlflowClient().get_model_version(NAME, "3")
    assert version.tags[registry.DECISION_TAG] == decision(worse) and version.tags["experiment"] == "fast_cpu"
    assert worse["parent"].data.tags["fast_cpu.champion"] == decision(worse)  # the kedro run says it too
    champion = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    assert champion.metadata.run_id == better["run_id"]


def test_one_copy_of_the_model_per_run_and_no_internal_files(runs):
    project, out = runs
    # one served model per trained model (3), none added by evaluating the same model again
    assert len(out["worse"]["logged_models"]) == 3 and len(out["again"]["logged_models"]) == 2
    for label in ("first", "better", "worse"):
        top = {a.path for a in mlflow.artifacts.list_artifacts(run_id=out[label]["run_id"])}
        assert not top & {"export", "model"}, top
    assert not list((project / "mlruns").rglob(".urban_detection*"))
    sizes = {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 1e6
             for p in (project / "mlruns").glob("*/*") if p.is_dir()}
    print("MB per run folder / logged model:", {k[:10]: round(v, 1) for k, v in sorted(sizes.items())})
    info = mlflow.models.get_model_info(f"runs:/{out['better']['run_id']}/served_model")
    render = yaml.safe_load((project / "conf/base/parameters_render.yml").read_text())["render"]
    assert info.signature.params.to_dict()[0]["default"] == pytest.approx(render["score_threshold"])


def test_parent_runs_are_named_and_carry_the_headline_metrics(runs):
    _, out = runs
    names = [out[k]["parent"].info.run_name for k in ("first", "again")]
    assert names[0].startswith("fast_cpu · train+evaluate · 20") and names[1].startswith("fast_cpu · evaluate · ")
    for label in ("first", "better", "worse"):
        parent, child = out[label]["parent"], out[label]["child"]
        assert parent.data.tags["experiments"] == "fast_cpu" and parent.data.tags["pipelines"] == "train+evaluate"
        assert parent.data.metrics[f"fast_cpu/test/{MAP50}"] == child.data.metrics[f"test/{MAP50}"]
        assert f"fast_cpu/test/DetectionBoxes_Precision/mAP" in parent.data.metrics


def test_checkpoint_val_and_final_val_metrics_have_their_own_keys(runs):
    _, out = runs
    client = mlflow.MlflowClient()
    run_id = out["worse"]["run_id"]  # trained and evaluated once
    checkpoints = client.get_metric_history(run_id, f"val_checkpoint/{MAP50}")
    final = client.get_metric_history(run_id, f"val/{MAP50}")
    assert [m.step for m in checkpoints] == [2, 4]  # the fixed val subset at each checkpoint
    step = int(out["worse"]["child"].data.metrics["val_checkpoint/best_step"])
    assert [m.step for m in final] == [step]  # the evaluate pipeline, once, at the exported step
    assert [m.step for m in client.get_metric_history(run_id, "val_checkpoint/loss/total")] == [2, 4]
    assert not client.get_metric_history(run_id, "val/loss/total")[1:]  # the final val loss: once too


def test_a_copied_project_keeps_its_artifacts(runs, tmp_path):
    """The project copied to a new folder, the original moved away: the copy's runs, registry and served
    model read the copy's own artifacts, from Python and from `mlflow models predict` (what serve does)."""
    project, out = runs
    copy = tmp_path / "moved"
    shutil.copytree(project, copy)
    aside = project.with_name("project-aside")
    project.rename(aside)  # nothing may still point into the original folder
    try:
        assert mlflow_store.absolute_locations(copy / "mlflow.db", project) == {}
        os.chdir(copy)
        # the copy's store, named by its absolute path: MLflow caches a store per URI string, so a
        # relative URI another test of this process used in another folder would open that folder's store
        mlflow.set_tracking_uri(f"sqlite:///{copy / 'mlflow.db'}")
        run_id = out["better"]["run_id"]
        doc = json.loads(Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/evaluation/metrics.json"))
                         .read_text())
        assert doc["run_id"] == run_id
        assert mlflow.models.get_model_info(f"models:/{NAME}@champion").run_id == run_id
        request = jpeg_request(tmp_path / "request.json")
        done = subprocess.run(
            [str(Path(sys.executable).parent / "mlflow"), "models", "predict", "-m", f"runs:/{run_id}/served_model",
             "-i", str(request), "-t", "json", "--env-manager", "local", "-o", str(tmp_path / "out.json")],
            cwd=copy, capture_output=True, text=True, timeout=600,
            env={**os.environ, "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db",
                 "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"})
        assert done.returncode == 0, done.stderr[-3000:]
        predictions = json.loads((tmp_path / "out.json").read_text())["predictions"]
        assert len(predictions) == 1 and set(predictions[0]) == {"boxes", "labels", "scores", "num_detections"}
        assert pd.Series(predictions[0]["scores"], dtype=float).ge(0.3).all()  # the render threshold by default
    finally:
        os.chdir(tmp_path)
        aside.rename(project)
        mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")


def test_each_evaluation_figure_is_drawn_once_the_same_png_in_mlflow_and_in_the_catalog(runs, monkeypatch):
    project, out = runs
    monkeypatch.chdir(project)  # the store keeps artifact locations relative to the project
    run_id = out["worse"]["run_id"]  # the last run: the catalog's folder holds its figures
    logged = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/evaluation/figures"))
    names = sorted(p.name for p in logged.glob("*.png"))
    assert {"pr_curves_test.png", "confusion_test.png", "slices_test.png", "results.png"} <= set(names)
    folder = project / "data/08_reporting/fast_cpu/evaluation"
    for name in names:
        assert (logged / name).read_bytes() == (folder / name).read_bytes(), name
