"""The MLflow UI opens on training runs: the page sets MLflow's stored workflow choice to model
training when the browser has none, through `kedro mlflow ui` on a real server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
from server_helpers import free_port, group_members, http, stop_server

from kedro_project import make_project
from urban_detection import mlflow_ui

START_DEADLINE = 150  # s, on a busy 2-core machine


def test_the_key_and_value_are_the_ones_mlflows_ui_reads():
    """If an MLflow upgrade renames the stored choice, this fails instead of the UI silently opening on GenAI."""
    bundle = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    text = "".join(p.read_text(errors="replace") for p in bundle.glob("main.*.js"))
    assert f'key:"{mlflow_ui.WORKFLOW_KEY}",version:{mlflow_ui.WORKFLOW_KEY_VERSION}' in text
    assert "`${e}_v${t}`" in text  # stored as <key>_v<version>
    assert f'MACHINE_LEARNING="{mlflow_ui.TRAINING}"' in text
    assert mlflow_ui.STORAGE_KEY == "mlflow.workflowType_v1"


def test_the_page_gets_the_default_once_and_first():
    page = "<!doctype html><html><head><script src=main.js></script></head><body></body></html>"
    out = mlflow_ui.with_training_default(page)
    assert out.index(mlflow_ui.SCRIPT) < out.index("main.js")
    assert mlflow_ui.with_training_default(out) == out
    assert 'localStorage.getItem("mlflow.workflowType_v1")===null' in mlflow_ui.SCRIPT  # a user's choice is kept
    assert json.dumps(json.dumps("machine_learning")) in mlflow_ui.SCRIPT


def test_kedro_mlflow_ui_serves_the_page_that_opens_on_training_runs(tmp_path):
    project = make_project(tmp_path / "project")
    help_text = subprocess.run([sys.executable, "-m", "kedro", "mlflow", "--help"], cwd=project, text=True,
                               capture_output=True, check=True).stdout
    assert "init" in help_text and "ui" in help_text  # kedro-mlflow's commands are still there
    port = free_port()
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log_path = tmp_path / "ui.log"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "kedro", "mlflow", "ui", "-p", str(port)], cwd=project,
                                env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = time.monotonic()
        while True:
            assert proc.poll() is None, f"the UI exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}"
            try:
                status, page = http(opener, f"{base}/", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() - started < START_DEADLINE, log_path.read_text()[-3000:]
            time.sleep(0.5)
        page = page.decode()
        assert mlflow_ui.SCRIPT in page and page.index(mlflow_ui.SCRIPT) < page.index("<script defer")
        status, body = http(opener, f"{base}/ajax-api/2.0/mlflow/experiments/search",
                            {"max_results": 10})
        assert status == 200 and "experiments" in json.loads(body), body[:500]
        assert (project / "mlflow.db").is_file()  # the project's SQLite store (mlflow.yml)
    finally:
        stop_server(proc)
    assert not group_members(proc.pid), "UI processes left running"
