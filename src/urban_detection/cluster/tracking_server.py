"""The MLflow tracking server a cluster run starts on the driver, so that workers on any host log their runs.

``mlflow server`` on the project's store (the SQLite file): one server process with one worker
is the store's only writer, so experiments training at the same time never lock it, and the
driver logs through it as well. New experiments' artifacts go under ``artifact_root`` (the
project's ``mlruns``, on the shared storage; existing experiments keep theirs), and the server
serves artifacts too. It listens on ``host`` (127.0.0.1 by default: a cluster on this machine;
give an address the nodes reach for a cluster of several hosts) at ``port`` (a free one when
None). :meth:`TrackingServer.start` waits until it answers, and fails at once with its log when
it exits or does not answer in time; :meth:`TrackingServer.stop` ends its own process group only.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)
START_TIMEOUT = 180.0  # seconds; the server imports MLflow and checks the store's schema first


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _mlflow_cli() -> str:
    here = Path(sys.executable).with_name("mlflow")
    return str(here) if here.is_file() else (shutil.which("mlflow") or "mlflow")


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as e:
        return f"({e})"


class TrackingServer:
    """An ``mlflow server`` process on ``store_uri``."""

    def __init__(self, store_uri: str, artifact_root: str | Path, host: str = "127.0.0.1", port: int | None = None):
        self.store_uri, self.artifact_root = store_uri, str(artifact_root)
        self.host, self.port = host, port
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="urban_detection_mlflow_server_", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _command(self, port: int) -> list[str]:
        return [_mlflow_cli(), "server", "--backend-store-uri", self.store_uri,
                "--default-artifact-root", self.artifact_root, "--artifacts-destination", self.artifact_root,
                "--host", self.host, "--port", str(port), "--workers", "1"]

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def start(self, timeout: float = START_TIMEOUT) -> "TrackingServer":
        """Start it and wait until it answers; a chosen port taken meanwhile is tried again (3 times)."""
        given = self.port
        for attempt in range(1, 4):
            self.port = given or _free_port(self.host)
            with open(self.log_path, "wb") as out:
                self.proc = subprocess.Popen(self._command(self.port), stdout=out, stderr=subprocess.STDOUT,
                                             start_new_session=True, env={**os.environ, "MLFLOW_TRACKING_URI": ""})
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                if self.answers():
                    log.info("MLflow tracking server %s on %s (log %s)", self.url, self.store_uri, self.log_path)
                    return self
                time.sleep(0.5)
            exited = self.proc.poll()
            self.stop()
            text = _tail(self.log_path)
            if given is None and "in use" in text.lower() and attempt < 3:
                continue
            state = f"did not answer in {timeout:.0f} s" if exited is None else f"exited ({exited})"
            raise RuntimeError(f"the MLflow tracking server at {self.url} {state}; its log {self.log_path}:\n{text}")
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """SIGTERM its process group (the CLI and its web server), SIGKILL what is left after a grace."""
        proc = self.proc
        if proc is None:
            return
        for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:  # nothing left of it
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and (proc.poll() is None or _members(proc.pid)):
                time.sleep(0.2)
            if proc.poll() is not None and not _members(proc.pid):
                break
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("MLflow tracking server %d did not exit", proc.pid)


def _members(pgid: int) -> list:
    """Live (non-zombie) processes of the process group ``pgid``."""
    import psutil

    out = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (ProcessLookupError, psutil.Error):
            continue
    return out
