"""One experiment's training as plain data: what ``run_experiment`` needs, and running it where it lands.

:class:`ExperimentJob` holds the arguments of :func:`urban_detection.training.run_experiment`
for one experiment; :func:`run_job` runs it in whichever process receives it (a Ray task, or
each worker of a multi-worker job) with the same arguments as on one machine, so resume,
provenance and the best-checkpoint choice are the same. It logs into the driver's MLflow
experiment through the tracking URI the job carries (the run's tracking server), as a child
of the kedro run.

Paths travel as the driver sees them (absolute), and the job works in the driver's working
directory: a cluster needs the project, its data and checkpoints at the same paths on every node.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from urban_detection.cluster import shipping
from urban_detection.detection.checkpoints import CheckpointStore
from urban_detection.detection.trained import TrainedDetector


@dataclass(frozen=True)
class Tracking:
    """Where a job logs: the tracking URI, the experiment and the kedro run to be a child of."""

    uri: str | None = None
    experiment_id: str | None = None
    parent_run_id: str | None = None

    @classmethod
    def current(cls) -> "Tracking":
        """This process's MLflow tracking URI and active run (the kedro run)."""
        import mlflow

        run = mlflow.active_run()
        return cls(mlflow.get_tracking_uri(), run.info.experiment_id if run else None, run.info.run_id if run else None)


@dataclass(frozen=True)
class ExperimentJob:
    """The arguments of ``run_experiment`` for one experiment, as data a Ray worker receives."""

    config: dict
    train_paths: list[str]
    val_paths: list[str]
    checkpoints: CheckpointStore
    provenance: dict
    run_id: str | None = None
    parent: shipping.ShippedDetector | None = None
    tracking: Tracking = Tracking()
    workdir: str = "."

    @property
    def name(self) -> str:
        return str(self.config["name"])

    @property
    def fingerprint(self) -> str:
        return str(self.provenance["fingerprint"])

    @property
    def checkpoint_dir(self) -> Path:
        return self.checkpoints.folder(self.fingerprint)


def make_job(config: dict, *, train_paths, val_paths, checkpoints: CheckpointStore, provenance: dict,
             run_id: str | None = None, parent: TrainedDetector | None = None) -> ExperimentJob:
    """The job of one experiment, with this process's tracking and working directory."""
    return ExperimentJob(config, [str(Path(p).absolute()) for p in train_paths],
                         [str(Path(p).absolute()) for p in val_paths], checkpoints, provenance, run_id,
                         shipping.pack(parent) if parent is not None else None, Tracking.current(), os.getcwd())


def run_job(job: ExperimentJob, strategy=None) -> TrainedDetector:
    """Train ``job`` here: ``run_experiment`` with the job's arguments (``strategy``: a ready
    ``tf.distribute`` strategy, made before any other TensorFlow op on a multi-worker job)."""
    import mlflow

    from urban_detection.training import run_experiment

    if job.workdir:
        os.chdir(job.workdir)  # the store's relative artifact locations are relative to the project root
    if job.tracking.uri:
        mlflow.set_tracking_uri(job.tracking.uri)
    if job.tracking.experiment_id:  # the job names its experiment: no other one from this worker's environment
        for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
            os.environ.pop(name, None)
        mlflow.set_experiment(experiment_id=job.tracking.experiment_id)
    parent = shipping.unpack(job.parent) if job.parent is not None else None
    return run_experiment(
        job.config, train_paths=job.train_paths, val_paths=job.val_paths, checkpoint_dir=job.checkpoint_dir,
        provenance=job.provenance, run_id=job.run_id,
        on_run=lambda run_id: job.checkpoints.remember_run(job.fingerprint, run_id),
        parent=parent, parent_run_id=job.tracking.parent_run_id, strategy=strategy)
