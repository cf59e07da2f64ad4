"""Kedro hook: a run that trains on Ray logs through an MLflow tracking server, stopped when the run ends."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from kedro.framework.hooks import hook_impl

from urban_detection.hooks.params import session_parameters

log = logging.getLogger(__name__)


def trains(pipeline) -> bool:
    """Whether the pipeline holds an experiment's training node (``<experiment>.train``)."""
    return any(n.name.endswith(".train") and n.namespace for n in pipeline.nodes)


class ClusterTrackingHooks:
    """With ``train.ray_address`` set and training in the run, experiments train off this process, so
    their runs cannot go to the project's SQLite file directly (other hosts do not reach it, and
    concurrent writers lock it). Before kedro-mlflow opens the kedro run, this process switches MLflow
    to a tracking server: ``$MLFLOW_TRACKING_URI`` when it names one (``http(s)://``), else an ``mlflow
    server`` started here on the project's store (:mod:`urban_detection.cluster.tracking_server`;
    ``train.tracking_server`` gives its host and port), which then is the store's one writer. When
    the run ends (or fails) the server this hook started is stopped, MLflow is switched back and the
    Ray connection the training made is released."""

    def __init__(self):
        self._train: dict = {}
        self._root: Path | None = None
        self._server = None
        self._saved_uri: str | None = None
        self._active = False

    @hook_impl
    def after_context_created(self, context) -> None:
        self._train = dict(session_parameters(context).get("train") or {})
        self._root = Path(context.project_path)

    @hook_impl(tryfirst=True)  # before kedro-mlflow opens the kedro run
    def before_pipeline_run(self, run_params: dict, pipeline) -> None:
        import mlflow

        from urban_detection.cluster.options import from_train_params
        from urban_detection.cluster.tracking_server import TrackingServer

        if not trains(pipeline) or not from_train_params(self._train).on_ray:
            return
        self._active, self._saved_uri = True, mlflow.get_tracking_uri()
        user = os.environ.get("MLFLOW_TRACKING_URI", "")
        if user.startswith(("http://", "https://")):
            uri = user
        else:
            where = self._train.get("tracking_server") or {}
            self._server = TrackingServer(self._saved_uri, (self._root or Path.cwd()) / "mlruns",
                                          host=where.get("host") or "127.0.0.1", port=where.get("port")).start()
            uri = self._server.url
        mlflow.set_tracking_uri(uri)
        log.info("training on Ray at %s; MLflow runs go through the tracking server %s",
                 self._train.get("ray_address"), uri)

    @hook_impl(trylast=True)  # after kedro-mlflow closed the kedro run
    def after_pipeline_run(self) -> None:
        self._finish()

    @hook_impl(trylast=True)
    def on_pipeline_error(self) -> None:
        self._finish()

    def _finish(self) -> None:
        import mlflow

        from urban_detection.cluster import connection

        if not self._active:
            return
        self._active = False
        try:
            connection.release()
        finally:
            if self._server is not None:
                self._server.stop()
                self._server = None
            mlflow.set_tracking_uri(self._saved_uri)
