"""Kedro hook: the kedro run's MLflow run (kedro-mlflow's parent run) reads at a glance, and the store is portable."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from kedro.framework.hooks import hook_impl

log = logging.getLogger(__name__)


def evaluations(outputs: dict):
    """``(experiment, metrics doc, bootstrap draws)`` of each evaluated experiment among a node's outputs."""
    for name, doc in (outputs or {}).items():
        if name.endswith(".metrics") and isinstance(doc, dict) and doc.get("evaluated") and doc.get("experiment"):
            experiment = name[: -len(".metrics")]
            yield experiment, doc, outputs.get(f"{experiment}.bootstrap_draws")


def run_experiments(pipeline) -> list[str]:
    """The experiments a pipeline has nodes for (its namespaces that name a selected or reference experiment)."""
    from urban_detection.pipelines import selection

    known = set(selection.experiments()) | {selection.stored_reference()} - {None}
    spaces = dict.fromkeys((n.namespace or "").split(".")[0] for n in pipeline.nodes)
    return [s for s in spaces if s in known]


class MlflowRunHooks:
    """The kedro run's MLflow run (opened by kedro-mlflow) gets a name that tells runs apart,
    :func:`urban_detection.tracking.parent_run_name`, tags ``pipelines`` and ``experiments``, and
    each evaluated experiment's headline test metrics (``<experiment>/test/<metric>``), so the runs
    table and charts show them without unfolding the parent. The project's SQLite store keeps its
    artifact locations relative to the project root (:mod:`urban_detection.mlflow_store`)."""

    def __init__(self):
        self._root: Path | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        from urban_detection.mlflow_store import make_relative

        self._root = Path(context.project_path)
        config = getattr(context, "mlflow", None)  # set by kedro-mlflow's own after_context_created
        uri = getattr(getattr(config, "server", None), "mlflow_tracking_uri", None)
        make_relative(uri, self._root)

    @hook_impl(trylast=True)  # after kedro-mlflow opened the run
    def before_pipeline_run(self, run_params: dict, pipeline) -> None:
        import mlflow

        from urban_detection.tracking import parent_run_name

        self._work_in_project_root()
        run = mlflow.active_run()
        if run is None:
            return
        pipelines = run_params.get("pipeline_names") or [run_params.get("pipeline_name") or "__default__"]
        pipelines = [pipelines] if isinstance(pipelines, str) else list(pipelines)
        experiments = run_experiments(pipeline)
        mlflow.set_tags({"pipelines": "+".join(pipelines), "experiments": "+".join(experiments)})
        if run.info.run_name == "+".join(pipelines):  # kedro-mlflow's default (no tracking.run.name in mlflow.yml)
            name = parent_run_name(pipelines, experiments, run.info.start_time / 1000)
            mlflow.MlflowClient().update_run(run.info.run_id, name=name)
            log.info("MLflow run %s named %r", run.info.run_id, name)

    @hook_impl
    def after_node_run(self, node, outputs: dict) -> None:
        import mlflow

        from urban_detection.detection.evaluate import HEADLINE
        from urban_detection.tracking import log_metrics

        if mlflow.active_run() is None:
            return
        for experiment, doc, _ in evaluations(outputs):
            metrics = ((doc.get("splits") or {}).get("test") or {}).get("metrics") or {}
            log_metrics({f"{experiment}/test/{k}": metrics.get(k) for k in HEADLINE})

    def _work_in_project_root(self) -> None:
        """MLflow resolves the store's relative artifact locations against the working directory."""
        if self._root is None or Path.cwd().resolve() == self._root.resolve():
            return
        log.warning("working directory %s is not the project root: changing to %s, since the MLflow "
                    "store's artifact locations are relative to it", Path.cwd(), self._root)
        os.chdir(self._root)
