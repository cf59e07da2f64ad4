"""Kedro hook: trained models' export and video logged into the MLflow run each model was trained in."""
from __future__ import annotations

import logging

from kedro.framework.hooks import hook_impl

log = logging.getLogger(__name__)


class ModelArtifactsHooks:
    """Once ``<experiment>.export`` or ``<experiment>.video`` is saved, log its files into the MLflow
    run the model was trained in (kedro-mlflow's artifact datasets log into the parent run only),
    and the export also as a servable MLflow model (``served_model``)."""

    def __init__(self):
        self._catalog = None
        self._log_export = True

    @hook_impl
    def after_context_created(self, context) -> None:
        evaluate = context.config_loader["parameters"].get("evaluate") or {}
        self._log_export = bool((evaluate.get("export") or {}).get("log_to_mlflow", True))

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
            run_id = dataset.info().get("run_id")
            self._log(experiment, dataset.path, "export", run_id)
            if run_id:  # the served model: images in, boxes / labels / scores out (urban_detection.serving)
                from urban_detection.serving import log_served_model

                uri = log_served_model(dataset.path, run_id, experiment)
                log.info("%s: served model logged as %s (runs:/%s/served_model)", experiment, uri, run_id)
        elif isinstance(dataset, VideoDataset):
            export = self._catalog.get(f"{experiment}.export")
            run_id = export.info().get("run_id") if isinstance(export, ExportDataset) else None
            self._log(experiment, dataset.path, "videos", run_id)

    @staticmethod
    def _log(experiment: str, path, artifact_path: str, run_id: str | None) -> None:
        import mlflow

        from urban_detection.tracking import experiment_run

        if not run_id:
            return
        with experiment_run(experiment, run_id=run_id):
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path)
            else:
                mlflow.log_artifact(str(path), artifact_path)
        log.info("%s: logged %s to MLflow run %s (%s/)", experiment, path, run_id, artifact_path)
