"""The MLflow UI, opening on training runs.

MLflow 3.17's UI shows either its GenAI pages or its model-training pages. Which one is
kept per browser in ``localStorage["mlflow.workflowType_v1"]`` and defaults to GenAI, so a
fresh browser opens an experiment on a GenAI overview; the experiment's
``mlflow.experimentKind`` tag is not read. :func:`create_app` is MLflow's own server app
with one change: the UI page sets that key to ``"machine_learning"`` when the browser has
no choice yet (a choice made with the UI's "GenAI / Model training" switch is kept).

It is the MLflow server app ``urban-detection`` (entry point group ``mlflow.app``), used by
``kedro mlflow ui`` (:mod:`urban_detection.cli`), or directly::

    mlflow ui --app-name urban-detection --backend-store-uri sqlite:///mlflow.db
"""
from __future__ import annotations

import json

APP_NAME = "urban-detection"
WORKFLOW_KEY, WORKFLOW_KEY_VERSION = "mlflow.workflowType", 1  # MLflow's useLocalStorage key and version
TRAINING = "machine_learning"
STORAGE_KEY = f"{WORKFLOW_KEY}_v{WORKFLOW_KEY_VERSION}"  # how MLflow's UI names the stored key
SCRIPT = ("<script>try{if(localStorage.getItem(%s)===null){localStorage.setItem(%s,%s)}}catch(e){}</script>"
          % (json.dumps(STORAGE_KEY), json.dumps(STORAGE_KEY), json.dumps(json.dumps(TRAINING))))


def with_training_default(html: str) -> str:
    """The UI page with :data:`SCRIPT` first in its ``<head>`` (before MLflow's own scripts run)."""
    if SCRIPT in html:
        return html
    head = html.find("<head>")
    if head < 0:
        return SCRIPT + html
    return html[: head + len("<head>")] + SCRIPT + html[head + len("<head>"):]


def create_app():
    """MLflow's tracking server app whose UI page opens on training runs (an ``mlflow.app`` factory)."""
    from flask import request
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app

    if not getattr(app, "_urban_detection_ui", False):
        @app.after_request
        def _training_runs_first(response):
            if request.endpoint == "serve" and response.status_code == 200 and response.mimetype == "text/html":
                response.direct_passthrough = False
                response.set_data(with_training_default(response.get_data(as_text=True)))
                response.headers.pop("ETag", None)
                response.headers["Cache-Control"] = "no-cache"
            return response

        app._urban_detection_ui = True
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app
