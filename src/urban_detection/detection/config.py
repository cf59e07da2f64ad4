"""Experiment configs: named overrides of a base, resolved and validated before training.

A resolved config is a plain dict (YAML-friendly)::

    name, parent, model{arch, image_size, weights}, optimizer{type, ..., schedule{...}},
    augmentations[{name, ...}], train{batch_size, steps, checkpoint_every, ...}

:data:`CONFIG_SCHEMA` lists every key a config may hold; any other key (a typo such as
``train.step``) is a :class:`ConfigError` naming its path and the nearest valid key.
"""
from __future__ import annotations

import copy
import re
from typing import Any, Iterator, Mapping, NamedTuple

from .optimizer_keys import OPTIMIZER_ALIASES, OPTIMIZER_KEYS, SCHEDULE_ALIASES, SCHEDULE_KEYS
from .suggest import did_you_mean

KNOWN_ARCHS = ("retinanet_resnet50_fpn_coco", "retinanet_resnet50_fpn", "retinanet_resnet18_fpn_small")
STRATEGIES = ("default", "mirrored", "multi_worker_mirrored")


class ConfigError(ValueError):
    """An experiment config that cannot be trained."""


NUMBER = (int, float)


class Leaf:
    """A key holding a value: its accepted types (``None`` for null), optionally ``positive``
    (ints >= 1) or one of ``choices`` (true/false pass when ``bool`` is a type)."""

    def __init__(self, *types, positive: bool = False, choices: tuple = ()):
        self.types = tuple(type(None) if t is None else t for t in types)
        self.positive = positive
        self.choices = tuple(choices)

    def problem(self, path: str, value: Any) -> str | None:
        """Why ``value`` does not fit (``None`` when it does)."""
        # true/false is no number here: a bool fits bool (or object), not int or float
        if not any(isinstance(value, t) and not (isinstance(value, bool) and t in NUMBER) for t in self.types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in self.types)
            return f"{path} must be {names}, got {value!r}"
        if self.positive and isinstance(value, int) and value < 1:
            return f"{path} must be a positive int, got {value!r}"
        if self.choices and value is not None and not isinstance(value, bool) and value not in self.choices:
            return f"unknown {path} {value!r} (known: {', '.join(self.choices)}){did_you_mean(value, self.choices)}"
        return None


# Every key an experiment config may hold: a dict is a section (only its keys are valid), a
# Leaf a value. When code starts reading a new key (training.py, detection/train.py,
# pipelines/evaluate/nodes.py), add it here. Keys of `optimizer` depend on its type
# (OPTIMIZER_KEYS, SCHEDULE_KEYS), `model.overrides` are checked against model.ARCHS[arch] and
# augmentation params by augment.spec.validate_augmentations.
CONFIG_SCHEMA: dict[str, Any] = {
    "name": Leaf(str),
    "parent": Leaf(str, None),  # an experiment to fine-tune from
    "model": {
        "arch": Leaf(str, choices=KNOWN_ARCHS),
        "image_size": Leaf(int),
        "weights": Leaf(str, None),
        "overrides": Leaf(Mapping, None),
    },
    "optimizer": Leaf(Mapping),
    "augmentations": Leaf(list, None),
    "train": {
        "batch_size": Leaf(int, positive=True),
        "steps": Leaf(int, positive=True),
        "checkpoint_every": Leaf(int, positive=True),
        "keep_checkpoints": Leaf(int, positive=True),
        "log_every": Leaf(int, positive=True),
        "val_batches": Leaf(int, None, positive=True),  # validation-loss batches per checkpoint
        "shuffle_buffer": Leaf(int),
        "seed": Leaf(int),
        "cache": Leaf(bool),
        "mixed_precision": Leaf(bool, str, choices=("float16", "bfloat16", "auto")),  # true = float16 (GPUs)
        "jit_compile": Leaf(bool),
        "strategy": Leaf(str, choices=STRATEGIES),
        "log_keras_model": Leaf(bool),
        "log_checkpoints": Leaf(bool),
        "best_metric": Leaf(str),  # one of best_metric.BEST_METRICS (checked by validate_config)
        "val_coco_frames": Leaf(int, None, positive=True),
        "focal_alpha": Leaf(*NUMBER),
        "focal_gamma": Leaf(*NUMBER),
        "smooth_l1_beta": Leaf(*NUMBER),
        "ema_decay": Leaf(*NUMBER, None),  # a moving average of the weights is judged and exported (detection.ema)
        "ema_ramp_steps": Leaf(*NUMBER),
    },
}
# Keys of the `train` parameters (conf/base/parameters_train.yml) around the configs.
# `ray_address`, `resources`, `workers` and `tracking_server` say where training runs
# (urban_detection.cluster), not what is trained: they are no part of a config.
TRAIN_PARAMS_KEYS = ("experiments", "groups", "settings", "base", "catalog", "ray_address", "resources", "workers",
                     "tracking_server")


class Problem(NamedTuple):
    """Something wrong at ``path`` of a config; ``unknown``: the key itself is not in the schema."""

    path: str
    message: str
    unknown: bool = False


def _all_paths(schema: Mapping, prefix: str = "") -> Iterator[str]:
    for key, spec in schema.items():
        yield prefix + key
        if isinstance(spec, Mapping):
            yield from _all_paths(spec, f"{prefix}{key}.")


def _unknown(path: str, key: str, valid, context: str = "", schema: Mapping | None = None) -> Problem:
    """An unknown key, with the same key in another section of ``schema`` (``train.image_size``
    -> ``model.image_size``), else the nearest valid key of its section, else the valid keys."""
    elsewhere = [p for p in _all_paths(CONFIG_SCHEMA if schema is None else schema) if p.rsplit(".", 1)[-1] == key]
    hint = (f"; did you mean `{elsewhere[0]}`?" if elsewhere
            else did_you_mean(key, valid, path[: -len(key)]) or f" (valid: {', '.join(sorted(valid))})")
    return Problem(path, f"unknown key `{path}`{context}{hint}", unknown=True)


def _section_problems(section: Mapping, schema: Mapping, prefix: str = "") -> Iterator[Problem]:
    for key, value in section.items():
        path = f"{prefix}{key}"
        spec = schema.get(key)
        if spec is None:
            yield _unknown(path, str(key), schema)
        elif isinstance(spec, Mapping):
            if not isinstance(value, Mapping):
                yield Problem(path, f"{path} must be a mapping of {', '.join(spec)}, got {value!r}")
            else:
                yield from _section_problems(value, spec, path + ".")
        elif (message := spec.problem(path, value)) is not None:
            yield Problem(path, message)


def _typed_keys(section: Mapping, keys_by_type: Mapping[str, tuple], aliases: Mapping[str, str],
                prefix: str, noun: str) -> Iterator[Problem]:
    kind = aliases.get(str(section.get("type", "")).lower())
    if kind is None:  # schedules.validate_optimizer_config names the valid types
        return
    for key in section:
        if key not in keys_by_type[kind]:
            yield _unknown(f"{prefix}{key}", str(key), keys_by_type[kind], context=f" for a {kind} {noun}")


def schema_problems(cfg: Mapping) -> list[Problem]:
    """A :class:`Problem` for every key of ``cfg`` that :data:`CONFIG_SCHEMA` does not know
    and every value of the wrong type; empty when the config fits the schema."""
    problems = list(_section_problems(cfg, CONFIG_SCHEMA))
    optimizer = cfg.get("optimizer")
    if isinstance(optimizer, Mapping):
        problems += _typed_keys(optimizer, OPTIMIZER_KEYS, OPTIMIZER_ALIASES, "optimizer.", "optimizer")
        if isinstance(optimizer.get("schedule"), Mapping):
            problems += _typed_keys(optimizer["schedule"], SCHEDULE_KEYS, SCHEDULE_ALIASES, "optimizer.schedule.",
                                    "schedule")
    model = cfg.get("model")
    if isinstance(model, Mapping) and isinstance(model.get("overrides"), Mapping) and model["overrides"]:
        from .model import ARCHS

        arch = ARCHS.get(model.get("arch"))
        if arch is None:  # an unknown arch is reported as such
            return problems
        problems += _section_problems(model["overrides"], {k: Leaf(object) for k in arch}, "model.overrides.")
        encoder = model["overrides"].get("encoder")
        if isinstance(encoder, Mapping):
            problems += _section_problems(encoder, {k: Leaf(object) for k in arch["encoder"]},
                                          "model.overrides.encoder.")
    return problems


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


def selected_names(train_params: Mapping) -> list[str]:
    """The experiment names ``train.experiments`` selects, in order, each once.

    It is a list (YAML) or a string as ``--params`` gives it: names joined by ``+``
    (``baseline+augs3``: Kedro splits ``--params`` on every comma), ``all`` (every experiment
    of ``train.catalog``) or a group of ``train.groups`` (``study``: the original six).
    """
    value = train_params.get("experiments")
    if value in (None, ""):
        return []
    items = re.split(r"[+,]", value.strip("[]")) if isinstance(value, str) else [str(v) for v in value]
    groups = train_params.get("groups") or {}
    names: list[str] = []
    for item in (s.strip() for s in items):
        if item == "all":
            expanded = [str(n) for n in train_params.get("catalog") or {}]
        else:
            expanded = [str(n) for n in groups[item]] if item in groups else [item]
        names += [n for n in expanded if n and n not in names]
    return names


def _has_path(d: Any, path: str) -> bool:
    for key in path.split("."):
        if not isinstance(d, Mapping) or key not in d:
            return False
        d = d[key]
    return True


def resolve_experiments(train_params: Mapping) -> dict[str, dict]:
    """Resolve and validate every experiment selected in ``train_params['experiments']``.

    ``train_params`` holds ``experiments`` (names), ``base`` (a full config),
    ``catalog`` (name -> overrides of base, optional ``parent``) and ``settings``
    (overrides applied last to every selected experiment, e.g. from ``--params``).
    Unknown keys anywhere (also in experiments not selected) are errors.
    Raises :class:`ConfigError` naming the experiment and the problem.
    """
    params = _plain(train_params)
    unknown_params = [key for key in params if key not in TRAIN_PARAMS_KEYS]
    if unknown_params:
        raise ConfigError("; ".join(
            f"unknown key `train.{k}`; did you mean `train.settings.{k}`?" if k in CONFIG_SCHEMA  # --params slip
            else _unknown(f"train.{k}", k, TRAIN_PARAMS_KEYS, schema={}).message for k in unknown_params))
    selected = selected_names(params)
    catalog = params.get("catalog") or {}
    unknown = [n for n in selected if n not in catalog]
    if unknown:
        raise ConfigError(f"unknown experiment(s) {unknown}; defined: {sorted(catalog)}")
    if not selected:
        raise ConfigError("train.experiments selects no experiment")
    base = params.get("base") or {}
    for name, overrides in catalog.items():  # a typo in an unselected experiment fails now too
        sources = {"train.base": base, f"train.catalog.{name}": overrides or {}}
        _raise_schema_problems(name, deep_merge(base, overrides or {}), sources)
    settings = params.get("settings") or {}
    resolved = {}
    for name in selected:
        cfg = deep_merge(deep_merge(base, catalog[name] or {}), settings)
        cfg["name"] = name
        cfg.setdefault("parent", None)
        optimizer, train = cfg.get("optimizer"), cfg.get("train")
        sched = optimizer.get("schedule") if isinstance(optimizer, Mapping) else None
        if (isinstance(sched, dict) and sched.get("type") == "cosine" and not sched.get("total_steps")
                and isinstance(train, Mapping)):
            sched["total_steps"] = train.get("steps")
        validate_config(cfg, catalog, sources={"train.base": base, f"train.catalog.{name}": catalog[name] or {},
                                               "train.settings": settings})
        resolved[name] = cfg
    return resolved


def _raise_schema_problems(name: str, cfg: Mapping, sources: Mapping[str, Mapping] | None,
                        only_unknown: bool = True) -> None:
    problems = schema_problems(cfg)
    if only_unknown:
        problems = [p for p in problems if p.unknown]
    if not problems:
        return
    messages = []
    for path, message, _ in problems:
        origin = [src for src, layer in (sources or {}).items() if _has_path(layer, path)]
        messages.append(f"{message} (set in {origin[-1]})" if origin else message)
    raise ConfigError(f"experiment {name!r}: " + "; ".join(messages))


def validate_config(cfg: Mapping, catalog: Mapping | None = None,
                    sources: Mapping[str, Mapping] | None = None) -> None:
    """Raise :class:`ConfigError` when the config cannot be trained.

    Unknown keys and values of the wrong type (see :data:`CONFIG_SCHEMA`) are errors naming
    the key path and the nearest valid key; ``sources`` (name -> the partial config it
    contributed, in merge order) lets the message say where a bad key was set.
    """
    from .augment.spec import validate_augmentations
    from .ema import check_ema
    from .schedules import validate_optimizer_config

    name = cfg.get("name", "?")

    def fail(msg: str):
        raise ConfigError(f"experiment {name!r}: {msg}")

    for section in ("model", "optimizer", "train"):
        if section not in cfg or cfg[section] is None:
            fail(f"missing section {section!r}")
        if not isinstance(cfg[section], Mapping):
            fail(f"{section} must be a mapping, got {cfg[section]!r}")
    _raise_schema_problems(name, cfg, sources, only_unknown=False)
    model, train = cfg["model"], cfg["train"]
    if model.get("arch") not in KNOWN_ARCHS:
        fail(f"unknown model.arch {model.get('arch')!r} (known: {', '.join(KNOWN_ARCHS)})")
    try:  # overrides the network cannot take (GroupNorm heads of a width 32 does not divide)
        from .model.archs import arch_config

        arch_config(model["arch"], **(model.get("overrides") or {}))
    except ValueError as exc:
        fail(f"model.overrides: {exc}")
    size = model.get("image_size")
    if not isinstance(size, int) or size < 64 or size % 32:
        fail(f"model.image_size must be an int >= 64 and a multiple of 32, got {size!r}")
    for key in ("batch_size", "steps", "checkpoint_every"):
        if not isinstance(train.get(key), int) or train[key] < 1:
            fail(f"train.{key} must be a positive int, got {train.get(key)!r}")
    _check_best_metric(train, fail)
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
    try:
        validate_augmentations(cfg.get("augmentations") or [])
    except ValueError as exc:  # names the path: augmentations[i].<param>
        fail(str(exc))
    try:
        check_ema(train.get("ema_decay"), train.get("ema_ramp_steps", 0))
    except ValueError as exc:
        fail(str(exc))


def _check_best_metric(train: Mapping, fail) -> None:
    """``train.best_metric`` must be a number training computes at checkpoints (its direction is known)."""
    from .best_metric import BEST_METRICS, unknown_metric_message

    name = train.get("best_metric")
    if name is not None and name not in BEST_METRICS:
        fail(unknown_metric_message(name))


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
