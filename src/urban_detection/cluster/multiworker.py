"""One experiment trained with ``MultiWorkerMirroredStrategy`` on N Ray workers, launched by Ray Train.

``ray.train.tensorflow.TensorflowTrainer`` starts the workers and gives each its ``TF_CONFIG``
(worker ``i`` is Ray Train's world rank ``i``; worker 0 is the chief). Every worker runs
:func:`urban_detection.cluster.job.run_job` with the strategy made first, as
``MultiWorkerMirroredStrategy`` requires: they train in lock step, the chief keeps the
checkpoints, the training record and the MLflow run as on one multi-worker host, and exports
the best checkpoint. It then saves the trained detector next to its checkpoints, where the
driver reads it (the checkpoint folder is on storage every node reaches).
"""
from __future__ import annotations

import logging
import shutil
import tempfile

from urban_detection.cluster.options import LaunchOptions
from urban_detection.cluster.job import ExperimentJob, run_job
from urban_detection.detection.trained import TrainedDetector, load_trained, save_trained

log = logging.getLogger(__name__)
RESULT = ".ray_trained"  # in the model's checkpoint folder: the chief's trained detector, read by the driver


def _worker_loop(config: dict) -> None:
    """What every Ray Train worker runs."""
    from urban_detection.detection.distribute import is_chief, strategy_scope

    strategy = strategy_scope("multi_worker_mirrored")  # reads TF_CONFIG; before any other TensorFlow op
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("urban_detection").setLevel(logging.INFO)
    trained = run_job(config["job"], strategy=strategy)
    if is_chief(strategy):
        save_trained(trained, config["result"])


def train_multiworker(job: ExperimentJob, options: LaunchOptions) -> TrainedDetector:
    """Train ``job`` on ``options.workers`` Ray workers, each with ``options.resources``; wait; the detector."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    result = job.checkpoint_dir / RESULT
    shutil.rmtree(result, ignore_errors=True)
    storage = tempfile.mkdtemp(prefix="urban_detection_ray_train_")  # Ray Train's run state (no checkpoint of its own)
    resources = options.worker_resources()
    trainer = TensorflowTrainer(
        _worker_loop, train_loop_config={"job": job, "result": str(result)},
        scaling_config=ScalingConfig(num_workers=options.workers, use_gpu=bool(resources.get("GPU")),
                                     resources_per_worker=resources),
        run_config=RunConfig(name=f"{job.name}-{job.fingerprint[:12]}", storage_path=storage,
                             failure_config=FailureConfig(max_failures=0)))
    log.info("%s: training on %d Ray workers (%s each) with MultiWorkerMirroredStrategy", job.name, options.workers,
             resources)
    try:
        trainer.fit()
        trained = load_trained(result)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        shutil.rmtree(result, ignore_errors=True)
    return trained
