"""Training loop: learning, checkpoints and resume, NaN errors, GPU switches on CPU, export."""
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from urban_detection.detection.data import make_dataset
from urban_detection.detection.model import build_detector, load_initial_weights, postprocess_detections
from urban_detection.detection.distribute import strategy_scope
from urban_detection.detection.export import export_model, load_exported
from urban_detection.detection.losses import LOSS_KEYS, FocalLoss, SmoothL1Loss, evaluate_losses
from urban_detection.detection.precision import configure_precision, precision
from urban_detection.detection.train import train
from urban_detection.waymo.example import DetectionExample, encode_example

SIZE = 64
SMALL = "retinanet_resnet18_fpn_small"
TINY = dict(encoder=dict(stackwise_num_filters=[64, 32, 32, 32]), fpn_filters=16, head_filters=16, head_convs=1)
ADAM = {"type": "adam", "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def toy_records(tmp_path_factory):
    """A trivially learnable task: one bright square (a 'vehicle') on a dark, noisy background."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("toy") / "toy.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        for i in range(16):
            image = rng.integers(0, 40, (SIZE, SIZE, 3)).astype(np.uint8)
            s = int(rng.integers(16, 32))
            y, x = (int(v) for v in rng.integers(0, SIZE - s, 2))
            image[y:y + s, x:x + s] = (230, 220, 40)
            box = np.array([[y, x, y + s, x + s]], np.float32) / SIZE
            png = tf.io.encode_png(image).numpy()
            w.write(encode_example(DetectionExample(png, SIZE, SIZE, f"{i}.png", f"toy/{i}", box,
                                                    np.array([1], np.int32), "png")))
    return path


def _train_ds(path, batch=4):
    return make_dataset(path, SIZE, batch, training=True, cache=True, shuffle_buffer=16)


def _val_ds(path):
    return make_dataset(path, SIZE, 8, training=False, cache=True)


def _model(**overrides):
    return build_detector(SMALL, SIZE, **{**TINY, **overrides})


def test_losses_match_definitions():
    focal = FocalLoss(alpha=0.25, gamma=2.0, reduction=None)
    y = tf.constant([[[1.0, 0.0]]])
    logits = tf.constant([[[0.0, 0.0]]])  # p = 0.5 for both classes
    expected = 0.25 * 0.25 * np.log(2) + 0.75 * 0.25 * np.log(2)
    np.testing.assert_allclose(focal(y, logits).numpy(), [[expected]], rtol=1e-5)
    l1 = SmoothL1Loss(beta=0.1, reduction=None)
    out = l1(tf.constant([[[0.0, 0.0, 0.0, 0.0]]]), tf.constant([[[0.05, 1.0, -1.0, 0.0]]]))
    np.testing.assert_allclose(out.numpy(), [[0.5 * 0.05**2 / 0.1 + 2 * (1.0 - 0.05)]], rtol=1e-5)


def test_tiny_training_run_learns(toy_records, tmp_path, caplog):
    keras.utils.set_random_seed(1)
    model = _model()
    logs = []
    with caplog.at_level(logging.INFO, logger="urban_detection.detection.train"):
        result = train(model, _train_ds(toy_records), _val_ds(toy_records), steps=40, checkpoint_dir=tmp_path,
                       checkpoint_every=40, log_every=1, optimizer=ADAM, on_log=lambda m, s: logs.append((s, m)))
    assert result.step == 40 and result.start_step == 0
    assert [s for s, _ in logs] == list(range(1, 41))
    assert set(logs[0][1]) == {*LOSS_KEYS, "learning_rate", "images_per_sec"}
    totals = np.array([m["loss/total"] for _, m in logs])
    assert np.all(np.isfinite(totals))
    assert totals[-8:].mean() < 0.6 * totals[:8].mean(), totals
    loc = np.array([m["loss/localization"] for _, m in logs])
    assert loc[-8:].mean() < loc[:8].mean()
    assert result.images_per_sec > 0 and logs[-1][1]["learning_rate"] == pytest.approx(1e-3)
    # the checkpoint holds every weight (FPN convs and BatchNorm statistics too): fine-tuning starts from it
    restored = _model()
    load_initial_weights(restored, tmp_path)
    for got, want in zip(restored.weights, model.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=got.path)
    assert "step 40/40" in caplog.text and "img/s" in caplog.text and "ETA" in caplog.text
    # the validation losses are computed at the checkpoint and reflect the learning too
    assert result.val_history[-1]["loss/total"] < totals[:8].mean()
    preds = postprocess_detections(model.predict_on_batch(next(iter(_val_ds(toy_records)))[0]), SIZE)
    assert max(p["scores"].max() for p in preds) > 0.1  # it is finding the squares


def test_checkpoint_and_resume(toy_records, tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    seen = []
    cosine = {"type": "momentum", "momentum": 0.9,
              "schedule": {"type": "cosine", "base_lr": 0.01, "total_steps": 6, "warmup_lr": 0.001, "warmup_steps": 2}}
    first = train(_model(), _train_ds(toy_records), _val_ds(toy_records), steps=4, checkpoint_dir=ckpt_dir,
                  checkpoint_every=2, log_every=1, optimizer=cosine, val_steps=1,
                  on_checkpoint=lambda step, path, val: seen.append((step, path, val)))
    assert first.step == 4 and first.last_checkpoint.endswith("ckpt-4")
    assert [s for s, _, _ in seen] == [2, 4]
    assert set(seen[0][2]) >= set(LOSS_KEYS) and np.isfinite(seen[0][2]["loss/total"])
    assert tf.train.latest_checkpoint(str(ckpt_dir)).endswith("ckpt-4")

    model = _model()  # a fresh process would build a fresh model
    second = train(model, _train_ds(toy_records), None, steps=6, checkpoint_dir=ckpt_dir, checkpoint_every=2,
                   log_every=1, optimizer=cosine, keep_checkpoints=2)
    assert second.start_step == 4 and second.step == 6
    assert [h["step"] for h in second.history] == [5, 6]
    assert int(model.optimizer.iterations.numpy()) == 6  # the schedule continued, not restarted
    assert second.history[0]["learning_rate"] == pytest.approx(
        float(keras.optimizers.schedules.deserialize(
            keras.optimizers.schedules.serialize(model.optimizer._learning_rate))(5)), rel=1e-5)
    assert len(tf.train.get_checkpoint_state(str(ckpt_dir)).all_model_checkpoint_paths) == 2  # keep last k

    done = train(_model(), _train_ds(toy_records), None, steps=6, checkpoint_dir=ckpt_dir, checkpoint_every=2,
                 optimizer=cosine)
    assert done.start_step == 6 and done.step == 6 and done.history == []  # nothing left to do


def test_interrupted_run_resumes(toy_records, tmp_path):
    def stop_at_3(metrics, step):
        if step == 3:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_model(), _train_ds(toy_records), None, steps=6, checkpoint_dir=tmp_path, checkpoint_every=2,
              log_every=1, optimizer=ADAM, on_log=stop_at_3)
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")  # a crash keeps the last good one
    resumed = train(_model(), _train_ds(toy_records), None, steps=6, checkpoint_dir=tmp_path, checkpoint_every=2,
                    log_every=1, optimizer=ADAM)
    assert resumed.start_step == 2 and resumed.step == 6

    def ctrl_c_at_3(metrics, step):
        if step == 3:
            raise KeyboardInterrupt

    other = tmp_path / "interrupt"
    with pytest.raises(KeyboardInterrupt):
        train(_model(), _train_ds(toy_records), None, steps=6, checkpoint_dir=other, checkpoint_every=2,
              log_every=1, optimizer=ADAM, on_log=ctrl_c_at_3)
    assert tf.train.latest_checkpoint(str(other)).endswith("ckpt-3")  # Ctrl-C saves where it stopped
    resumed = train(_model(), _train_ds(toy_records), None, steps=4, checkpoint_dir=other, checkpoint_every=2,
                    optimizer=ADAM, resume=True)
    assert resumed.start_step == 3 and resumed.step == 4
    fresh = train(_model(), _train_ds(toy_records), None, steps=1, checkpoint_dir=tmp_path / "fresh",
                  checkpoint_every=1, optimizer=ADAM, resume=False)
    assert fresh.start_step == 0


def test_nan_loss_names_the_step(toy_records, tmp_path):
    model = _model()
    logits = model.classification_head.prediction_layer.bias
    logits.assign(np.full(logits.shape, np.nan, np.float32))  # a diverged model
    with pytest.raises(FloatingPointError, match="not finite at step 1 .*classification=nan"):
        train(model, _train_ds(toy_records), None, steps=3, checkpoint_dir=tmp_path, checkpoint_every=1,
              optimizer=ADAM)
    assert tf.train.latest_checkpoint(str(tmp_path)) is None  # nothing bad was saved

    model = _model()

    def diverge_after_2(metrics, step):  # the weights blow up during training
        if step == 2:
            kernel = model.box_head.prediction_layer.kernel
            kernel.assign(np.full(kernel.shape, np.inf, np.float32))

    with pytest.raises(FloatingPointError, match=r"not finite at step 3 .*localization=(nan|inf)") as err:
        train(model, _train_ds(toy_records), None, steps=6, checkpoint_dir=tmp_path / "later", checkpoint_every=2,
              log_every=1, optimizer=ADAM, on_log=diverge_after_2)
    assert "ckpt-2" in str(err.value)  # points at the last good checkpoint


def test_mixed_precision_on_cpu(toy_records, tmp_path):
    with precision(True):
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        model = _model()
        result = train(model, _train_ds(toy_records), _val_ds(toy_records), steps=2, checkpoint_dir=tmp_path,
                       checkpoint_every=2, optimizer=ADAM, mixed_precision=True, val_steps=1)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.compute_dtype == "float16"
    assert np.isfinite(result.history[-1]["loss/total"]) and result.step == 2
    assert np.isfinite(result.val_history[-1]["loss/total"])
    preds = postprocess_detections(model.predict_on_batch(next(iter(_val_ds(toy_records)))[0]), SIZE)
    assert len(preds) == 8 and all(np.isfinite(p["scores"]).all() for p in preds)
    with precision("bfloat16"):  # the CPU-friendly variant
        bf16 = _model()
        train(bf16, _train_ds(toy_records), None, steps=1, checkpoint_dir=tmp_path / "bf16", checkpoint_every=1,
              optimizer=ADAM, mixed_precision="bfloat16")
    assert bf16.compute_dtype == "bfloat16" and not isinstance(bf16.optimizer, keras.optimizers.LossScaleOptimizer)
    assert len(postprocess_detections(bf16.predict_on_batch(np.zeros((1, SIZE, SIZE, 3), np.float32)), SIZE)) == 1
    previous = configure_precision(False)
    assert previous == "float32"
    with pytest.raises(ValueError, match="configure_precision"):
        train(_model(), _train_ds(toy_records), None, steps=1, checkpoint_dir=tmp_path / "x", checkpoint_every=1,
              optimizer=ADAM, mixed_precision=True)


def test_jit_compile_on_cpu(toy_records, tmp_path):
    model = _model()
    result = train(model, _train_ds(toy_records), None, steps=2, checkpoint_dir=tmp_path, checkpoint_every=2,
                   optimizer=ADAM, jit_compile=True, log_every=1)
    assert result.step == 2 and all(np.isfinite(h["loss/total"]) for h in result.history)
    assert model.jit_compile is True


def test_mirrored_strategy_on_cpu(toy_records, tmp_path):
    strategy = strategy_scope("mirrored")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    with strategy.scope():
        model = _model()
    result = train(model, _train_ds(toy_records), None, steps=2, checkpoint_dir=tmp_path, checkpoint_every=2,
                   optimizer=ADAM, strategy=strategy, log_every=1)
    assert result.step == 2 and all(np.isfinite(h["loss/total"]) for h in result.history)
    assert result.history[-1]["images_per_sec"] > 0 or np.isnan(result.history[-1]["images_per_sec"])
    with pytest.raises(ValueError, match="strategy.scope"):
        train(_model(), _train_ds(toy_records), None, steps=1, checkpoint_dir=tmp_path / "x", checkpoint_every=1,
              optimizer=ADAM, strategy=strategy)
    assert strategy_scope("default") is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="unknown distribution strategy"):
        strategy_scope("tpu_pod")


def test_evaluate_losses_and_optimizer_required(toy_records, tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="no optimizer"):
        train(model, _train_ds(toy_records), None, steps=1, checkpoint_dir=tmp_path, checkpoint_every=1)
    with pytest.raises(ValueError, match="repeats forever"):
        train(model, _train_ds(toy_records), _train_ds(toy_records), steps=1, checkpoint_dir=tmp_path,
              checkpoint_every=1, optimizer=ADAM)
    train(model, _train_ds(toy_records), None, steps=1, checkpoint_dir=tmp_path, checkpoint_every=1, optimizer=ADAM)
    val = evaluate_losses(model, _val_ds(toy_records))
    assert val["batches"] == 2 and val["loss/total"] == pytest.approx(
        val["loss/classification"] + val["loss/localization"] + val["loss/regularization"])
    # the model keeps its compiled optimizer for a later call without optimizer=
    again = train(model, _train_ds(toy_records), None, steps=2, checkpoint_dir=tmp_path, checkpoint_every=1)
    assert again.start_step == 1 and again.step == 2


def test_export_round_trip(toy_records, tmp_path):
    model = _model()
    train(model, _train_ds(toy_records), None, steps=3, checkpoint_dir=tmp_path / "ckpt", checkpoint_every=3,
          optimizer=ADAM)
    paths = export_model(model, tmp_path / "export")
    images = next(iter(_val_ds(toy_records)))[0].numpy()[:3]
    uint8 = np.round(images).astype(np.uint8)
    expected = postprocess_detections(model.predict_on_batch(uint8.astype(np.float32)), SIZE)

    served = load_exported(paths["saved_model"])(uint8)
    assert set(served) == {"detection_boxes", "detection_scores", "detection_classes", "num_detections"}
    for i, exp in enumerate(expected):
        n = int(served["num_detections"][i])
        assert n == len(exp["scores"])
        np.testing.assert_allclose(served["detection_scores"][i, :n], exp["scores"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(served["detection_boxes"][i, :n], exp["boxes"], atol=1e-4)
        np.testing.assert_array_equal(served["detection_classes"][i, :n], exp["labels"])
    with pytest.raises(TypeError, match="uint8"):
        load_exported(tmp_path / "export")(images)

    reloaded = load_exported(paths["keras"])
    np.testing.assert_allclose(reloaded(images)["cls_logits"], model(images)["cls_logits"], rtol=1e-4, atol=1e-5)
    assert type(reloaded).__name__ == "RetinaNetDetector" and reloaded.head_filters == TINY["head_filters"]
