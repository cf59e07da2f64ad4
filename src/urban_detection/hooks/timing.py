"""Kedro hook: where a run's time went. Each node's wall time goes to the log when the run ends
(slowest first, with its share of the run) and to the run's MLflow run as ``time/<node>`` (seconds).

A node's time runs from its start to the end of the last save of its outputs: a node whose output
is a folder it fills (:class:`~urban_detection.datasets.folders.FolderWrite`) does its work in that save."""
from __future__ import annotations

import logging
import re
import threading
import time

from kedro.framework.hooks import hook_impl

log = logging.getLogger(__name__)
SHOWN = 12  # nodes listed in the log; the rest are summed in one line


def metric_key(node_name: str) -> str:
    """``time/<node>`` with the characters MLflow refuses in a key replaced."""
    return "time/" + re.sub(r"[^\w./ -]", "_", node_name)


def time_table(seconds: dict[str, float], wall: float, shown: int = SHOWN) -> list[str]:
    """Lines of the summary: the ``shown`` slowest nodes with seconds and share of ``wall``, then the rest."""
    ranked = sorted(seconds.items(), key=lambda kv: -kv[1])
    width = max([len(n) for n, _ in ranked[:shown]] + [10])
    lines = [f"{name:<{width}} {s:8.1f} s {100 * s / wall:5.1f}%" for name, s in ranked[:shown]]
    rest = ranked[shown:]
    if rest:
        s = sum(v for _, v in rest)
        lines.append(f"{f'{len(rest)} other nodes':<{width}} {s:8.1f} s {100 * s / wall:5.1f}%")
    lines.append(f"{'run (wall)':<{width}} {wall:8.1f} s")
    return lines


class NodeTimingHooks:
    """Wall seconds of every node of the run (concurrent runners included)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._start: dict[str, float] = {}
        self._seconds: dict[str, float] = {}
        self._run_start = 0.0

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._start, self._seconds, self._run_start = {}, {}, time.perf_counter()

    @hook_impl
    def before_node_run(self, node) -> None:
        with self._lock:
            self._start[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node) -> None:
        self._until_now(node)

    @hook_impl
    def after_dataset_saved(self, node) -> None:
        self._until_now(node)

    def _until_now(self, node) -> None:
        with self._lock:
            start = self._start.get(node.name)
            if start is not None:
                self._seconds[node.name] = time.perf_counter() - start

    @hook_impl(tryfirst=True)  # before kedro-mlflow's, which ends the run's MLflow run
    def after_pipeline_run(self) -> None:
        if not self._seconds:
            return
        wall = time.perf_counter() - self._run_start
        log.info("where the time went:\n%s", "\n".join(time_table(self._seconds, wall)))
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.log_metrics({metric_key(n): s for n, s in self._seconds.items()} | {"time/run": wall})
