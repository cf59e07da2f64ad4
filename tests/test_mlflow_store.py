"""The MLflow side without training: the champion decision on given bootstrap draws, artifact locations
relative to the project (a real SQLite store copied to another folder), parent run names, and no
warning printed by `kedro --help` (a real CLI process)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from kedro_project import make_project
from urban_detection import mlflow_store, registry
from urban_detection.tracking import parent_run_name

TRIPS = ("trip_a", "trip_b", "trip_c")


def draws(value: float, noise: np.ndarray, trips=TRIPS, seed: int = 0) -> registry.TestDraws:
    return registry.TestDraws(trips=tuple(trips), frames=30, seed=seed, draws=len(noise), level=0.95, value=value,
                              values=value + noise)


@pytest.fixture
def noise():
    return np.random.default_rng(0).normal(0.0, 0.05, 1000)  # what other trips would give, shared by both models


def test_the_first_version_is_champion_and_a_version_is_not_compared_with_itself():
    first = registry.champion_decision(None, None, "1", None)
    assert first == registry.Decision(True, "v1 is the first version: champion")
    decision = registry.champion_decision(None, None, "2", "2")
    assert not decision.move and decision.reason == "v2 is already the champion"


def test_the_alias_moves_only_when_the_paired_difference_is_better(noise):
    champion = draws(0.60, noise)
    better = registry.champion_decision(draws(0.62, noise + 0.001 * np.sin(np.arange(1000))), champion, "2", "1")
    assert better.move and better.verdict == "better" and better.reason.endswith("better, champion moved to v2")
    assert "test mAP@.50IOU v2 0.6200 vs champion v1 0.6000: difference 0.0200 [" in better.reason
    # the same +0.02 with independent trip noise: the paired interval holds 0, no move
    other = np.random.default_rng(1).normal(0.0, 0.05, 1000)
    unsure = registry.champion_decision(draws(0.62, other), champion, "2", "1")
    assert not unsure.move and unsure.verdict == "not distinguishable"
    assert unsure.reason.endswith("not distinguishable, champion v1 kept")
    worse = registry.champion_decision(draws(0.55, noise), champion, "2", "1")
    assert not worse.move and worse.verdict == "worse"


def test_draws_on_other_trips_are_not_paired(noise):
    champion = draws(0.60, noise)
    elsewhere = draws(0.9, noise, trips=("trip_a", "trip_b", "trip_d"))
    for new, why in ((elsewhere, "other test trips (3 against 3, 2 not in both)"),
                     (draws(0.9, noise, seed=1), "other bootstrap seed (1 against 0)")):
        decision = registry.champion_decision(new, champion, "2", "1")
        assert not decision.move and decision.verdict is None
        assert decision.reason == f"v2 and champion v1 were scored on {why}: they cannot be paired, champion v1 kept"
    missing = registry.champion_decision(draws(0.9, noise), None, "2", "1")
    assert not missing.move and "no stored test bootstrap draws" in missing.reason


def test_parent_run_names_tell_runs_apart():
    assert parent_run_name(["__default__"], ["fast_cpu"], 0).startswith("fast_cpu · all pipelines · 1970-01-01")
    assert parent_run_name(["train", "evaluate"], ["a", "b", "c", "d"], 0).startswith("a+3 more · train+evaluate · ")
    assert parent_run_name(["ingest"], [], 0).startswith("ingest · 1970")


def test_a_copied_store_keeps_its_artifacts(tmp_path, monkeypatch):
    """A run logged in one folder, its store made relative, the folder copied and the original deleted:
    the copy's run reads its artifact from the copy (as MLflow itself does it, from the project root)."""
    first, copy = tmp_path / "first", tmp_path / "copy"
    first.mkdir()
    monkeypatch.chdir(first)
    uri = f"sqlite:///{first / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("urban_detection")  # MLflow stores <first>/mlruns/1: absolute
        assert Path(mlflow.get_experiment(experiment).artifact_location).is_absolute()
        mlflow.set_experiment(experiment_id=experiment)
        with mlflow.start_run() as before:
            mlflow.log_text("logged before", "notes/before.txt")
        assert mlflow_store.absolute_locations(first / "mlflow.db", first) == {  # with MLflow's "Default" experiment
            "experiments.artifact_location": 2, "runs.artifact_uri": 1}
        assert mlflow_store.make_relative(uri, first) == 3
        assert mlflow_store.make_relative(uri, first) == 0  # once is enough
        assert mlflow.get_experiment(experiment).artifact_location == f"mlruns/{experiment}"
        with mlflow.start_run() as after:  # a new run gets a relative location from its experiment
            mlflow.log_text("logged after", "notes/after.txt")
        relative = f"mlruns/{experiment}/{after.info.run_id}/artifacts"
        assert mlflow.get_run(after.info.run_id).info.artifact_uri == relative

        shutil.copytree(first, copy)
        shutil.rmtree(first)
        monkeypatch.chdir(copy)
        # by absolute path: MLflow caches a store per URI string, and another test of this process may
        # have opened a relative "sqlite:///mlflow.db" in another folder
        mlflow.set_tracking_uri(f"sqlite:///{copy / 'mlflow.db'}")
        for run, text in ((before, "logged before"), (after, "logged after")):
            name = text.split()[-1]
            path = mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/notes/{name}.txt",
                                                       dst_path=str(tmp_path))
            assert Path(path).read_text() == text
    finally:
        mlflow.set_tracking_uri(None)


def test_other_stores_are_left_alone(tmp_path):
    assert mlflow_store.sqlite_file("http://127.0.0.1:5000") is None
    assert mlflow_store.make_relative("http://127.0.0.1:5000", tmp_path) == 0
    assert mlflow_store.make_relative(f"sqlite:///{tmp_path / 'none.db'}", tmp_path) == 0
    assert mlflow_store.sqlite_file("sqlite:////a/b/mlflow.db") == Path("/a/b/mlflow.db")


def test_kedro_help_prints_no_warning(tmp_path):
    project = make_project(tmp_path / "project")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "PYTHONWARNINGS": ""}
    done = subprocess.run([sys.executable, "-m", "kedro", "--help"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mlflow" in done.stdout and "run" in done.stdout  # the project's and kedro-mlflow's commands
    output = done.stdout + done.stderr
    assert "Warning" not in output and "WARNING" not in output, output[-3000:]


def test_the_project_turns_mlflow_telemetry_off_before_any_run():
    """No network at run time: MLflow 3 sends usage telemetry unless told not to (DO_NOT_TRACK=1 does not count,
    only "true"). A process that loads the project's settings, in an environment that says nothing about it
    (no CI or pytest marker either), has no telemetry client."""
    quiet = {"MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS"}
    env = {k: v for k, v in os.environ.items() if k not in quiet}
    code = ("import os, urban_detection.settings\n"
            "from mlflow.telemetry.client import get_telemetry_client\n"
            "print(os.environ['MLFLOW_DISABLE_TELEMETRY'], get_telemetry_client())")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].split() == ["true", "None"]
