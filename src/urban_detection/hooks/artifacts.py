"""Kedro hook: each trained model's export served, registered and judged in MLflow; videos logged."""
from __future__ import annotations

import logging

from kedro.framework.hooks import hook_impl

from urban_detection.hooks.params import session_parameters
from urban_detection.hooks.runs import evaluations

log = logging.getLogger(__name__)


class ModelArtifactsHooks:
    """Logs into the MLflow run each model was trained in (kedro-mlflow's artifact datasets log into
    the parent run only):

    - once ``<experiment>.export`` is saved: the export as the servable MLflow model ``served_model``
      (:mod:`urban_detection.serving`; the one copy of the model in the run, its default score
      threshold ``render.score_threshold``), registered as a version of
      ``urban_detection-<experiment>`` (:mod:`urban_detection.registry`);
    - once the experiment is evaluated: its test bootstrap draws (for later paired comparisons);
      with both, the alias ``champion`` moves to the new version or stays, and the run says why;
    - once ``<experiment>.video`` is saved: the video (``videos/``).

    ``evaluate.export.log_to_mlflow: false`` turns the served model and the registry off.
    """

    def __init__(self):
        self._catalog = None
        self._log_export = True
        self._min_score = None
        self._versions: dict = {}  # experiment -> model version registered in this session
        self._evaluated: dict = {}  # experiment -> (run id, TestDraws | None) of this session

    @hook_impl
    def after_context_created(self, context) -> None:
        params = session_parameters(context)
        evaluate = params.get("evaluate") or {}
        self._log_export = bool((evaluate.get("export") or {}).get("log_to_mlflow", True))
        self._min_score = (params.get("render") or {}).get("score_threshold")

    @hook_impl
    def after_catalog_created(self, catalog) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data, node) -> None:
        from urban_detection.datasets import ExportDataset, VideoDataset

        if self._catalog is None or "." not in dataset_name:
            return
        experiment = dataset_name.rsplit(".", 1)[0]
        dataset = self._catalog.get(dataset_name)
        if isinstance(dataset, ExportDataset) and self._log_export:
            self._export_saved(experiment, dataset)
        elif isinstance(dataset, VideoDataset):
            export = self._catalog.get(f"{experiment}.export")
            run_id = export.info().get("run_id") if isinstance(export, ExportDataset) else None
            _log_file(experiment, dataset.path, "videos", run_id)

    @hook_impl
    def after_node_run(self, node, outputs: dict) -> None:
        from urban_detection import registry

        for experiment, doc, draws in evaluations(outputs):
            run_id = doc.get("run_id")
            if not run_id:
                continue
            if draws is not None and len(draws):
                registry.log_test_draws(run_id, draws)
            self._evaluated[experiment] = (run_id, registry.TestDraws.from_evaluation(doc, draws))
            self._judge(experiment)

    def _export_saved(self, experiment: str, dataset) -> None:
        from urban_detection import registry, serving

        info = dataset.info()
        run_id = info.get("run_id")
        if not run_id:
            return
        min_score = serving.RENDER_SCORE_THRESHOLD if self._min_score is None else float(self._min_score)
        uri = serving.log_served_model(dataset.path, run_id, experiment, min_score=min_score)
        self._versions[experiment] = registry.register(
            uri, experiment, run_id, {"fingerprint": str(info.get("fingerprint")), "step": str(info.get("step"))})
        self._judge(experiment)

    def _judge(self, experiment: str) -> None:
        """The champion decision, once this session registered and evaluated the same model."""
        import mlflow

        from urban_detection import registry

        version, (run_id, draws) = self._versions.get(experiment), self._evaluated.get(experiment, (None, None))
        if version is None or run_id != version.run_id:
            return
        del self._versions[experiment], self._evaluated[experiment]
        decision = registry.update_champion(version, draws)
        if mlflow.active_run() is not None and mlflow.active_run().info.run_id != run_id:  # the kedro run
            mlflow.set_tag(f"{experiment}.champion", decision.reason)


def _log_file(experiment: str, path, artifact_path: str, run_id: str | None) -> None:
    import mlflow

    from urban_detection.tracking import experiment_run

    if not run_id or not path.is_file():
        return
    with experiment_run(experiment, run_id=run_id):
        mlflow.log_artifact(str(path), artifact_path)
    log.info("%s: logged %s to MLflow run %s (%s/)", experiment, path, run_id, artifact_path)
