"""The moving average of the weights: its arithmetic, the swap, and training with it (checkpoints, resume)."""
import numpy as np
import pytest
import tensorflow as tf

from urban_detection.detection.distribute import strategy_scope
from urban_detection.detection.ema import WeightAverage, check_ema
from urban_detection.detection.model import build_detector, checkpoint_key, checkpoint_weights
from urban_detection.detection.train import train

from toy_records import square_records

SIZE = 64
TINY = dict(encoder=dict(stackwise_num_filters=[64, 32, 32, 32]), fpn_filters=16, head_filters=16, head_convs=1)
ADAM = {"type": "adam", "learning_rate": 1e-3}


def test_update_swap_and_finalize_follow_the_formula():
    w = tf.Variable([1.0, 2.0])
    counter = tf.Variable(3, dtype=tf.int64)  # not a float: not averaged
    avg = WeightAverage({"w": w, "n": counter}, decay=0.5)
    assert list(avg.averages) == ["w"]
    w.assign([3.0, 6.0])
    avg.update(1)
    np.testing.assert_allclose(avg.averages["w"].numpy(), [2.0, 4.0])  # 0.5 * old + 0.5 * new
    with avg.swapped():
        np.testing.assert_allclose(w.numpy(), [2.0, 4.0])
    np.testing.assert_allclose(w.numpy(), [3.0, 6.0])  # the training weights are back
    np.testing.assert_allclose(avg.averages["w"].numpy(), [2.0, 4.0])
    avg.finalize()
    np.testing.assert_allclose(w.numpy(), [2.0, 4.0])
    ramped = WeightAverage({"w": w}, decay=0.99, ramp_steps=10)
    assert float(ramped.decay_at(0)) == 0.0  # the first update copies the weights
    assert float(ramped.decay_at(10)) == pytest.approx(0.99 * (1 - np.exp(-1)), rel=1e-6)


@pytest.mark.parametrize("decay, ramp, match", [(1.0, 0, "ema_decay"), (0, 0, "ema_decay"), ("x", 0, "ema_decay"),
                                                (0.9, -1, "ema_ramp_steps"), (True, 0, "ema_decay")])
def test_bad_settings_are_named(decay, ramp, match):
    with pytest.raises(ValueError, match=match):
        check_ema(decay, ramp)
    check_ema(None, -1)  # no average: nothing to check


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return square_records(tmp_path_factory.mktemp("ema") / "toy.tfrecord", size=SIZE, frames=12)  # 3 batches of 4: a run resumed at step 3 starts an epoch


def _data(path):
    from urban_detection.detection.data import make_dataset

    return make_dataset(path, SIZE, 4, training=True, cache=True, shuffle_buffer=1, deterministic=True)


def _model():
    tf.keras.utils.set_random_seed(3)
    return build_detector("retinanet_resnet18_fpn_small", SIZE, **TINY)


def _restore(ckpt_dir, model, key):
    """The ``key`` entry ('weights' or 'ema') of the newest checkpoint, as {path: array}."""
    reader = tf.train.load_checkpoint(str(ckpt_dir))
    names = {k for k in reader.get_variable_to_shape_map()}
    out = {}
    for path in checkpoint_weights(model):
        name = key + checkpoint_key(path).removeprefix("weights")
        if name in names:
            out[path] = reader.get_tensor(name)
    return out


def test_training_with_an_average_judges_and_ends_with_the_averaged_weights(toy, tmp_path):
    seen = {}
    model = _model()

    def on_checkpoint(step, path, val):
        seen[step] = [v.numpy().copy() for v in model.trainable_variables]

    result = train(model, _data(toy), None, steps=6, checkpoint_dir=tmp_path / "a", checkpoint_every=3,
                   log_every=3, optimizer=ADAM, ema_decay=0.9, ema_ramp_steps=2, on_checkpoint=on_checkpoint)
    assert result.step == 6
    raw, averaged = _restore(tmp_path / "a", model, "weights"), _restore(tmp_path / "a", model, "ema")
    assert averaged and set(averaged) <= set(raw)
    final = {p: v.numpy() for p, v in checkpoint_weights(model).items()}
    kernels = [p for p in averaged if p.endswith("kernel")]
    for p in kernels:  # the model ends with the averages, which the checkpoint keeps beside the raw weights
        np.testing.assert_allclose(final[p], averaged[p], rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(raw[p], averaged[p]) for p in kernels)
    # on_checkpoint saw the averaged weights at step 6 too (what the judge scores and keeps)
    assert len(seen[6]) == len(model.trainable_variables)
    for got, var in zip(seen[6], model.trainable_variables):
        np.testing.assert_allclose(got, var.numpy(), rtol=1e-6, atol=1e-7)


def test_a_resumed_run_continues_the_average(toy, tmp_path):
    whole = _model()
    train(whole, _data(toy), None, steps=6, checkpoint_dir=tmp_path / "whole", checkpoint_every=6, log_every=6,
          optimizer=ADAM, ema_decay=0.8, ema_ramp_steps=1)
    first = _model()
    train(first, _data(toy), None, steps=3, checkpoint_dir=tmp_path / "parts", checkpoint_every=3, log_every=3,
          optimizer=ADAM, ema_decay=0.8, ema_ramp_steps=1)
    second = _model()
    result = train(second, _data(toy), None, steps=6, checkpoint_dir=tmp_path / "parts", checkpoint_every=3,
                   log_every=3, optimizer=ADAM, ema_decay=0.8, ema_ramp_steps=1)
    assert result.start_step == 3
    # same data order and steps: the resumed average equals the uninterrupted one (not a restart from step 3)
    for a, b in zip(whole.trainable_variables, second.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    done = _model()
    train(done, _data(toy), None, steps=6, checkpoint_dir=tmp_path / "parts", checkpoint_every=3,
          optimizer=ADAM, ema_decay=0.8, ema_ramp_steps=1)  # nothing left to train: the model gets the average
    for a, b in zip(whole.trainable_variables, done.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_mirrored_strategy_averages_too(toy, tmp_path):
    strategy = strategy_scope("mirrored")
    with strategy.scope():
        model = _model()
    result = train(model, _data(toy), None, steps=2, checkpoint_dir=tmp_path, checkpoint_every=2, log_every=1,
                   optimizer=ADAM, strategy=strategy, ema_decay=0.5)
    assert result.step == 2 and _restore(tmp_path, model, "ema")
