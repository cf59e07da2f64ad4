"""The MLflow UI opens on training runs: the page sets MLflow's stored workflow choice to model
training when the browser has none, through `kedro mlflow ui` on a real server (and in a real
headless Chromium when one is installed)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
import psutil
import pytest
from server_helpers import free_port, group_members, http, stop_server

from kedro_project import make_project
from urban_detection import mlflow_ui

START_DEADLINE = 150  # s, on a busy 2-core machine
PORT_TRIES = 3  # a free port can be taken by another process before the server binds it
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p and Path(p).is_file()), None)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-proxy-server"]
BROWSER_TIMEOUT = 60_000  # ms per step, on a busy 2-core machine
RUN_NAME = "fast_cpu 1a2b3c4d 2025-01-01 12:00:00"
LOSSES = [2.5, 1.75, 1.25, 0.9375]


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


def _listens(pgid: int, port: int) -> bool:
    """Whether a process of the group ``pgid`` (the server we started, not another one) listens on ``port``."""
    ours = {p.pid for p in group_members(pgid)}
    return any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid in ours
               for c in psutil.net_connections("tcp"))


@contextlib.contextmanager
def kedro_mlflow_ui(project: Path, log_path: Path):
    """``kedro mlflow ui`` of ``project`` on 127.0.0.1: its base URL and an opener, once it serves the UI page.

    On a free port, tried again on another one if the port was taken before the server bound it;
    fails with the server's log when it exits or is not up within :data:`START_DEADLINE`. Stops the
    server's whole process group at the end, and checks that nothing of it is left."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    started = time.monotonic()
    for attempt in range(PORT_TRIES):
        port = free_port()
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "kedro", "mlflow", "ui", "-h", "127.0.0.1", "-p", str(port)],
                                    cwd=project, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            while proc.poll() is None:
                assert time.monotonic() - started < START_DEADLINE, f"the UI is not up:\n{log_path.read_text()[-3000:]}"
                with contextlib.suppress(OSError):
                    if _listens(proc.pid, port) and http(opener, f"http://127.0.0.1:{port}/", timeout=5)[0] == 200:
                        break
                time.sleep(0.5)
            else:
                log = log_path.read_text()
                if "Address already in use" in log and attempt + 1 < PORT_TRIES:
                    continue
                raise AssertionError(f"the UI exited ({proc.returncode}):\n{log[-3000:]}")
            yield f"http://127.0.0.1:{port}", opener
            return
        finally:
            stop_server(proc)
            assert not group_members(proc.pid), "UI processes left running"


def test_kedro_mlflow_ui_serves_the_page_that_opens_on_training_runs(tmp_path):
    project = make_project(tmp_path / "project")
    help_text = subprocess.run([sys.executable, "-m", "kedro", "mlflow", "--help"], cwd=project, text=True,
                               capture_output=True, check=True).stdout
    assert "init" in help_text and "ui" in help_text  # kedro-mlflow's commands are still there
    with kedro_mlflow_ui(project, tmp_path / "ui.log") as (base, opener):
        page = http(opener, f"{base}/", timeout=60)[1].decode()
        assert mlflow_ui.SCRIPT in page and page.index(mlflow_ui.SCRIPT) < page.index("<script defer")
        status, body = http(opener, f"{base}/ajax-api/2.0/mlflow/experiments/search",
                            {"max_results": 10})
        assert status == 200 and "experiments" in json.loads(body), body[:500]
        assert (project / "mlflow.db").is_file()  # the project's SQLite store (mlflow.yml)


def _log_a_training_run(store: str) -> None:
    """A finished run like the project's training runs (name, tags, params, per-step loss) in ``store``."""
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient(tracking_uri=store)
    experiment = client.create_experiment("urban_detection", tags={"mlflow.experimentKind": "custom_model_development"})
    run = client.create_run(experiment, run_name=RUN_NAME, tags={"experiment": "fast_cpu", "fingerprint": "1a2b3c4d"})
    now = int(time.time() * 1000)
    client.log_batch(run.info.run_id,
                     metrics=[Metric("train/loss/total", v, now, step) for step, v in enumerate(LOSSES)],
                     params=[Param("optimizer.schedule.base_lr", "0.01"), Param("train.steps", str(len(LOSSES)))])
    client.set_terminated(run.info.run_id)


def _processes_of_this_test() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@contextlib.contextmanager
def chromium_page(sync_api, base: str, tmp_path: Path, log_path: Path):
    """A page of a headless Chromium with an empty profile that reaches nothing but ``base``.

    On a failure, the page's screenshot and the UI's log are printed; at the end, checks that no
    browser process is left."""
    before = _processes_of_this_test()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="profile-", dir=tmp_path), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True)
        page = browser.new_page()
        try:
            browser.route(re.compile(rf"^(?!{re.escape(base)}/)"), lambda route: route.abort())
            page.set_default_timeout(BROWSER_TIMEOUT)
            sync_api.expect.set_options(timeout=BROWSER_TIMEOUT)
            page.add_locator_handler(page.get_by_role("button", name="Got it"), lambda button: button.click())  # tours
            yield page
        except Exception:
            with contextlib.suppress(Exception):
                page.screenshot(path=tmp_path / "page.png")
            print(f"page {page.url}, screenshot {tmp_path / 'page.png'}\nUI log:\n{log_path.read_text()[-3000:]}")
            raise
        finally:
            browser.close()
    deadline = time.monotonic() + 30
    while (left := _processes_of_this_test() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, "browser processes left running"


def _stored_choice(page) -> str | None:
    return page.evaluate(f"localStorage.getItem({json.dumps(mlflow_ui.STORAGE_KEY)})")


def test_a_fresh_browser_opens_the_training_runs_and_keeps_the_users_choice(tmp_path):
    """In Chromium with an empty profile: the experiment opens on its runs table (not the GenAI
    overview), and the sidebar's "GenAI / Model training" switch works and is kept over page loads."""
    if CHROMIUM is None:
        pytest.skip("no Chromium (/usr/bin/chromium, Debian package `chromium`)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright (pip install playwright)")
    expect = sync_api.expect
    project = make_project(tmp_path / "project")
    _log_a_training_run(f"sqlite:///{project}/mlflow.db")
    log_path = tmp_path / "ui.log"
    runs, genai = re.compile(r"/experiments/\d+/runs\b"), re.compile(r"/experiments/\d+/overview\b")
    with kedro_mlflow_ui(project, log_path) as (base, _), chromium_page(sync_api, base, tmp_path, log_path) as page:
        def open_the_experiment():
            page.goto(f"{base}/")
            page.get_by_role("link", name="urban_detection", exact=True).click()

        open_the_experiment()
        expect(page).to_have_url(runs)
        page.get_by_text(RUN_NAME, exact=True).click()
        expect(page.get_by_text("train/loss/total", exact=True).first).to_be_visible()
        expect(page.get_by_text(str(LOSSES[-1]), exact=True).first).to_be_visible()
        assert _stored_choice(page) == '"machine_learning"'

        page.get_by_text("GenAI", exact=True).click()
        expect(page).to_have_url(genai)
        open_the_experiment()  # a new page load: the user's choice is kept
        expect(page).to_have_url(genai)
        assert _stored_choice(page) == '"genai"'

        page.get_by_text("Model training", exact=True).click()
        expect(page).to_have_url(runs)
        page.reload()
        expect(page).to_have_url(runs)
        expect(page.get_by_text(RUN_NAME, exact=True)).to_be_visible()
