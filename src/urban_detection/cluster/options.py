"""Where an experiment trains: ``train.ray_address``, ``train.resources`` and ``train.workers``, checked.

``ray_address`` is as for ingest: ``null`` trains in the Kedro process (the default, unchanged),
``local`` on Ray embedded here, ``auto`` on the cluster of this node, or a cluster address
(``head:6379``, ``ray://head:10001``). ``resources`` is what each Ray job (or each worker of a
multi-worker job) asks for: ``num_cpus``, ``num_gpus``, ``memory`` (bytes) and custom
``resources``. ``workers`` > 1 trains one experiment with ``MultiWorkerMirroredStrategy`` on that
many Ray workers, so it needs a Ray address.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "resources")
DEFAULT_RESOURCES = {"num_cpus": 1}


class LaunchError(ValueError):
    """A bad ``train.ray_address`` / ``train.resources`` / ``train.workers``."""


@dataclass(frozen=True)
class LaunchOptions:
    """How the selected experiments are launched (the same for each)."""

    ray_address: str | None = None
    resources: dict = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    workers: int = 1

    @property
    def on_ray(self) -> bool:
        return self.ray_address is not None

    def task_options(self) -> dict:
        """``ray.remote`` options of one experiment's task."""
        return {k: v for k, v in self.resources.items() if v is not None}

    def worker_resources(self) -> dict:
        """``ScalingConfig.resources_per_worker`` of a multi-worker job (Ray's resource names)."""
        out = {"CPU": float(self.resources.get("num_cpus") or 1), **(self.resources.get("resources") or {})}
        if self.resources.get("num_gpus"):
            out["GPU"] = float(self.resources["num_gpus"])
        if self.resources.get("memory"):
            out["memory"] = float(self.resources["memory"])
        return out


def _number(key: str, value, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (integer and value != int(value)):
        kind = "a whole number" if integer else "a number"
        raise LaunchError(f"train.resources.{key} must be {kind} >= 0, got {value!r}")
    return int(value) if integer else value


def launch_options(ray_address=None, resources: Mapping | None = None, workers=1) -> LaunchOptions:
    """The checked options; a clear :class:`LaunchError` for an unknown resource, a bad number, or
    ``workers`` > 1 without a Ray address."""
    resources = dict(DEFAULT_RESOURCES if resources is None else resources)
    unknown = sorted(set(resources) - set(RESOURCE_KEYS))
    if unknown:
        raise LaunchError(f"unknown key(s) {unknown} in train.resources; use {', '.join(RESOURCE_KEYS)}")
    for key in ("num_cpus", "num_gpus", "memory"):
        if resources.get(key) is not None:
            resources[key] = _number(key, resources[key], integer=key == "memory")
    custom = resources.get("resources") or {}
    if not isinstance(custom, Mapping):
        raise LaunchError(f"train.resources.resources must be a mapping of custom Ray resources, got {custom!r}")
    resources["resources"] = {str(k): _number(f"resources.{k}", v) for k, v in custom.items()} or None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise LaunchError(f"train.workers must be a whole number >= 1, got {workers!r}")
    if ray_address is not None and (not isinstance(ray_address, str) or not ray_address.strip()):
        raise LaunchError(f"train.ray_address must be null, 'local', 'auto' or a Ray address, got {ray_address!r}")
    if workers > 1 and ray_address is None:
        raise LaunchError(f"train.workers={workers} trains on {workers} Ray workers and needs a Ray cluster: "
                          "set train.ray_address too (local, auto or the cluster's address)")
    return LaunchOptions(ray_address.strip() if ray_address else None, resources, workers)


def from_train_params(train_params: Mapping) -> LaunchOptions:
    """:func:`launch_options` of the ``train`` parameters."""
    return launch_options(train_params.get("ray_address"), train_params.get("resources"),
                          train_params.get("workers", 1))
