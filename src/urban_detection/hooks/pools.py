"""Kedro hook: the worker processes a run kept for its nodes stop when the run ends.

``ingest.keep_workers`` keeps the conversion's local helper processes up from the ingest to the
evaluation frames' conversion, so that they import TensorFlow once per run, not once per node
(``keep_pool`` of :func:`urban_detection.waymo.executor.run_tasks`). They stop here, whether the run
succeeded or failed.
"""
from __future__ import annotations

from kedro.framework.hooks import hook_impl


class WorkerPoolHooks:
    """Stops what the run's nodes kept (``executor.shutdown_pool``: helpers, or an embedded Ray; none: nothing)."""

    @hook_impl
    def after_pipeline_run(self) -> None:
        _stop()

    @hook_impl
    def on_pipeline_error(self) -> None:
        _stop()


def _stop() -> None:
    from urban_detection.waymo import executor  # no TensorFlow: only what keep_pool started is stopped

    executor.shutdown_pool()
