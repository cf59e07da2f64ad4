"""MLflow helpers for per-experiment child runs (the kedro run is the parent).

kedro-mlflow opens the parent run for every ``kedro run``; each experiment gets its
own child run tagged ``experiment=<name>``, reused when training resumes so one
experiment's history stays in one run.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import mlflow

from urban_detection.detection.config import flatten

log = logging.getLogger(__name__)
RUN_ID_FILE = "mlflow_run_id.txt"


@contextlib.contextmanager
def experiment_run(name: str, model_dir: str | Path, config: dict | None = None) -> Iterator[mlflow.ActiveRun]:
    """Open (or re-open) the MLflow child run of experiment ``name``.

    The run id is remembered in ``<model_dir>/mlflow_run_id.txt`` so that resumed
    training, evaluation and rendering log into the same run.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    id_file = model_dir / RUN_ID_FILE
    run_id = id_file.read_text().strip() if id_file.exists() else None
    if run_id:
        try:
            if mlflow.get_run(run_id).info.lifecycle_stage != "active":
                run_id = None
        except Exception:  # noqa: BLE001 - unknown run (e.g. a fresh mlflow.db): start a new one
            run_id = None
    parent = mlflow.active_run()
    tags = {"experiment": name}
    if parent is not None:
        tags["mlflow.parentRunId"] = parent.info.run_id
    if run_id:
        ctx = mlflow.start_run(run_id=run_id, nested=parent is not None)
    else:
        ctx = mlflow.start_run(run_name=name, nested=parent is not None, tags=tags)
    with ctx as run:
        id_file.write_text(run.info.run_id)
        if config is not None and not run_id:
            mlflow.log_params(flatten(config))
        yield run


def mlflow_key(name: str) -> str:
    """MLflow metric keys allow only ``[A-Za-z0-9_\-. :/]``: the Object Detection API's
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
