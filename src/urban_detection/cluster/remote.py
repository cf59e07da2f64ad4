"""One experiment trained as its own Ray task, the driver waiting for it.

:func:`train_on_ray` submits an :class:`~urban_detection.cluster.job.ExperimentJob` with the
experiment's resources (or hands it to Ray Train for several workers), waits for it, so that a
threaded Kedro runner waits on several at once, and returns the trained detector.
"""
from __future__ import annotations

import logging

from urban_detection.cluster import connection, shipping
from urban_detection.cluster.job import ExperimentJob, run_job
from urban_detection.cluster.multiworker import train_multiworker
from urban_detection.cluster.options import LaunchOptions
from urban_detection.detection.trained import TrainedDetector

log = logging.getLogger(__name__)


def _experiment_task(job: ExperimentJob) -> shipping.ShippedDetector:
    """Body of an experiment's Ray task: its log records go to stderr, which Ray forwards to the driver."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=f"{job.name} %(asctime)s %(name)s: %(message)s")
    logging.getLogger("urban_detection").setLevel(logging.INFO)
    return shipping.pack(run_job(job))


def train_on_ray(job: ExperimentJob, options: LaunchOptions) -> TrainedDetector:
    """Train ``job`` on the Ray of ``options.ray_address`` and wait: one task asking for
    ``options.resources``, or ``options.workers`` Ray Train workers; the trained detector."""
    ray = connection.ray_at(options.ray_address)
    if options.workers > 1:
        return train_multiworker(job, options)
    task = ray.remote(max_retries=0, **options.task_options())(_experiment_task)
    log.info("%s: training as a Ray task (%s) at %s", job.name, options.task_options(), options.ray_address)
    ref = task.remote(job)
    done = False
    try:
        shipped = ray.get(ref)
        done = True
    finally:
        if not done:  # interrupted, or the task failed: nothing left running on the cluster
            ray.cancel(ref, force=True)
    return shipping.unpack(shipped)
