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
from toy_records import square_records

from kedro_project import REPO, TINY_PARAMS, make_project

pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent
PARENT, CHILD, OTHER = "cpu_augs2_small_lr", "cpu_augs3", "cpu_baseline"
# Enough training for the two runs to overlap although one Ray worker starts cold, up to ~20 s after the
# other (measured: 40 steps at 64 px ran 15 to 20 s, mostly fixed costs, and once did not overlap;
# 60 steps at 128 px overlapped 6 s, 100 steps 17 s)
STEPS, IMAGE = 100, 128
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
    params["train"]["settings"]["model"]["image_size"] = IMAGE
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


# ------------------------------------------------------------------ multi-worker through Ray Train
MW_STEPS, MW_EVERY = 60, 6
SIZE = 64




def _tiny_config() -> dict:
    from urban_detection.detection.config import resolve_experiments

    train = yaml.safe_load((REPO / "conf/base/parameters_train.yml").read_text())["train"]
    train["experiments"] = ["fast_cpu"]
    train["settings"] = {
        "model": {"image_size": SIZE, "overrides": {"encoder": {"stackwise_num_filters": [64, 16, 16, 16]},
                                                    "fpn_filters": 16, "head_filters": 32, "head_convs": 1}},
        "optimizer": {"schedule": {"warmup_steps": 1}},
        "train": {"steps": MW_STEPS, "batch_size": 2, "checkpoint_every": MW_EVERY, "log_every": 1,
                  "val_batches": 1, "val_coco_frames": 8, "shuffle_buffer": 8}}
    return resolve_experiments(train)["fast_cpu"]


def _train_workers(cluster) -> list:
    """The cluster's Ray Train worker processes."""
    out = []
    for proc in cluster.processes():
        try:
            if TRAIN_WORKER in " ".join(proc.cmdline()):
                out.append(proc)
        except psutil.Error:
            continue
    return out


def _driver(cluster, job, tmp: Path, name: str) -> tuple[subprocess.Popen, Path]:
    (tmp / f"{name}.pkl").write_bytes(pickle.dumps(job))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "RAY_TEST_ADDRESS": cluster.address, "RAY_TEST_WORKERS": "2", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled", "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    log = tmp / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(TESTS / "cluster_train_main.py"), str(tmp / f"{name}.pkl"),
                                 str(tmp / name)], env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc, log


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _wait_for(what: str, check, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the driver exited ({proc.returncode}) before {what}:\n{log.read_text()[-6000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {what} after {timeout:.0f} s" + (f":\n{log.read_text()[-6000:]}" if log else ""))


def test_two_ray_workers_resume_after_an_interruption_and_export_the_best(cluster, tmp_path):
    from urban_detection.cluster.job import ExperimentJob, Tracking
    from urban_detection.cluster.tracking_server import TrackingServer
    from urban_detection.detection.checkpoints import BEST_WEIGHTS, CheckpointStore, TrainingRecord

    records = str(square_records(tmp_path / "toy.tfrecord", SIZE))
    store = CheckpointStore(tmp_path / "checkpoints")  # on the storage both nodes share (one machine here)
    provenance = {"fingerprint": "c0ffee" * 10 + "beef"}
    folder = store.folder(provenance["fingerprint"])
    server = TrackingServer(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlruns").start()
    procs = []
    try:
        job = ExperimentJob(_tiny_config(), [records], [records], store, provenance, tracking=Tracking(server.url),
                            workdir=str(tmp_path))
        first, log = _driver(cluster, job, tmp_path, "first")
        procs.append(first)
        t0 = time.monotonic()
        _wait_for("first checkpoint", lambda: sorted(folder.glob("ckpt-*.index")), 600, first, log)
        workers = _train_workers(cluster)
        assert len(workers) == 2, [p.cmdline() for p in cluster.processes()]  # MultiWorkerMirroredStrategy on 2
        interrupted_after = time.monotonic() - t0
        _stop(first)  # the interruption: the driver and both workers killed
        for proc in workers:
            with __import__("contextlib").suppress(psutil.NoSuchProcess):
                proc.kill()
        _wait_for("end of the killed workers", lambda: not _train_workers(cluster), 120)
        run_id = store.run_id(provenance["fingerprint"])
        assert run_id  # the chief opened the MLflow run through the server and remembered it

        again = ExperimentJob(job.config, job.train_paths, job.val_paths, store, provenance, run_id=run_id,
                              tracking=job.tracking, workdir=job.workdir)
        second, log = _driver(cluster, again, tmp_path, "second")
        procs.append(second)
        t1 = time.monotonic()
        try:
            second.wait(timeout=900)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the resumed training did not end in 900 s:\n{log.read_text()[-6000:]}")
        assert second.returncode == 0, log.read_text()[-6000:]
        resumed_in = time.monotonic() - t1
        client = mlflow.MlflowClient(server.url)
        run = client.get_run(run_id)
        losses = client.get_metric_history(run_id, "train/loss/total")
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        for proc in procs:
            _stop(proc)
        server.stop()

    got = json.loads((tmp_path / "second.json").read_text())
    summary = got["summary"]
    print(f"interrupted {interrupted_after:.0f} s after the start, at step {summary['start_step']}; "
          f"resumed to step {summary['last_step']} in {resumed_in:.0f} s; best step {got['step']}")
    assert 0 < summary["start_step"] < MW_STEPS and summary["start_step"] % MW_EVERY == 0  # resumed from a checkpoint
    assert summary["last_step"] == MW_STEPS
    assert got["run_id"] == run_id and run.info.status == "FINISHED"  # the same MLflow run, on the chief
    assert sorted({m.step for m in losses}) == list(range(1, MW_STEPS + 1))  # both attempts' steps, once each
    # the best checkpoint by val COCO (judged by the chief) is what came back
    record = TrainingRecord.open(folder, job.config["train"]["best_metric"])
    assert got["step"] == record.best.best_step == summary["best"]["best_step"]
    judged = [v["step"] for v in record.val_history]  # the checkpoint the driver was killed at may be unjudged
    assert len(judged) == len(set(judged)) and all(s % MW_EVERY == 0 for s in judged)
    assert set(range(summary["start_step"] + MW_EVERY, MW_STEPS + 1, MW_EVERY)) <= set(judged)
    with np.load(folder / BEST_WEIGHTS) as best, np.load(tmp_path / "second.npz") as exported:
        assert len(best.files) == len(exported.files)
        for key in best.files:
            np.testing.assert_array_equal(best[key], exported[key])
    assert not list(folder.glob("workertemp_*")) and not (folder / ".ray_trained").exists()
