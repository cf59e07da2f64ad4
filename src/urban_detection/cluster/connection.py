"""One Ray connection per process, shared by the experiment nodes a threaded Kedro runner runs at once.

:func:`ray_at` connects on first use (``local`` starts Ray embedded on this machine's cores, as
ingest does; any other address joins that cluster) and later calls reuse the connection, whichever
thread makes them. :func:`release` ends what :func:`ray_at` started, once the run is over; a
connection the caller made (``ray.init`` before the run) is left alone.
"""
from __future__ import annotations

import os
import threading

from urban_detection.waymo import executor

_LOCK = threading.Lock()
_STARTED = {"here": False}  # this module connected (and so disconnects)


def ray_at(address: str):
    """The ``ray`` module, connected to ``address`` (``local``, ``auto`` or a cluster address)."""
    with _LOCK:
        ray, connected_here = executor.connect_ray(address, os.cpu_count() or 1)
        _STARTED["here"] = _STARTED["here"] or connected_here
        return ray


def release() -> None:
    """Disconnect, or stop embedded Ray, when :func:`ray_at` connected."""
    with _LOCK:
        if _STARTED["here"]:
            executor.disconnect_ray()
            _STARTED["here"] = False
