"""Helpers of the tests that start a real server process (mlflow models serve, mlflow ui) on 127.0.0.1."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of the process group ``pgid``."""
    out = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (the mlflow CLI and its uvicorn child), SIGKILL what is
    left after a bounded wait, and reap the CLI process."""
    pgid = proc.pid  # started with start_new_session: its own process group
    for sig, seconds in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:  # nothing left in the group
            break
        deadline = time.monotonic() + seconds
        while (proc.poll() is None or group_members(pgid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        if proc.poll() is not None and not group_members(pgid):
            break
    proc.wait(timeout=10)


def http(opener, url: str, body: dict | None = None, timeout: float = 60) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
