"""The helper processes ``ingest.keep_workers`` keeps between the two conversions of a run stop when the run
ends (hooks/pools.py), and only those the run kept."""
from __future__ import annotations

import os

from urban_detection.hooks import WorkerPoolHooks
from urban_detection.waymo import executor, ingest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_kept_helpers_stop_when_the_run_ends_and_a_run_without_any_is_left_alone():
    WorkerPoolHooks().after_pipeline_run()  # nothing kept: nothing to do
    ingest.warm_pool(2)  # as ingest_files(..., keep_pool=True) leaves it: one helper, TensorFlow imported
    try:
        helpers = [p.pid for p in executor._POOL[1]._processes.values()]
        assert len(helpers) == 1 and _alive(helpers[0])
        WorkerPoolHooks().on_pipeline_error()  # a failed run stops them too
        assert executor._POOL is None and not _alive(helpers[0])
    finally:
        ingest.shutdown_pool()
