"""The session's parameters, read once for all the hooks that need them."""
from __future__ import annotations

from typing import Any

_read: tuple[Any, dict] | None = None  # (config loader, its parameters): the latest session's


def session_parameters(context) -> dict:
    """``context.config_loader["parameters"]`` (conf envs and ``--params``), read once per config loader:
    each read parses and merges every parameters file again (about 0.25 s)."""
    global _read
    loader = context.config_loader
    if _read is None or _read[0] is not loader:
        _read = (loader, loader["parameters"])
    return _read[1]
