"""Experiment configs: named overrides of a base, resolved and validated before training.

A resolved config is a plain dict (YAML-friendly)::

    name, parent, model{arch, image_size, weights}, optimizer{type, ..., schedule{...}},
    augmentations[{name, ...}], train{batch_size, steps, checkpoint_every, ...}
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

KNOWN_ARCHS = ("retinanet_resnet50_fpn", "retinanet_resnet18_fpn_small")
STRATEGIES = ("default", "mirrored", "multi_worker_mirrored")


class ConfigError(ValueError):
    """An experiment config that cannot be trained."""


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """Recursively merge ``override`` into a copy of ``base``; lists and scalars replace.

    A mapping whose ``type`` differs from the base's (e.g. an ``adam`` optimizer over a
    ``momentum`` one) replaces it whole: keys of another type do not carry over.
    """
    out = copy.deepcopy(dict(base))
    for key, value in (override or {}).items():
        if (isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
                and value.get("type", out[key].get("type")) == out[key].get("type")):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _plain(obj: Any) -> Any:
    """OmegaConf/Kedro containers to plain dicts and lists."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def name_list(value: Any) -> list[str] | None:
    """Experiment names from a parameter: a list, or the string ``"[a,b]"`` / ``"a,b"`` that a
    command-line ``--params`` may give. ``None``, ``""`` and ``"all"`` give ``None`` (no filter)."""
    if value in (None, "", "all"):
        return None
    if isinstance(value, str):
        return [s.strip() for s in value.strip("[]").split(",") if s.strip()]
    return [str(v) for v in value]


def resolve_experiments(train_params: Mapping) -> dict[str, dict]:
    """Resolve and validate every experiment selected in ``train_params['experiments']``.

    ``train_params`` holds ``experiments`` (names), ``base`` (a full config),
    ``catalog`` (name -> overrides of base, optional ``parent``) and ``settings``
    (overrides applied last to every selected experiment, e.g. from ``--params``).
    Raises :class:`ConfigError` naming the experiment and the problem.
    """
    params = _plain(train_params)
    selected = name_list(params.get("experiments")) or []
    catalog = params.get("catalog") or {}
    unknown = [n for n in selected if n not in catalog]
    if unknown:
        raise ConfigError(f"unknown experiment(s) {unknown}; defined: {sorted(catalog)}")
    if not selected:
        raise ConfigError("train.experiments selects no experiment")
    resolved = {}
    for name in selected:
        cfg = deep_merge(params["base"], catalog[name] or {})
        cfg = deep_merge(cfg, params.get("settings") or {})
        cfg["name"] = name
        cfg.setdefault("parent", None)
        sched = cfg["optimizer"].get("schedule", {})
        if sched.get("type") == "cosine" and not sched.get("total_steps"):
            sched["total_steps"] = cfg["train"]["steps"]
        validate_config(cfg, catalog)
        resolved[name] = cfg
    return resolved


def validate_config(cfg: Mapping, catalog: Mapping | None = None) -> None:
    """Raise :class:`ConfigError` when the config cannot be trained."""
    from .augment import validate_augmentations
    from .schedules import validate_optimizer_config

    name = cfg.get("name", "?")

    def fail(msg: str):
        raise ConfigError(f"experiment {name!r}: {msg}")

    for section in ("model", "optimizer", "train"):
        if not isinstance(cfg.get(section), Mapping):
            fail(f"missing section {section!r}")
    model, train = cfg["model"], cfg["train"]
    if model.get("arch") not in KNOWN_ARCHS:
        fail(f"unknown model.arch {model.get('arch')!r} (known: {', '.join(KNOWN_ARCHS)})")
    size = model.get("image_size")
    if not isinstance(size, int) or size < 64 or size % 32:
        fail(f"model.image_size must be an int >= 64 and a multiple of 32, got {size!r}")
    for key in ("batch_size", "steps", "checkpoint_every"):
        if not isinstance(train.get(key), int) or train[key] < 1:
            fail(f"train.{key} must be a positive int, got {train.get(key)!r}")
    if train.get("strategy", "default") not in STRATEGIES:
        fail(f"train.strategy must be one of {STRATEGIES}, got {train.get('strategy')!r}")
    parent = cfg.get("parent")
    if parent is not None:
        if catalog is not None and parent not in catalog:
            fail(f"parent experiment {parent!r} is not defined (defined: {sorted(catalog)})")
        if parent == name:
            fail("an experiment cannot fine-tune from itself")
    try:
        validate_optimizer_config(cfg["optimizer"])
    except ValueError as exc:
        fail(f"optimizer: {exc}")
    augs = cfg.get("augmentations") or []
    if not isinstance(augs, list):
        fail("augmentations must be a list of {name: ..., params...}")
    try:
        validate_augmentations(augs)
    except ValueError as exc:
        fail(f"augmentations: {exc}")


def experiment_order(configs: Mapping[str, Mapping]) -> list[str]:
    """Names ordered so that every parent comes before its children."""
    order: list[str] = []

    def visit(n: str, stack: tuple = ()):
        if n in order or n not in configs:
            return
        if n in stack:
            raise ConfigError(f"fine-tuning cycle: {' -> '.join(stack + (n,))}")
        parent = configs[n].get("parent")
        if parent:
            visit(parent, stack + (n,))
        order.append(n)

    for n in configs:
        visit(n)
    return order


def flatten(d: Mapping, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Flatten nested dicts (lists become their string form) for MLflow params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key, sep))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out
