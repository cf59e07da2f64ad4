"""Training loop for the RetinaNet detectors: losses, checkpoints, resume, progress, export.

:func:`train` is a short custom loop (in the spirit of torchvision's
``references/detection``) around ``model.compile``: sigmoid focal loss
(alpha 0.25, gamma 2) summed over classes and a smooth-L1 box loss summed over
the four box deltas, both normalised by the number of positive anchors, plus
the L2 penalty of the kernels ("regularization"). It checkpoints with
``tf.train.Checkpoint(weights, optimizer, step)`` (``weights``: every model
variable by its Keras path, see :func:`~.model.checkpoint_weights`) every
``checkpoint_every`` steps,
resumes from the newest checkpoint when called again, raises
``FloatingPointError`` naming the step when the loss is NaN/inf, and reports
progress through ``logging`` and the ``on_log`` / ``on_checkpoint`` callbacks
(no MLflow or Kedro here).

GPU switches that also run on a CPU: mixed precision (call
:func:`configure_precision` *before* building the model), XLA
(``jit_compile=True``) and ``tf.distribute`` strategies (:func:`strategy_scope`;
build the model inside ``strategy.scope()``).

Under ``MultiWorkerMirroredStrategy`` every worker runs the same program and
calls :func:`train`; the loop keeps them in lock step: the chief
(:func:`is_chief`) restores the newest checkpoint of its ``checkpoint_dir`` and
its values are broadcast to all workers (the others need not see that folder),
every worker saves at every checkpoint (the chief into ``checkpoint_dir``, the
others into a ``workertemp_<id>`` folder that is deleted right away), BatchNorm
moving statistics (which Keras 3 updates per replica) are averaged over the
replicas before each checkpoint, and validation losses are computed by every
worker on its own (no collectives, so no worker can wait for another).
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from urban_detection import files
from urban_detection.detection.model import checkpoint_weights, indices_to_label_ids
from urban_detection.detection.schedules import build_optimizer, current_learning_rate

log = logging.getLogger(__name__)
_PACKAGE = "urban_detection"
LOSS_KEYS = ("loss/classification", "loss/localization", "loss/regularization", "loss/total")


# --------------------------------------------------------------------------- losses


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FocalLoss(keras.losses.Loss):
    """Sigmoid focal loss (Lin et al. 2017) summed over classes; one value per anchor.

    ``y_true`` one-hot ``[B, A, C]``, ``y_pred`` logits ``[B, A, C]``; computed in float32.
    """

    def __init__(self, alpha=0.25, gamma=2.0, reduction="sum", name="focal_loss", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        logits = tf.cast(y_pred, tf.float32)
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=logits)
        p = tf.sigmoid(logits)
        p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
        alpha_t = y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)
        return tf.reduce_sum(alpha_t * tf.pow(1.0 - p_t, self.gamma) * ce, axis=-1)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SmoothL1Loss(keras.losses.Loss):
    """Smooth L1 (Huber with the quadratic part scaled by 1/beta) summed over the 4 box deltas."""

    def __init__(self, beta=0.1, reduction="sum", name="smooth_l1_loss", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)
        self.beta = float(beta)

    def call(self, y_true, y_pred):
        diff = tf.abs(tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32))
        loss = tf.where(diff < self.beta, 0.5 * tf.square(diff) / self.beta, diff - 0.5 * self.beta)
        return tf.reduce_sum(loss, axis=-1)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


def compile_detector(model, optimizer, *, focal_alpha=0.25, focal_gamma=2.0, smooth_l1_beta=0.1,
                     jit_compile=False) -> None:
    """``model.compile`` with the detection losses (works with ``model.fit`` as well as :func:`train`)."""
    model.compile(
        optimizer=optimizer,
        box_loss=SmoothL1Loss(beta=smooth_l1_beta),
        classification_loss=FocalLoss(alpha=focal_alpha, gamma=focal_gamma),
        jit_compile=jit_compile,
    )


def detection_losses(model, images, targets, outputs):
    """``(classification, localization)`` losses of one batch, each normalised by the positive anchors.

    ``targets`` are the padded ``{"boxes", "labels"}`` of :mod:`.data`;
    ``outputs`` the raw ``{"bbox_regression", "cls_logits"}`` of ``model``. Uses
    the losses given to :func:`compile_detector`.
    """
    boxes = tf.cast(targets["boxes"], tf.float32)
    labels = tf.cast(targets["labels"], tf.float32)
    # KerasHub's force-matching (BoxMatcher.force_match_for_each_col) matches anchor 0 to a phantom
    # extra column, which is out of range unless the batch has at least one padding box: add one.
    boxes = tf.pad(boxes, [[0, 0], [0, 1], [0, 0]], constant_values=-1.0)
    labels = tf.pad(labels, [[0, 0], [0, 1]], constant_values=-1.0)
    box_targets, cls_targets = model.label_encoder(images=images, gt_boxes=boxes, gt_classes=labels)
    positive = tf.cast(cls_targets > -1.0, tf.float32)
    normalizer = tf.maximum(tf.reduce_sum(positive), 1.0)
    cls_weights = tf.cast(tf.not_equal(cls_targets, -2.0), tf.float32) / normalizer
    one_hot = tf.one_hot(tf.cast(cls_targets, tf.int32), model.num_classes, dtype=tf.float32)  # -1/-2 -> zeros
    cls_fn, box_fn = model.loss["cls_logits"], model.loss["bbox_regression"]
    cls_loss = cls_fn(one_hot, outputs["cls_logits"], sample_weight=cls_weights)
    box_loss = box_fn(box_targets, outputs["bbox_regression"], sample_weight=positive / normalizer)
    return tf.cast(cls_loss, tf.float32), tf.cast(box_loss, tf.float32)


def regularization_loss(model) -> tf.Tensor:
    losses = [tf.cast(v, tf.float32) for v in model.losses]
    return tf.add_n(losses) if losses else tf.constant(0.0)


# --------------------------------------------------------------------------- switches


_POLICIES = {False: "float32", None: "float32", "float32": "float32", True: "mixed_float16",
             "float16": "mixed_float16", "mixed_float16": "mixed_float16",
             "bfloat16": "mixed_bfloat16", "mixed_bfloat16": "mixed_bfloat16"}


def _policy_name(mixed: bool | str | None) -> str:
    try:
        return _POLICIES[mixed]
    except (KeyError, TypeError):
        raise ValueError(f"mixed precision must be true/false, 'float16' or 'bfloat16', got {mixed!r}") from None


def configure_precision(mixed: bool | str) -> str:
    """Set the global Keras dtype policy; returns the previous policy's name.

    ``True``/``"float16"``: ``mixed_float16`` (GPUs; the optimizer gets loss
    scaling), ``"bfloat16"``: ``mixed_bfloat16`` (CPUs with AVX512-BF16/AMX and
    TPUs, about 1.5-2x faster than float32 on this project's CPU),
    ``False``: ``float32``. Call it *before* building the model and restore the
    returned policy after (or use :func:`precision`).
    """
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(_policy_name(mixed))
    return previous


@contextlib.contextmanager
def precision(mixed: bool | str):
    """Context manager: build (and train) models under a mixed policy (see :func:`configure_precision`)."""
    previous = configure_precision(mixed)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def strategy_scope(name: str | None = "default") -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy by name: ``default``, ``mirrored`` or ``multi_worker_mirrored``.

    Build the model and optimizer under ``with strategy.scope():`` and pass the
    strategy to :func:`train`. ``mirrored`` uses all local GPUs (or the CPU).
    ``multi_worker_mirrored`` reads the cluster from ``TF_CONFIG`` and must be
    created at program start, before any other TensorFlow op runs; every worker
    then runs the same program (see :func:`train` and :func:`is_chief`).
    """
    name = (name or "default").lower()
    if name in ("default", "none", "one_device"):
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name in ("multi_worker_mirrored", "multiworker", "multi_worker"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown distribution strategy {name!r}; use default, mirrored or multi_worker_mirrored")


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process is the chief of ``strategy``'s cluster (always true on one host).

    From the cluster resolver (``TF_CONFIG``): task type ``chief``, or ``worker``
    0 when the cluster has no ``chief`` job. Only the chief should write final
    weights, exports and the MLflow run; :func:`train` already keeps checkpoints
    on the chief.
    """
    resolver = getattr(strategy or tf.distribute.get_strategy(), "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and int(resolver.task_id or 0) == 0 and "chief" not in resolver.cluster_spec().jobs


def _multi_worker(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return False
    spec = resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker")) > 1


def _task_id(strategy) -> int:
    return int(getattr(strategy.cluster_resolver, "task_id", 0) or 0)


def _tf_variable(v):
    return v.value if isinstance(v, keras.Variable) else v  # keras.Variable.value: the tf.Variable it wraps


def _variable_sync(strategy, variables, broadcast: bool) -> Callable[[], None]:
    """A function that gives every replica of ``strategy`` the same value of each variable.

    ``broadcast``: the value of replica 0 (the chief's first device); otherwise the mean over the
    replicas. It is collective: every worker must call it. Traced once, one all-reduce per dtype.
    """
    variables = [_tf_variable(v) for v in variables]
    if not variables or strategy.num_replicas_in_sync == 1:
        return lambda: None
    op = tf.distribute.ReduceOp.SUM if broadcast else tf.distribute.ReduceOp.MEAN
    groups: dict[tf.DType, list[int]] = {}  # collectives reduce floats; integer steps are exact in float64
    for i, v in enumerate(variables):
        groups.setdefault(v.dtype if v.dtype.is_floating else tf.float64, []).append(i)

    def replica_fn():
        ctx = tf.distribute.get_replica_context()
        keep = tf.equal(ctx.replica_id_in_sync_group, 0) if broadcast else tf.constant(True)
        out = []
        for dtype, indices in groups.items():
            flat = tf.concat([tf.reshape(tf.cast(variables[i], dtype), [-1]) for i in indices], 0)
            out.append(ctx.all_reduce(op, tf.where(keep, flat, tf.zeros_like(flat))))
        return out

    @tf.function
    def sync():
        reduced = strategy.experimental_local_results(strategy.run(replica_fn))[0]
        for flat, indices in zip(reduced, groups.values()):
            sizes = [int(np.prod(variables[i].shape)) for i in indices]
            for i, x in zip(indices, tf.split(flat, sizes)):
                variables[i].assign(tf.cast(tf.reshape(x, variables[i].shape), variables[i].dtype))

    def run() -> None:
        with strategy.scope():
            sync()

    return run


def _moving_statistics(model) -> list:
    """BatchNorm moving mean/variance (and renorm statistics): Keras 3 updates them per replica."""
    names = ("moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev")
    return [v for v in model.non_trainable_weights if v.name in names]


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    step: int  # global step reached
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per progress line
    last_checkpoint: str | None = None
    images_per_sec: float = float("nan")  # mean over this call, first (tracing) step excluded
    val_history: list[dict[str, float]] = field(default_factory=list)  # one dict per checkpoint
    start_step: int = 0  # step this call resumed from
    is_chief: bool = True  # False on the other workers of a multi-worker strategy (they keep no checkpoints)


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


_EVAL_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def evaluate_losses(model, dataset, max_batches: int | None = None, jit_compile: bool = False) -> dict[str, float]:
    """Mean losses of ``model`` (inference mode) over ``dataset`` batches ``(images, targets)``.

    Reads at most ``max_batches`` batches (required for an endless dataset).
    """
    if max_batches is None and dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError("the validation dataset repeats forever: pass val_steps / max_batches")
    key = (jit_compile,)
    steps = _EVAL_STEPS.setdefault(model, {})
    if key not in steps:  # one traced function per model, reused at every checkpoint

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def step(images, targets):
            outputs = model(images, training=False)
            return detection_losses(model, images, targets, outputs)

        steps[key] = step
    totals = np.zeros(2)
    n = 0
    for images, targets in dataset:
        if max_batches is not None and n >= max_batches:
            break
        cls, box = steps[key](images, targets)
        totals += [float(cls), float(box)]
        n += 1
    if n == 0:
        raise ValueError("validation dataset is empty")
    cls, box = totals / n
    reg = float(regularization_loss(model))
    return {"loss/classification": cls, "loss/localization": box, "loss/regularization": reg,
            "loss/total": cls + box + reg, "batches": n}


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
    (:func:`is_chief`); the trained weights are the same on every worker.
    """
    if steps < 0 or checkpoint_every <= 0 or log_every <= 0 or keep_checkpoints <= 0:
        raise ValueError("steps must be >= 0 and checkpoint_every, log_every, keep_checkpoints > 0")
    strategy = strategy or tf.distribute.get_strategy()
    if val_ds is not None and val_steps is None and val_ds.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError("val_ds repeats forever: pass val_steps (or make it with training=False)")
    policy = model.dtype_policy.name
    if mixed_precision and policy != _policy_name(mixed_precision):
        raise ValueError(f"mixed_precision={mixed_precision!r} but the model was built with dtype policy {policy!r}; "
                         f"build it after configure_precision({mixed_precision!r}) (or inside `with precision(...)`)")
    if not strategy.extended.variable_created_in_scope(model.trainable_variables[0].value):
        raise ValueError("the model was not built inside strategy.scope() of the strategy passed to train()")

    with strategy.scope():
        if isinstance(optimizer, Mapping):
            optimizer = build_optimizer(optimizer)
        elif optimizer is None:
            optimizer = getattr(model, "optimizer", None)
            if optimizer is None:
                raise ValueError("no optimizer: pass optimizer= (a config dict or instance) or compile the model")
            optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        compile_detector(model, optimizer, focal_alpha=focal_alpha, focal_gamma=focal_gamma,
                         smooth_l1_beta=smooth_l1_beta, jit_compile=jit_compile)
        optimizer = model.optimizer  # a LossScaleOptimizer under mixed_float16
        optimizer.build(model.trainable_variables)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    chief, multi_worker = is_chief(strategy), _multi_worker(strategy)
    checkpoint_dir = Path(checkpoint_dir)
    weights = checkpoint_weights(model)
    ckpt = tf.train.Checkpoint(weights=weights, optimizer=optimizer, step=step_var)
    manager = None  # only the chief keeps checkpoints; other workers write theirs to a temporary folder
    if chief:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        manager = tf.train.CheckpointManager(ckpt, str(checkpoint_dir), max_to_keep=keep_checkpoints)
    result = TrainResult(step=0, last_checkpoint=manager and manager.latest_checkpoint, is_chief=chief)
    if resume and manager is not None and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        log.info("resumed from %s at step %d", manager.latest_checkpoint, int(step_var.numpy()))
    if multi_worker:  # every worker continues from the chief's state (restored or freshly initialised)
        _variable_sync(strategy, [*weights.values(), *optimizer.variables, step_var], broadcast=True)()
        log.info("worker %d of the cluster (%s) starts at step %d", _task_id(strategy),
                 "chief" if chief else "not chief", int(step_var.numpy()))
    start = int(step_var.numpy())
    result.step = result.start_step = start
    if start >= steps:
        log.info("already at step %d >= %d, nothing to train", start, steps)
        return result

    replicas = strategy.num_replicas_in_sync
    variables = model.trainable_variables

    def replica_step(images, targets):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            cls, box = detection_losses(model, images, targets, outputs)
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
        return (strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, batch, axis=None))

    shard_policy = tf.data.experimental.AutoShardPolicy
    if multi_worker and train_ds.options().experimental_distribute.auto_shard_policy == shard_policy.AUTO:
        # every worker reads all records and keeps its share of the elements (FILE sharding needs at least
        # as many files as workers); set another policy on the dataset's options to override
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = shard_policy.DATA
        train_ds = train_ds.with_options(options)
    data = strategy.experimental_distribute_dataset(train_ds) if replicas > 1 or _is_distributed(strategy) else train_ds
    # Keras 3 updates the BatchNorm statistics of each replica from its own batches: averaged at checkpoints
    sync_statistics = _variable_sync(strategy, _moving_statistics(model), broadcast=False)

    def save(step: int) -> str | None:
        if manager is not None:
            return manager.save(checkpoint_number=step)
        # not the chief: save too (saving may read variables collectively), then throw it away
        temp = checkpoint_dir / f"workertemp_{_task_id(strategy)}"
        try:
            ckpt.write(str(temp / f"ckpt-{step}"))
        finally:
            if temp.exists():  # written just now by this worker: recorded as the project's, then removed
                files.record_written(temp)
                files.remove_owned_tree(temp)
        return None

    iterator = iter(data)
    step = start
    window_images, window_start = 0, None
    run_images, run_start = 0, None
    log.info("training %s from step %d to %d (%d replica(s), policy %s, jit %s)", model.name, start, steps,
             replicas, model.dtype_policy.name, jit_compile)
    try:
        while step < steps:
            try:
                images, targets = next(iterator)
            except StopIteration:
                iterator = iter(data)
                try:
                    images, targets = next(iterator)
                except StopIteration:
                    raise ValueError("the training dataset yields no batches") from None
            losses, batch = train_step(images, targets)
            losses = losses.numpy()
            step += 1
            step_var.assign(step)
            if not np.all(np.isfinite(losses)):
                names = ", ".join(f"{k.split('/')[1]}={v}" for k, v in zip(LOSS_KEYS, losses))
                raise FloatingPointError(
                    f"loss is not finite at step {step} ({names}); lower the learning rate, check the inputs or "
                    f"resume from the last good checkpoint {result.last_checkpoint}"
                )
            now = time.perf_counter()
            if run_start is None:  # the first step includes tracing: time from its end
                run_start = window_start = now
            else:
                run_images += int(batch)
                window_images += int(batch)
            if step % log_every == 0 or step == steps:
                elapsed = now - window_start
                ips = window_images / elapsed if window_images and elapsed > 0 else float("nan")
                run_elapsed = now - run_start
                done = step - start - 1
                eta = (steps - step) * run_elapsed / done if done > 0 else float("nan")
                metrics = dict(zip(LOSS_KEYS, (float(v) for v in losses)))
                metrics["learning_rate"] = current_learning_rate(optimizer)
                metrics["images_per_sec"] = ips
                log.info("step %d/%d  loss %.4f (cls %.4f, loc %.4f, reg %.4f)  lr %.3g  %.1f img/s  ETA %s",
                         step, steps, metrics["loss/total"], metrics["loss/classification"],
                         metrics["loss/localization"], metrics["loss/regularization"], metrics["learning_rate"],
                         ips, _format_eta(eta))
                result.history.append({"step": step, **metrics})
                window_images, window_start = 0, now
                if on_log is not None:
                    on_log(metrics, step)
            if step % checkpoint_every == 0 or step == steps:
                sync_statistics()
                result.last_checkpoint = save(step)
                val_metrics = {}
                if val_ds is not None:  # each worker on its own (same weights, same numbers): no collectives
                    val_metrics = evaluate_losses(model, val_ds, val_steps, jit_compile=False)
                    log.info("step %d validation: loss %.4f (cls %.4f, loc %.4f)", step, val_metrics["loss/total"],
                             val_metrics["loss/classification"], val_metrics["loss/localization"])
                    result.val_history.append({"step": step, **val_metrics})
                log.info("checkpoint %s", result.last_checkpoint)
                if on_checkpoint is not None:
                    on_checkpoint(step, result.last_checkpoint, val_metrics)
                window_start = time.perf_counter()  # validation time is not training time
                run_start += window_start - now
    except KeyboardInterrupt:
        # no collectives here: another worker may not have been interrupted (its next collective then fails)
        if manager is not None and step > start and (
                manager.latest_checkpoint is None or not manager.latest_checkpoint.endswith(f"-{step}")):
            result.last_checkpoint = manager.save(checkpoint_number=step)
            log.warning("interrupted at step %d; saved %s, call train() again to resume", step, result.last_checkpoint)
        raise
    finally:
        result.step = step
        if run_start is not None and run_images:
            result.images_per_sec = run_images / max(time.perf_counter() - run_start, 1e-9)
    return result


def _is_distributed(strategy) -> bool:
    return not isinstance(strategy, type(tf.distribute.get_strategy()))


# --------------------------------------------------------------------------- export


def export_model(model, out_dir: str | Path, image_size: int | None = None) -> dict[str, str]:
    """Save ``model.keras`` and a TF SavedModel ``saved_model/`` under ``out_dir``.

    The SavedModel's ``serving_default`` takes uint8 images ``[B, H, W, 3]`` of
    any size, resizes them to ``image_size`` (default: the model's input size)
    and returns the OD API's outputs: ``detection_boxes`` (normalised ``[ymin,
    xmin, ymax, xmax]``, -1 padding), ``detection_scores``,
    ``detection_classes`` (label ids 1/2/4, -1 padding) and ``num_detections``.
    Returns the two paths.
    """
    size = image_size or model.input_shape[1]
    if not size:
        raise ValueError("the model has no fixed input size: pass image_size")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keras_path = out_dir / "model.keras"
    model.save(keras_path)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve(images):
        x = tf.image.resize(tf.cast(images, tf.float32), [size, size])
        pred = model.decode_predictions(model(x, training=False), x)
        valid = pred["labels"] >= 0
        boxes = tf.clip_by_value(tf.cast(pred["boxes"], tf.float32) / float(size), 0.0, 1.0)
        return {
            "detection_boxes": tf.where(valid[..., None], boxes, -1.0),
            "detection_scores": tf.cast(pred["confidence"], tf.float32),
            "detection_classes": indices_to_label_ids(pred["labels"]),
            "num_detections": tf.cast(pred["num_detections"], tf.int32),
        }

    saved_path = out_dir / "saved_model"
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=serve)
    archive.write_out(str(saved_path), verbose=False)
    return {"keras": str(keras_path), "saved_model": str(saved_path)}


class ExportedDetector:
    """A loaded SavedModel detector: ``detector(images_uint8)`` -> dict of numpy arrays."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._module = tf.saved_model.load(self.path)
        self._fn = self._module.signatures["serving_default"]

    def __call__(self, images) -> dict[str, np.ndarray]:
        images = tf.convert_to_tensor(images)
        if images.dtype != tf.uint8:
            raise TypeError(f"exported detectors take uint8 images, got {images.dtype.name}")
        if images.shape.rank == 3:
            images = images[None]
        return {k: v.numpy() for k, v in self._fn(images=images).items()}


def load_exported(path: str | Path):
    """Load what :func:`export_model` wrote: a SavedModel dir gives an :class:`ExportedDetector`,
    a ``.keras`` file (or the export dir's ``model.keras``) gives the Keras model."""
    path = Path(path)
    if path.is_dir() and (path / "saved_model.pb").exists():
        return ExportedDetector(path)
    if path.is_dir() and (path / "saved_model" / "saved_model.pb").exists():
        return ExportedDetector(path / "saved_model")
    keras_file = path if path.suffix == ".keras" else path / "model.keras"
    if not keras_file.is_file():
        raise FileNotFoundError(f"no SavedModel or .keras model at {path}")
    return keras.saving.load_model(keras_file, compile=False)
