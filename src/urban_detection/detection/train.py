"""Training loop: a detector trained up to a global step, with checkpoints, resume, progress and validation.

:func:`train` is a short custom loop (in the spirit of torchvision's
``references/detection``) around ``model.compile`` with the losses of
:mod:`.losses`. It checkpoints with ``tf.train.Checkpoint(weights, optimizer,
step)`` (``weights``: every model variable by its Keras path, see
:func:`~.model.checkpoint_weights`) every ``checkpoint_every`` steps, resumes
from the newest checkpoint when called again, raises ``FloatingPointError``
naming the step when the loss is NaN/inf, and reports progress through
``logging`` and the ``on_log`` / ``on_checkpoint`` callbacks (no MLflow or Kedro
here).

GPU switches that also run on a CPU: mixed precision (:mod:`.precision`, set
*before* building the model), XLA (``jit_compile=True``) and ``tf.distribute``
strategies (:mod:`.distribute`; build the model inside ``strategy.scope()``).

Under ``MultiWorkerMirroredStrategy`` every worker runs the same program and
calls :func:`train`; the loop keeps them in lock step: the chief restores the
newest checkpoint of its ``checkpoint_dir`` and its values are broadcast to all
workers (the others need not see that folder), every worker saves at every
checkpoint (the chief into ``checkpoint_dir``, the others into a
``workertemp_<id>`` folder that is deleted right away), BatchNorm moving
statistics are averaged over the replicas before each checkpoint, and
validation losses are computed by every worker on its own (no collectives, so
no worker can wait for another).
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from urban_detection import files
from urban_detection.detection.distribute import (distribute_dataset, is_chief, is_multi_worker, moving_statistics,
                                                  task_id, variable_sync)
from urban_detection.detection.ema import WeightAverage
from urban_detection.detection.losses import (LOSS_KEYS, compile_detector, detection_losses, evaluate_losses,
                                              regularization_loss)
from urban_detection.detection.model import checkpoint_weights
from urban_detection.detection.precision import policy_name
from urban_detection.detection.schedules import build_optimizer, current_learning_rate

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    step: int  # global step reached
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per progress line
    last_checkpoint: str | None = None
    images_per_sec: float = float("nan")  # mean over this call, first (tracing) step excluded
    val_history: list[dict[str, float]] = field(default_factory=list)  # one dict per checkpoint
    start_step: int = 0  # step this call resumed from
    is_chief: bool = True  # False on the other workers of a multi-worker strategy (they keep no checkpoints)


def train(
    model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    *,
    steps: int,
    checkpoint_dir: str | Path,
    checkpoint_every: int,
    keep_checkpoints: int = 3,
    log_every: int = 10,
    on_log: Callable[[dict, int], Any] | None = None,
    on_checkpoint: Callable[[int, str, dict], Any] | None = None,
    mixed_precision: bool | str = False,
    jit_compile: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    resume: bool = True,
    optimizer: keras.optimizers.Optimizer | Mapping | None = None,
    val_steps: int | None = None,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    smooth_l1_beta: float = 0.1,
    ema_decay: float | None = None,
    ema_ramp_steps: float = 0.0,
) -> TrainResult:
    """Train ``model`` up to global step ``steps`` (not ``steps`` more), resuming from ``checkpoint_dir``.

    ``optimizer``: a config dict for :func:`~.schedules.build_optimizer` (built
    here, inside the strategy scope), an optimizer instance (created inside the
    strategy scope) or ``None`` to keep the optimizer ``model`` was compiled
    with. ``train_ds`` yields ``(images, {"boxes", "labels"})`` (e.g.
    :func:`~.data.make_dataset`) and is re-iterated when exhausted. Every
    ``log_every`` steps a progress line is logged and ``on_log(metrics, step)``
    called with ``loss/classification``, ``loss/localization``,
    ``loss/regularization``, ``loss/total``, ``learning_rate`` and
    ``images_per_sec``. Every ``checkpoint_every`` steps (and at the end) a
    checkpoint is written (the newest ``keep_checkpoints`` are kept), the
    validation losses over ``val_ds`` (at most ``val_steps`` batches) computed
    and ``on_checkpoint(step, checkpoint_path, val_metrics)`` called. On
    ``KeyboardInterrupt`` a checkpoint is saved before re-raising. Raises
    ``FloatingPointError`` naming the step when a loss is NaN or infinite.

    Under ``MultiWorkerMirroredStrategy`` every worker calls this with the
    same arguments (``train_ds`` is the *global* batch; it is auto-sharded by
    element unless its options set another policy; build it deterministic
    for exact, non-overlapping shares). Only the chief (``result.is_chief``)
    keeps checkpoints in ``checkpoint_dir`` and resumes from them, the others
    continue from the chief's values; the callbacks run on every worker with
    the same metrics, on the other workers ``checkpoint_path`` is ``None``. The
    caller writes final weights and MLflow records on the chief only
    (:func:`~.distribute.is_chief`); the trained weights are the same on every worker.

    ``ema_decay``: keep an exponential moving average of the weights (:mod:`.ema`, ramped over
    ``ema_ramp_steps``); validation and ``on_checkpoint`` see the averaged weights, which the model
    holds when training ends. Not with a multi-worker strategy.
    """
    if steps < 0 or checkpoint_every <= 0 or log_every <= 0 or keep_checkpoints <= 0:
        raise ValueError("steps must be >= 0 and checkpoint_every, log_every, keep_checkpoints > 0")
    strategy = strategy or tf.distribute.get_strategy()
    _check_inputs(model, val_ds, val_steps, strategy, mixed_precision)
    if ema_decay is not None and is_multi_worker(strategy):
        raise ValueError("train.ema_decay (a moving average of the weights) is not supported with several workers")
    optimizer, step_var = _compile(model, strategy, optimizer, jit_compile=jit_compile, focal_alpha=focal_alpha,
                                   focal_gamma=focal_gamma, smooth_l1_beta=smooth_l1_beta)
    average = None
    if ema_decay is not None:
        with strategy.scope():
            average = WeightAverage(checkpoint_weights(model), ema_decay, ema_ramp_steps)
    checkpoints = _Checkpoints(model, optimizer, step_var, strategy, Path(checkpoint_dir), keep_checkpoints, average)
    result = TrainResult(step=0, last_checkpoint=checkpoints.latest, is_chief=checkpoints.chief)
    result.step = result.start_step = start = step = checkpoints.restore(resume)
    if start >= steps:
        log.info("already at step %d >= %d, nothing to train", start, steps)
        if average is not None:
            average.finalize()
        return result
    train_step = _train_step(model, optimizer, strategy, jit_compile, average)
    batches = _endless(distribute_dataset(strategy, train_ds))
    sync_statistics = variable_sync(strategy, moving_statistics(model), broadcast=False)  # per replica in Keras 3
    clock = _Clock(start, steps)
    log.info("training %s from step %d to %d (%d replica(s), policy %s, jit %s)", model.name, start, steps,
             strategy.num_replicas_in_sync, model.dtype_policy.name, jit_compile)
    try:
        while step < steps:
            losses, batch = train_step(*next(batches))
            step += 1
            step_var.assign(step)
            losses = _finite(losses.numpy(), step, result.last_checkpoint)
            clock.tick(int(batch))
            if step % log_every == 0 or step == steps:
                metrics = _progress(losses, optimizer, *clock.window(step), step, steps)
                result.history.append({"step": step, **metrics})
                if on_log is not None:
                    on_log(metrics, step)
            if step % checkpoint_every == 0 or step == steps:
                sync_statistics()
                result.last_checkpoint = checkpoints.save(step)
                with average.swapped() if average is not None else contextlib.nullcontext():
                    val_metrics = _validate(model, val_ds, val_steps, step)  # of the weights that are exported
                    if val_ds is not None:
                        result.val_history.append({"step": step, **val_metrics})
                    log.info("checkpoint %s", result.last_checkpoint)
                    if on_checkpoint is not None:
                        on_checkpoint(step, result.last_checkpoint, val_metrics)
                clock.resume()  # validation time is not training time
        if average is not None:
            average.finalize()
    except KeyboardInterrupt:
        result.last_checkpoint = checkpoints.save_interrupted(step, start) or result.last_checkpoint
        raise
    finally:
        result.step = step
        result.images_per_sec = clock.images_per_sec(result.images_per_sec)
    return result


# ----------------------------------------------------------------------- the loop's parts
def _check_inputs(model, val_ds, val_steps, strategy, mixed_precision) -> None:
    """Stop before any work when the validation data, dtype policy or strategy scope do not fit."""
    if val_ds is not None and val_steps is None and val_ds.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError("val_ds repeats forever: pass val_steps (or make it with training=False)")
    policy = model.dtype_policy.name
    if mixed_precision and policy != policy_name(mixed_precision):
        raise ValueError(f"mixed_precision={mixed_precision!r} but the model was built with dtype policy {policy!r}; "
                         f"build it after configure_precision({mixed_precision!r}) (or inside `with precision(...)`)")
    if not strategy.extended.variable_created_in_scope(model.trainable_variables[0].value):
        raise ValueError("the model was not built inside strategy.scope() of the strategy passed to train()")


def _compile(model, strategy, optimizer, *, jit_compile: bool, **loss_settings):
    """Compile ``model`` with the detection losses inside the strategy scope; the optimizer and a step variable."""
    with strategy.scope():
        if isinstance(optimizer, Mapping):
            optimizer = build_optimizer(optimizer)
        elif optimizer is None:
            optimizer = getattr(model, "optimizer", None)
            if optimizer is None:
                raise ValueError("no optimizer: pass optimizer= (a config dict or instance) or compile the model")
            optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        compile_detector(model, optimizer, jit_compile=jit_compile, **loss_settings)
        optimizer = model.optimizer  # a LossScaleOptimizer under mixed_float16
        optimizer.build(model.trainable_variables)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    return optimizer, step_var


def _train_step(model, optimizer, strategy, jit_compile: bool, average: WeightAverage | None = None):
    """One optimizer step on a (distributed) batch (and of the weight average): the mean losses and the
    global batch size."""
    replicas = strategy.num_replicas_in_sync
    variables = model.trainable_variables

    def replica_step(images, targets):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            cls, box = detection_losses(model, images, targets, outputs, trim_padding=not jit_compile)
            reg = regularization_loss(model)
            total = cls + box + reg
            scaled = optimizer.scale_loss(total / replicas)
        grads = tape.gradient(scaled, variables)
        # KerasHub's FPN builds BatchNorms it never applies (P3..P5 outputs): skip their None gradients.
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        return tf.stack([cls, box, reg, total]), tf.shape(images)[0]

    @tf.function(jit_compile=jit_compile)
    def train_step(images, targets):
        losses, batch = strategy.run(replica_step, args=(images, targets))
        if average is not None:
            average.update(optimizer.iterations)
        return (strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, batch, axis=None))

    return train_step


def _endless(data) -> Iterator:
    """The batches of ``data``, started again whenever it is exhausted."""
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            raise ValueError("the training dataset yields no batches")


def _finite(losses: np.ndarray, step: int, last_checkpoint: str | None) -> np.ndarray:
    if not np.all(np.isfinite(losses)):
        names = ", ".join(f"{k.split('/')[1]}={v}" for k, v in zip(LOSS_KEYS, losses))
        raise FloatingPointError(
            f"loss is not finite at step {step} ({names}); lower the learning rate, check the inputs or "
            f"resume from the last good checkpoint {last_checkpoint}"
        )
    return losses


def _progress(losses, optimizer, images_per_sec: float, eta: float, step: int, steps: int) -> dict[str, float]:
    """The progress line's metrics, logged."""
    metrics = dict(zip(LOSS_KEYS, (float(v) for v in losses)))
    metrics["learning_rate"] = current_learning_rate(optimizer)
    metrics["images_per_sec"] = images_per_sec
    log.info("step %d/%d  loss %.4f (cls %.4f, loc %.4f, reg %.4f)  lr %.3g  %.1f img/s  ETA %s",
             step, steps, metrics["loss/total"], metrics["loss/classification"], metrics["loss/localization"],
             metrics["loss/regularization"], metrics["learning_rate"], images_per_sec, format_eta(eta))
    return metrics


def _validate(model, val_ds, val_steps: int | None, step: int) -> dict:
    """Validation losses at a checkpoint (each worker on its own: same weights, same numbers, no collectives)."""
    if val_ds is None:
        return {}
    metrics = evaluate_losses(model, val_ds, val_steps, jit_compile=False)
    log.info("step %d validation: loss %.4f (cls %.4f, loc %.4f)", step, metrics["loss/total"],
             metrics["loss/classification"], metrics["loss/localization"])
    return metrics


class _Checkpoints:
    """The loop's checkpoints: the chief keeps the newest ones in ``checkpoint_dir`` and resumes from them;
    another worker saves too (saving may read variables collectively) into a temporary folder, removed at once."""

    def __init__(self, model, optimizer, step_var, strategy, checkpoint_dir: Path, keep: int,
                 average: WeightAverage | None = None):
        self.strategy, self.step_var, self.dir = strategy, step_var, checkpoint_dir
        self.chief, self.multi_worker = is_chief(strategy), is_multi_worker(strategy)
        self.weights = checkpoint_weights(model)
        self.optimizer = optimizer
        extra = {"ema": average.averages} if average is not None else {}
        self.ckpt = tf.train.Checkpoint(weights=self.weights, optimizer=optimizer, step=step_var, **extra)
        self.manager = None
        if self.chief:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            self.manager = tf.train.CheckpointManager(self.ckpt, str(checkpoint_dir), max_to_keep=keep)

    @property
    def latest(self) -> str | None:
        return self.manager and self.manager.latest_checkpoint

    def restore(self, resume: bool) -> int:
        """Restore the newest checkpoint (chief) and give every worker the chief's values; the step reached."""
        if resume and self.latest:
            self.ckpt.restore(self.latest).assert_existing_objects_matched()
            log.info("resumed from %s at step %d", self.latest, int(self.step_var.numpy()))
        if self.multi_worker:  # every worker continues from the chief's state (restored or freshly initialised)
            synced = [*self.weights.values(), *self.optimizer.variables, self.step_var]
            variable_sync(self.strategy, synced, broadcast=True)()
            log.info("worker %d of the cluster (%s) starts at step %d", task_id(self.strategy),
                     "chief" if self.chief else "not chief", int(self.step_var.numpy()))
        return int(self.step_var.numpy())

    def save(self, step: int) -> str | None:
        if self.manager is not None:
            return self.manager.save(checkpoint_number=step)
        temp = self.dir / f"workertemp_{task_id(self.strategy)}"
        try:
            self.ckpt.write(str(temp / f"ckpt-{step}"))
        finally:
            if temp.exists():  # written just now by this worker: recorded as the project's, then removed
                files.record_written(temp)
                files.remove_owned_tree(temp)
        return None

    def save_interrupted(self, step: int, start: int) -> str | None:
        """On Ctrl-C: the chief saves ``step`` unless already saved (no collectives: another worker may not
        have been interrupted, and its next collective then fails)."""
        if self.manager is None or step <= start or (self.latest or "").endswith(f"-{step}"):
            return None
        path = self.manager.save(checkpoint_number=step)
        log.warning("interrupted at step %d; saved %s, call train() again to resume", step, path)
        return path


class _Clock:
    """Images per second and time left; the first step (tracing) and validation pauses do not count."""

    def __init__(self, start: int, steps: int):
        self.start, self.steps = start, steps
        self.run_start = self.window_start = self.now = None
        self.run_images = self.window_images = 0

    def tick(self, batch: int) -> None:
        self.now = time.perf_counter()
        if self.run_start is None:  # the first step includes tracing: time from its end
            self.run_start = self.window_start = self.now
        else:
            self.run_images += batch
            self.window_images += batch

    def window(self, step: int) -> tuple[float, float]:
        """Images per second since the last progress line and the seconds left; starts a new window."""
        elapsed = self.now - self.window_start
        ips = self.window_images / elapsed if self.window_images and elapsed > 0 else float("nan")
        done = step - self.start - 1
        eta = (self.steps - step) * (self.now - self.run_start) / done if done > 0 else float("nan")
        self.window_images, self.window_start = 0, self.now
        return ips, eta

    def resume(self) -> None:
        """Training goes on after a pause, which counts as no training time."""
        self.window_start = time.perf_counter()
        self.run_start += self.window_start - self.now

    def images_per_sec(self, default: float) -> float:
        if self.run_start is None or not self.run_images:
            return default
        return self.run_images / max(time.perf_counter() - self.run_start, 1e-9)


def format_eta(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``; ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    h, rem = divmod(int(round(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"
