"""Helpers of the tests that start a real server process (mlflow models serve, mlflow ui) on 127.0.0.1."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil


# Ports a test server may take: outside the kernel's ephemeral range (an outgoing connection of any
# program can take a port from it between our check and the server's bind), below 49152 (kedro-viz
# refuses higher ones) and away from the ports tools default to (Ray 6379/8265/10001, kedro-viz 4141,
# MLflow 5000, Jupyter 8888, Ray's worker range from 10002) and from tests/ray_cluster.py's slots.
SERVER_PORTS = range(5001, 10000)
TAKEN_BY_DEFAULT = {6379, 8080, 8265, 8888}


def ephemeral_ports() -> range:
    """The kernel's range for ports it picks itself (bind to port 0, outgoing connections)."""
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        lo, hi = 49152, 65535  # the IANA range, macOS's default
    return range(lo, hi + 1)


def free_port(exclude: set[int] = frozenset()) -> int:
    """A random port of :data:`SERVER_PORTS` that is free now and not in ``exclude``."""
    eph = ephemeral_ports()
    candidates = [p for p in SERVER_PORTS if p not in eph and p not in TAKEN_BY_DEFAULT and p not in exclude]
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {SERVER_PORTS} outside the ephemeral range {eph}")


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports, as :func:`free_port`."""
    ports: list[int] = []
    for _ in range(n):
        ports.append(free_port(exclude=set(ports)))
    return ports


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
