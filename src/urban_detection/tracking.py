"""MLflow helpers for per-experiment child runs (the kedro run is the parent).

kedro-mlflow opens the parent run for every ``kedro run``; the project names it
:func:`parent_run_name` (experiments, pipelines, start time). Each trained model gets its
own child run, named ``<experiment> <fingerprint[:8]> <start time>`` and tagged with
``experiment`` and ``fingerprint``, holding the params the model was trained with.
Resumed training reopens the run of the same fingerprint; evaluation and rendering log
into the run recorded with the model, so its metrics sit beside its params.

Metric keys: ``train/...`` per logged step; :data:`CHECKPOINT_VAL` ``/...`` at each
checkpoint (the validation loss over ``train.val_batches`` batches and COCO metrics on the
fixed ``train.val_coco_frames`` subset that picks the best checkpoint); ``val/...`` and
``test/...`` from the evaluate pipeline (every evaluation frame), at the exported step.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Iterator

import mlflow

from urban_detection.detection.config import flatten

log = logging.getLogger(__name__)
# MLflow 3's UI opens an experiment of this kind on its runs (not on the GenAI overview)
EXPERIMENT_KIND, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"
# Validation scored at each checkpoint during training (a fixed subset of val frames), not the
# evaluate pipeline's final val metrics (``val/...``, all evaluation frames): distinct keys.
CHECKPOINT_VAL = "val_checkpoint"


def parent_run_name(pipelines: list[str], experiments: list[str], when: float | None = None) -> str:
    """``fast_cpu · train+evaluate · 2025-01-01 12:00``: what a kedro run ran, on which experiments, when
    (``__default__`` is ``all pipelines``; more than three experiments are counted)."""
    pipes = "+".join("all pipelines" if p == "__default__" else p for p in pipelines) or "all pipelines"
    names = list(experiments)
    exps = "+".join(names) if len(names) <= 3 else f"{names[0]}+{len(names) - 1} more"
    return " · ".join([*([exps] if names else []), pipes, time.strftime("%Y-%m-%d %H:%M", time.localtime(when))])


def _usable(run_id: str | None) -> bool:
    if not run_id:
        return False
    try:
        return mlflow.get_run(run_id).info.lifecycle_stage == "active"
    except Exception:  # noqa: BLE001 - unknown run (e.g. a fresh mlflow.db)
        return False


@contextlib.contextmanager
def experiment_run(name: str, config: dict | None = None, provenance: dict | None = None,
                   run_id: str | None = None, parent_run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """Open the MLflow child run ``run_id`` when it exists, else a new one for this model.

    The new run is a child of the active run, or of ``parent_run_id`` when none is active here
    (training in another process than the kedro run's)."""
    parent = mlflow.active_run()
    if parent is not None and run_id and parent.info.run_id == run_id:
        yield parent
        return
    if _usable(run_id):
        with mlflow.start_run(run_id=run_id, nested=parent is not None) as run:
            yield run
        return
    fingerprint = (provenance or {}).get("fingerprint", "")
    tags = {"experiment": name, "fingerprint": fingerprint}
    if parent is not None or parent_run_id:
        tags["mlflow.parentRunId"] = parent.info.run_id if parent is not None else parent_run_id
    run_name = f"{name} {fingerprint[:8]} {time.strftime('%Y-%m-%d %H:%M')}".replace("  ", " ")
    mlflow.set_experiment_tag(EXPERIMENT_KIND, MODEL_DEVELOPMENT)  # also for stores made before this tag
    with mlflow.start_run(run_name=run_name, nested=parent is not None, tags=tags) as run:
        if config is not None:
            mlflow.log_params(flatten(config))
            mlflow.log_dict(config, "config.yml")
        if provenance:
            mlflow.log_params({f"provenance.{k}": v for k, v in provenance.items()})
        yield run


def mlflow_key(name: str) -> str:
    """MLflow metric keys allow only ``[A-Za-z0-9_\\-. :/]``: the Object Detection API's
    ``@`` becomes ``_at_`` and parentheses are dropped, e.g.
    ``DetectionBoxes_Precision/mAP@.50IOU`` -> ``DetectionBoxes_Precision/mAP_at_.50IOU`` and
    ``DetectionBoxes_Recall/AR@100 (small)`` -> ``DetectionBoxes_Recall/AR_at_100 small``.
    Reports on disk keep the original names."""
    return name.replace("@", "_at_").replace("(", "").replace(")", "")


def log_metrics(metrics: dict, step: int | None = None) -> None:
    """Log the finite numeric values of ``metrics``, keys made MLflow-safe by :func:`mlflow_key`."""
    clean = {}
    for k, v in metrics.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if f == f and abs(f) != float("inf"):
            clean[mlflow_key(k)] = f
    if clean:
        mlflow.log_metrics(clean, step=step)
