"""Training on a real two-node Ray cluster on 127.0.0.1 (1 CPU each), tracked by an MLflow server.

- Experiments in parallel: a Kedro session with ``ThreadRunner`` and ``train.ray_address`` trains
  two independent experiments at the same time (their MLflow runs' intervals overlap) and a
  fine-tuned one after its parent, each as its own Ray task, all logged through the tracking
  server the run starts (and stops), then evaluates them.
- Multi-worker through Ray Train: one experiment on 2 Ray workers, interrupted (its driver
  killed) after a checkpoint, started again: it resumes from the chief's checkpoint, into the
  same MLflow run, and exports the best checkpoint.

The cluster (``ray_cluster.LocalRayCluster``) and the servers take reserved or free ports, fail
fast with their logs, and only what these tests started is stopped.
"""
from __future__ import annotations

import copy
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import psutil
import pytest
import yaml
from ray_cluster import LocalRayCluster, addresses_as_given

from kedro_project import REPO, TINY_PARAMS, make_project

pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent
PARENT, CHILD, OTHER = "cpu_augs2_small_lr", "cpu_augs3", "cpu_baseline"
STEPS = 12  # long enough for the two trainings to overlap whatever the start-up skew of their workers
TRAIN_WORKER = "RayTrainWorker"  # in the process title of a Ray Train worker


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LocalRayCluster(tmp_path_factory.mktemp("cluster"), nodes=2, cpus_per_node=1)
    cluster.start()
    try:
        yield cluster
    finally:
        left = cluster.stop()
    assert left == [], left  # nothing of the cluster is left running


def _own_mlflow_servers() -> list[str]:
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "mlflow" in cmd and " server" in cmd and proc.status() != psutil.STATUS_ZOMBIE:
            out.append(f"{proc.pid} {cmd[:120]}")
    return out


def _run_threaded(project: Path, pipelines: list[str], params: dict) -> None:
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from kedro.runner import ThreadRunner

    bootstrap_project(project)
    configure_project("urban_detection")
    try:
        with KedroSession.create(project_path=project, runtime_params=params) as session:
            session.run(pipeline_names=pipelines, runner=ThreadRunner())
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run("FAILED")


def test_experiments_train_in_parallel_on_ray_tracked_by_a_server(cluster, tmp_path, monkeypatch):
    import ray

    project = make_project(tmp_path / "project")
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = copy.deepcopy(TINY_PARAMS)
    params["train"]["settings"]["train"].update(steps=STEPS, checkpoint_every=STEPS // 2)
    params["train"].update(experiments=[OTHER, PARENT, CHILD], ray_address=cluster.address,
                           resources={"num_cpus": 1})
    t0 = time.monotonic()
    try:
        with addresses_as_given():
            _run_threaded(project, ["train", "evaluate"], params)
    except BaseException:
        print(cluster.logs())  # shown with the failure
        raise
    took = time.monotonic() - t0

    # the run stopped what it started: its tracking server, its connection to the cluster
    assert _own_mlflow_servers() == []
    assert not ray.is_initialized()
    assert mlflow.get_tracking_uri() == f"sqlite:///{project / 'mlflow.db'}"

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("urban_detection")
    runs = client.search_runs([experiment.experiment_id])
    kedro_runs = [r for r in runs if "experiment" not in r.data.tags]
    assert len(kedro_runs) == 1 and kedro_runs[0].info.status == "FINISHED"
    children = {r.data.tags["experiment"]: r for r in runs if "experiment" in r.data.tags}
    assert set(children) == {OTHER, PARENT, CHILD}
    for name, run in children.items():
        info = run.info
        assert info.status == "FINISHED" and info.end_time, name
        assert run.data.tags["mlflow.parentRunId"] == kedro_runs[0].info.run_id  # a child of the kedro run
        assert run.data.metrics.get("train/images_per_sec_overall", 0) > 0, name  # logged from its Ray task
        assert any(k.startswith("test/") for k in run.data.metrics), name  # its evaluation, in its run
        model = json.loads((project / "data/06_models" / name / "model/model.json").read_text())
        assert model["run_id"] == info.run_id and model["summary"]["last_step"] == STEPS
        assert model["step"] == model["summary"]["best"]["best_step"]  # the best checkpoint is the model
        metrics = json.loads((project / "data/08_reporting" / name / "metrics.json").read_text())
        assert metrics["evaluated"] and metrics["run_id"] == info.run_id
        artifacts = project / "mlruns" / experiment.experiment_id / info.run_id / "artifacts"
        assert (artifacts / "config.yml").is_file(), name  # artifacts on the project's (shared) storage

    # training intervals: from the run's start (opened as training starts) to its last training metric
    # (the run's end time is later: evaluation and the served model log into the same run)
    spans = {name: (run.info.start_time / 1000,
                    client.get_metric_history(run.info.run_id, "train/images_per_sec_overall")[-1].timestamp / 1000)
             for name, run in children.items()}
    (a0, a1), (b0, b1) = spans[OTHER], spans[PARENT]
    overlap = min(a1, b1) - max(a0, b0)
    print(f"training spans {spans}; {OTHER} and {PARENT} trained at the same time for {overlap:.1f} s "
          f"(of {a1 - a0:.1f} and {b1 - b0:.1f} s); the run took {took:.0f} s; child started "
          f"{spans[CHILD][0] - b1:.1f} s after its parent's training")
    assert overlap > 0, spans
    assert spans[CHILD][0] >= b1, spans  # the child after its parent
    child = json.loads((project / "data/06_models" / CHILD / "model/model.json").read_text())
    parent = json.loads((project / "data/06_models" / PARENT / "model/model.json").read_text())
    assert child["provenance"]["parent_fingerprint"] == parent["provenance"]["fingerprint"]
