"""Learning-rate schedules of the Object Detection API and an optimizer factory.

``CosineDecayWithWarmup`` is the OD API's ``cosine_decay_with_warmup`` (linear
warm-up from ``warmup_lr`` to ``base_lr`` over ``warmup_steps``, then a cosine
down to 0 at ``total_steps``, 0 afterwards). ``ManualStepSchedule`` is its
``manual_stepping`` (``initial_lr`` until the first boundary, then each listed
rate from its step on).

Optimizer configs are plain dicts (what ``parameters_train.yml`` holds)::

    {"type": "momentum", "momentum": 0.9,
     "schedule": {"type": "cosine", "base_lr": 0.04, "total_steps": 25000,
                  "warmup_lr": 0.013333, "warmup_steps": 2000}}
    {"type": "adam",
     "schedule": {"type": "manual_step", "initial_lr": 0.001,
                  "steps": [[700, 1.0e-4], [1400, 1.0e-5]]}}
    {"type": "sgd", "learning_rate": 0.01}

``schedule`` may also be ``{"type": "constant", "learning_rate": x}``; a bare
``learning_rate`` is the same. Optional keys: ``clipnorm``, ``global_clipnorm``,
``weight_decay``; ``nesterov`` (momentum/sgd); ``beta_1``, ``beta_2``, ``epsilon``
(adam).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from .optimizer_keys import OPTIMIZER_ALIASES, OPTIMIZER_KEYS, SCHEDULE_ALIASES, SCHEDULE_REQUIRED_OPTIONAL
import tensorflow as tf

_PACKAGE = "urban_detection"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CosineDecayWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``warmup_lr`` to ``base_lr``, then cosine decay to 0 at ``total_steps``.

    ``hold_base_rate_steps`` keeps ``base_lr`` that many steps after the warm-up before the cosine
    starts (the OD API's key); ``decay_fraction`` sets them from the share of ``total_steps`` the cosine
    takes (0.425: the last 42.5%), so the schedule keeps its shape when ``train.steps`` changes.
    """

    def __init__(self, base_lr: float, total_steps: int, warmup_lr: float = 0.0, warmup_steps: int = 0,
                 hold_base_rate_steps: int = 0, decay_fraction: float | None = None):
        _check_schedule_numbers(base_lr=base_lr, total_steps=total_steps, warmup_lr=warmup_lr,
                                warmup_steps=warmup_steps, hold_base_rate_steps=hold_base_rate_steps)
        if decay_fraction is not None:
            hold_base_rate_steps = _hold_for_decay_fraction(decay_fraction, total_steps, warmup_steps,
                                                            hold_base_rate_steps)
        if warmup_steps + hold_base_rate_steps > total_steps:
            raise ValueError(f"total_steps ({total_steps}) must be >= warmup_steps + hold_base_rate_steps "
                             f"({warmup_steps} + {hold_base_rate_steps})")
        if warmup_steps > 0 and warmup_lr > base_lr:
            raise ValueError(f"warmup_lr ({warmup_lr}) must not exceed base_lr ({base_lr})")
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.warmup_lr = float(warmup_lr)
        self.warmup_steps = int(warmup_steps)
        self.hold_base_rate_steps = int(hold_base_rate_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        decay_steps = max(self.total_steps - self.warmup_steps - self.hold_base_rate_steps, 1)
        progress = (step - self.warmup_steps - self.hold_base_rate_steps) / float(decay_steps)
        lr = 0.5 * self.base_lr * (1.0 + tf.cos(math.pi * tf.clip_by_value(progress, 0.0, 1.0)))
        if self.hold_base_rate_steps > 0:
            lr = tf.where(step > self.warmup_steps + self.hold_base_rate_steps, lr, self.base_lr)
        if self.warmup_steps > 0:
            slope = (self.base_lr - self.warmup_lr) / self.warmup_steps
            lr = tf.where(step < self.warmup_steps, self.warmup_lr + slope * step, lr)
        return tf.where(step > self.total_steps, 0.0, lr)

    def get_config(self):
        return {"base_lr": self.base_lr, "total_steps": self.total_steps, "warmup_lr": self.warmup_lr,
                "warmup_steps": self.warmup_steps, "hold_base_rate_steps": self.hold_base_rate_steps}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ManualStepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-constant rate: ``initial_lr`` before the first step, then each ``(step, lr)`` from that step on.

    ``steps_and_lrs`` is a list of ``(step, lr)`` pairs or ``{"step": s,
    "learning_rate": lr}`` dicts (the OD API's ``schedule`` blocks) with strictly
    increasing positive steps. With ``warmup=True`` the rate ramps linearly from
    ``initial_lr`` to the first listed rate over the first interval (OD API).
    """

    def __init__(self, initial_lr: float, steps_and_lrs: Sequence, warmup: bool = False):
        pairs = _parse_steps_and_lrs(steps_and_lrs)
        _check_schedule_numbers(initial_lr=initial_lr)
        if warmup and not pairs:
            raise ValueError("warmup=True needs at least one (step, lr) pair")
        self.initial_lr = float(initial_lr)
        self.steps_and_lrs = pairs
        self.warmup = bool(warmup)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(self.initial_lr, tf.float32)
        for boundary, rate in self.steps_and_lrs:
            lr = tf.where(step >= boundary, tf.constant(rate, tf.float32), lr)
        if self.warmup:
            first_step, first_rate = self.steps_and_lrs[0]
            ramp = self.initial_lr + (first_rate - self.initial_lr) * step / first_step
            lr = tf.where(step < first_step, ramp, lr)
        return lr

    def get_config(self):
        return {"initial_lr": self.initial_lr, "steps_and_lrs": [list(p) for p in self.steps_and_lrs],
                "warmup": self.warmup}


def _hold_for_decay_fraction(decay_fraction, total_steps, warmup_steps, hold_base_rate_steps) -> int:
    """The steps held at ``base_lr`` after the warm-up so that the cosine takes the last ``decay_fraction``
    of ``total_steps`` (a warm-up, stable, decay schedule whose shape follows ``train.steps``)."""
    if isinstance(decay_fraction, bool) or not isinstance(decay_fraction, (int, float)) \
            or not 0.0 < decay_fraction <= 1.0:
        raise ValueError(f"decay_fraction must be in (0, 1], got {decay_fraction!r}")
    if hold_base_rate_steps:
        raise ValueError("give hold_base_rate_steps or decay_fraction, not both")
    return max(int(total_steps) - int(warmup_steps) - round(decay_fraction * total_steps), 0)


def _check_schedule_numbers(**values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if name == "total_steps" and value <= 0:
            raise ValueError(f"total_steps must be > 0, got {value!r}")


def _parse_steps_and_lrs(steps_and_lrs) -> list[tuple[int, float]]:
    if isinstance(steps_and_lrs, (str, bytes)) or not isinstance(steps_and_lrs, Sequence):
        raise ValueError(f"steps must be a list of [step, lr] pairs, got {steps_and_lrs!r}")
    pairs = []
    for item in steps_and_lrs:
        if isinstance(item, Mapping):
            if set(item) != {"step", "learning_rate"}:
                raise ValueError(f"schedule entry {dict(item)!r} must have exactly the keys step and learning_rate")
            step, rate = item["step"], item["learning_rate"]
        elif isinstance(item, Sequence) and not isinstance(item, (str, bytes)) and len(item) == 2:
            step, rate = item
        else:
            raise ValueError(f"schedule entry {item!r} must be a [step, lr] pair or a {{step, learning_rate}} dict")
        if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
            raise ValueError(f"schedule step must be a positive integer, got {step!r}")
        _check_schedule_numbers(learning_rate=rate)
        if pairs and step <= pairs[-1][0]:
            raise ValueError(f"schedule steps must increase strictly, got {step} after {pairs[-1][0]}")
        pairs.append((int(step), float(rate)))
    return pairs


def validate_optimizer_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check an optimizer config without building anything; returns it normalised.

    Raises ``ValueError`` naming the offending key for unknown types, unknown or
    missing keys and out-of-range numbers (also builds the schedule object,
    which validates its numbers, but no optimizer or variable).
    """
    if not isinstance(cfg, Mapping):
        raise ValueError(f"optimizer config must be a mapping, got {type(cfg).__name__}")
    cfg = dict(cfg)
    kind = OPTIMIZER_ALIASES.get(str(cfg.get("type", "")).lower())
    if kind is None:
        raise ValueError(f"optimizer type must be one of {sorted(set(OPTIMIZER_ALIASES))}, got {cfg.get('type')!r}")
    cfg["type"] = kind
    unknown = set(cfg) - set(OPTIMIZER_KEYS[kind])
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} for a {kind} optimizer; allowed: "
                         f"{sorted(OPTIMIZER_KEYS[kind])}")
    if ("schedule" in cfg) == ("learning_rate" in cfg):
        raise ValueError(f"{kind} optimizer config needs exactly one of 'schedule' or 'learning_rate'")
    if "learning_rate" in cfg:
        cfg["schedule"] = {"type": "constant", "learning_rate": cfg.pop("learning_rate")}
    cfg["schedule"] = _validate_schedule(cfg["schedule"])
    if "momentum" in cfg:
        m = cfg["momentum"]
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0.0 <= m < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {m!r}")
    for key in ("beta_1", "beta_2"):
        if key in cfg and not (isinstance(cfg[key], (int, float)) and 0.0 <= cfg[key] < 1.0):
            raise ValueError(f"{key} must be in [0, 1), got {cfg[key]!r}")
    for key in ("clipnorm", "global_clipnorm", "weight_decay", "epsilon"):
        if key in cfg and cfg[key] is not None:
            _check_schedule_numbers(**{key: cfg[key]})
    if "nesterov" in cfg and not isinstance(cfg["nesterov"], bool):
        raise ValueError(f"nesterov must be true or false, got {cfg['nesterov']!r}")
    return cfg


def _validate_schedule(schedule) -> dict[str, Any]:
    if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
        schedule = {"type": "constant", "learning_rate": schedule}
    if not isinstance(schedule, Mapping):
        raise ValueError(f"schedule must be a mapping, got {schedule!r}")
    schedule = dict(schedule)
    kind = SCHEDULE_ALIASES.get(str(schedule.get("type", "")).lower())
    if kind is None:
        raise ValueError(f"schedule type must be one of {sorted(set(SCHEDULE_ALIASES.values()))}, "
                         f"got {schedule.get('type')!r}")
    schedule["type"] = kind
    required, optional = map(set, SCHEDULE_REQUIRED_OPTIONAL[kind])
    missing = required - set(schedule)
    if missing:
        raise ValueError(f"{kind} schedule is missing {sorted(missing)}")
    unknown = set(schedule) - required - optional - {"type"}
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} in a {kind} schedule; allowed: "
                         f"{sorted(required | optional)}")
    build_schedule(schedule)  # validates the numbers
    return schedule


def build_schedule(schedule: Mapping[str, Any]):
    """A ``LearningRateSchedule`` (or float for ``constant``) from a validated schedule dict."""
    kind = SCHEDULE_ALIASES.get(str(schedule.get("type", "")).lower())
    args = {k: v for k, v in schedule.items() if k != "type"}
    if kind == "cosine":
        return CosineDecayWithWarmup(**args)
    if kind == "manual_step":
        return ManualStepSchedule(args["initial_lr"], args.get("steps", []), warmup=args.get("warmup", False))
    if kind == "constant":
        _check_schedule_numbers(learning_rate=args["learning_rate"])
        return float(args["learning_rate"])
    raise ValueError(f"unknown schedule type {schedule.get('type')!r}")


def build_optimizer(cfg: Mapping[str, Any]) -> keras.optimizers.Optimizer:
    """A Keras optimizer from a config dict (see the module docstring); ``ValueError`` on a bad config.

    ``momentum`` is SGD with momentum (the OD API's momentum_optimizer), ``sgd``
    plain SGD, ``adam`` Adam. Create it inside a distribution strategy scope
    when training with one.
    """
    cfg = validate_optimizer_config(cfg)
    lr = build_schedule(cfg["schedule"])
    extra = {k: cfg[k] for k in ("clipnorm", "global_clipnorm", "weight_decay") if cfg.get(k) is not None}
    if cfg["type"] == "momentum":
        return keras.optimizers.SGD(lr, momentum=float(cfg.get("momentum", 0.9)),
                                    nesterov=cfg.get("nesterov", False), **extra)
    if cfg["type"] == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.0, nesterov=cfg.get("nesterov", False), **extra)
    return keras.optimizers.Adam(lr, beta_1=cfg.get("beta_1", 0.9), beta_2=cfg.get("beta_2", 0.999),
                                 epsilon=cfg.get("epsilon", 1e-7), **extra)


def current_learning_rate(optimizer) -> float:
    """The learning rate the optimizer applies at its current iteration (unwraps loss scaling)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    lr = inner.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)
