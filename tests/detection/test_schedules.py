"""Learning-rate schedules (OD API semantics) and the optimizer factory."""
import math

import keras
import numpy as np
import pytest

from urban_detection.detection.schedules import (
    CosineDecayWithWarmup,
    ManualStepSchedule,
    build_optimizer,
    current_learning_rate,
    validate_optimizer_config,
)

BASELINE = {"type": "momentum", "momentum": 0.9,
            "schedule": {"type": "cosine", "base_lr": 0.04, "total_steps": 25000,
                         "warmup_lr": 0.013333, "warmup_steps": 2000}}
ADAM = {"type": "adam", "schedule": {"type": "manual_step", "initial_lr": 0.001,
                                     "steps": [[700, 1e-4], [1400, 1e-5]]}}


def lr_at(schedule, step):
    return float(schedule(step))


def test_cosine_with_warmup_key_steps():
    s = CosineDecayWithWarmup(base_lr=0.04, total_steps=25000, warmup_lr=0.013333, warmup_steps=2000)
    assert lr_at(s, 0) == pytest.approx(0.013333, rel=1e-5)  # warm-up start
    assert lr_at(s, 1000) == pytest.approx((0.013333 + 0.04) / 2, rel=1e-5)  # linear warm-up midpoint
    assert lr_at(s, 1999) < 0.04
    assert lr_at(s, 2000) == pytest.approx(0.04, rel=1e-6)  # warm-up end = base
    mid = 2000 + (25000 - 2000) // 2
    assert lr_at(s, mid) == pytest.approx(0.02, rel=1e-4)  # half way down the cosine
    quarter = 2000 + (25000 - 2000) // 4
    assert lr_at(s, quarter) == pytest.approx(0.02 * (1 + math.cos(math.pi / 4)), rel=1e-4)
    assert lr_at(s, 25000) == pytest.approx(0.0, abs=1e-9)  # end
    assert lr_at(s, 30000) == 0.0  # after the end
    values = [lr_at(s, i) for i in range(2000, 25001, 500)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay after warm-up


def test_cosine_without_warmup_and_with_hold():
    s = CosineDecayWithWarmup(base_lr=1.0, total_steps=100)
    assert lr_at(s, 0) == pytest.approx(1.0)
    assert lr_at(s, 50) == pytest.approx(0.5, rel=1e-5)
    held = CosineDecayWithWarmup(base_lr=1.0, total_steps=100, warmup_lr=0.0, warmup_steps=10, hold_base_rate_steps=20)
    assert lr_at(held, 5) == pytest.approx(0.5)
    assert lr_at(held, 25) == pytest.approx(1.0)  # held at base
    assert lr_at(held, 30 + 35) == pytest.approx(0.5, rel=1e-5)


def test_decay_fraction_holds_the_rate_until_the_last_share_of_the_steps():
    # 400 steps: 30 warm-up, held to step 230, cosine over the last 170 (42.5%)
    s = CosineDecayWithWarmup(base_lr=2.0, total_steps=400, warmup_lr=0.0, warmup_steps=30, decay_fraction=0.425)
    assert s.hold_base_rate_steps == 200
    assert lr_at(s, 229) == pytest.approx(2.0)
    assert lr_at(s, 230 + 85) == pytest.approx(1.0, rel=1e-5)  # half way down the cosine
    assert lr_at(s, 400) == pytest.approx(0.0, abs=1e-7)
    short = CosineDecayWithWarmup(base_lr=2.0, total_steps=100, warmup_steps=30, decay_fraction=0.425)
    assert short.hold_base_rate_steps == 28  # the same shape at another budget
    assert CosineDecayWithWarmup(base_lr=1.0, total_steps=40, warmup_steps=30,
                                 decay_fraction=0.5).hold_base_rate_steps == 0  # never negative
    config = CosineDecayWithWarmup.from_config(s.get_config())
    assert [lr_at(config, i) for i in (0, 229, 300)] == [lr_at(s, i) for i in (0, 229, 300)]
    for bad in (0.0, 1.5, True, "half"):
        with pytest.raises(ValueError, match="decay_fraction"):
            CosineDecayWithWarmup(base_lr=1.0, total_steps=100, decay_fraction=bad)
    with pytest.raises(ValueError, match="not both"):
        CosineDecayWithWarmup(base_lr=1.0, total_steps=100, hold_base_rate_steps=10, decay_fraction=0.5)
    validate_optimizer_config({"type": "adam", "schedule": {"type": "cosine", "base_lr": 0.002, "total_steps": 400,
                                                            "warmup_steps": 30, "decay_fraction": 0.425}})


def test_manual_step_schedule_boundaries():
    s = ManualStepSchedule(0.001, [(700, 1e-4), (1400, 1e-5)])
    assert lr_at(s, 0) == pytest.approx(0.001)
    assert lr_at(s, 699) == pytest.approx(0.001)
    assert lr_at(s, 700) == pytest.approx(1e-4)  # the new rate applies from its step on (OD API)
    assert lr_at(s, 1399) == pytest.approx(1e-4)
    assert lr_at(s, 1400) == pytest.approx(1e-5)
    assert lr_at(s, 10**6) == pytest.approx(1e-5)
    od_api_style = ManualStepSchedule(0.001, [{"step": 700, "learning_rate": 1e-4}])
    assert lr_at(od_api_style, 700) == pytest.approx(1e-4)
    warm = ManualStepSchedule(0.0, [(100, 1.0), (200, 0.1)], warmup=True)
    assert lr_at(warm, 50) == pytest.approx(0.5)
    assert lr_at(warm, 150) == pytest.approx(1.0)


@pytest.mark.parametrize("schedule", [
    CosineDecayWithWarmup(0.04, 25000, 0.013333, 2000),
    ManualStepSchedule(0.001, [(700, 1e-4), (1400, 1e-5)]),
])
def test_schedules_serialize(schedule):
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert type(restored) is type(schedule)
    for step in (0, 699, 700, 1000, 2000, 13500, 25000):
        assert lr_at(restored, step) == pytest.approx(lr_at(schedule, step))


def test_build_momentum_optimizer_follows_schedule():
    opt = build_optimizer(BASELINE)
    assert isinstance(opt, keras.optimizers.SGD)
    assert opt.momentum == pytest.approx(0.9)
    assert isinstance(opt._learning_rate, CosineDecayWithWarmup)
    var = keras.Variable(np.ones(3, np.float32))
    opt.build([var])
    assert current_learning_rate(opt) == pytest.approx(0.013333, rel=1e-5)
    opt.iterations.assign(2000)
    assert current_learning_rate(opt) == pytest.approx(0.04, rel=1e-6)


def test_build_adam_and_sgd():
    adam = build_optimizer(ADAM)
    assert isinstance(adam, keras.optimizers.Adam)
    adam.build([keras.Variable(np.ones(2, np.float32))])
    adam.iterations.assign(1400)
    assert current_learning_rate(adam) == pytest.approx(1e-5)
    sgd = build_optimizer({"type": "sgd", "learning_rate": 0.01, "global_clipnorm": 5.0})
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.0
    assert sgd.global_clipnorm == 5.0
    assert float(sgd.learning_rate) == pytest.approx(0.01)
    # OD API names are accepted too
    assert isinstance(build_optimizer({**BASELINE, "type": "momentum_optimizer"}), keras.optimizers.SGD)


def test_validate_normalises_without_building():
    cfg = validate_optimizer_config({"type": "sgd", "learning_rate": 0.1})
    assert cfg == {"type": "sgd", "schedule": {"type": "constant", "learning_rate": 0.1}}
    assert validate_optimizer_config(ADAM)["schedule"]["type"] == "manual_step"


@pytest.mark.parametrize("cfg, message", [
    ({"type": "rmsprop", "learning_rate": 0.1}, "optimizer type"),
    ("momentum", "must be a mapping"),
    ({"type": "momentum", "momentum": 0.9}, "exactly one of 'schedule' or 'learning_rate'"),
    ({"type": "sgd", "learning_rate": 0.1, "schedule": {"type": "constant", "learning_rate": 0.1}}, "exactly one"),
    ({"type": "sgd", "momentum": 0.9, "learning_rate": 0.1}, "unknown key(s) ['momentum']"),
    ({"type": "momentum", "momentum": 1.5, "learning_rate": 0.1}, "momentum must be in [0, 1)"),
    ({"type": "adam", "learning_rate": -1.0}, "learning_rate must be a finite number >= 0"),
    ({"type": "adam", "schedule": {"type": "exponential", "learning_rate": 0.1}}, "schedule type"),
    ({"type": "adam", "schedule": {"type": "cosine", "base_lr": 0.1}}, "missing ['total_steps']"),
    ({"type": "adam", "schedule": {"type": "cosine", "base_lr": 0.1, "total_steps": 10, "warmup": 3}},
     "unknown key(s) ['warmup']"),
    ({"type": "adam", "schedule": {"type": "cosine", "base_lr": 0.1, "total_steps": 10, "warmup_steps": 20}},
     "total_steps (10) must be >= warmup_steps"),
    ({"type": "adam", "schedule": {"type": "cosine", "base_lr": 0.1, "total_steps": 0}}, "total_steps must be > 0"),
    ({"type": "adam", "schedule": {"type": "cosine", "base_lr": 0.01, "total_steps": 10, "warmup_lr": 0.1,
                                   "warmup_steps": 2}}, "warmup_lr (0.1) must not exceed base_lr"),
    ({"type": "adam", "schedule": {"type": "manual_step", "initial_lr": 0.1, "steps": [[700, 0.01], [700, 0.001]]}},
     "increase strictly"),
    ({"type": "adam", "schedule": {"type": "manual_step", "initial_lr": 0.1, "steps": [[0, 0.01]]}},
     "positive integer"),
    ({"type": "adam", "schedule": {"type": "manual_step", "initial_lr": 0.1, "steps": [[10, 0.01, 3]]}},
     "[step, lr] pair"),
    ({"type": "adam", "schedule": {"type": "manual_step", "initial_lr": 0.1, "steps": [{"step": 10}]}},
     "exactly the keys step and learning_rate"),
])
def test_bad_configs_raise_clear_errors(cfg, message):
    with pytest.raises(ValueError) as err:
        validate_optimizer_config(cfg)
    assert message in str(err.value)
    with pytest.raises(ValueError):
        build_optimizer(cfg)
