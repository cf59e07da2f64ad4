"""Distribution: ``tf.distribute`` strategies by name, the chief, and keeping replicas in step.

Under ``MultiWorkerMirroredStrategy`` every worker runs the same program. The
training loop uses these helpers so that the workers stay in lock step: the
chief's values are broadcast to every worker (:func:`variable_sync` with
``broadcast=True``), and BatchNorm moving statistics, which Keras 3 updates per
replica, are averaged over the replicas (:func:`moving_statistics`).
"""
from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf


def strategy_scope(name: str | None = "default") -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy by name: ``default``, ``mirrored`` or ``multi_worker_mirrored``.

    Build the model and optimizer under ``with strategy.scope():`` and pass the
    strategy to ``train.train``. ``mirrored`` uses all local GPUs (or the CPU).
    ``multi_worker_mirrored`` reads the cluster from ``TF_CONFIG`` and must be
    created at program start, before any other TensorFlow op runs; every worker
    then runs the same program (see ``train.train`` and :func:`is_chief`).
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
    weights, exports and the MLflow run; ``train.train`` already keeps checkpoints
    on the chief.
    """
    resolver = getattr(strategy or tf.distribute.get_strategy(), "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and int(resolver.task_id or 0) == 0 and "chief" not in resolver.cluster_spec().jobs


def is_multi_worker(strategy) -> bool:
    """Whether ``strategy`` spans more than one worker process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return False
    spec = resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker")) > 1


def task_id(strategy) -> int:
    """This worker's index in its cluster (0 on one host)."""
    return int(getattr(strategy.cluster_resolver, "task_id", 0) or 0)


def is_distributed(strategy) -> bool:
    """Whether ``strategy`` is another than the default (no-op) strategy."""
    return not isinstance(strategy, type(tf.distribute.get_strategy()))


def distribute_dataset(strategy, dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` as the loop iterates it under ``strategy``.

    On several workers every worker reads all records and keeps its share of the
    elements (``DATA`` sharding; ``FILE`` sharding needs at least as many files as
    workers), unless the dataset's options set another policy.
    """
    shard_policy = tf.data.experimental.AutoShardPolicy
    if is_multi_worker(strategy) and dataset.options().experimental_distribute.auto_shard_policy == shard_policy.AUTO:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = shard_policy.DATA
        dataset = dataset.with_options(options)
    if strategy.num_replicas_in_sync > 1 or is_distributed(strategy):
        return strategy.experimental_distribute_dataset(dataset)
    return dataset


def _tf_variable(v):
    return v.value if isinstance(v, keras.Variable) else v  # keras.Variable.value: the tf.Variable it wraps


def variable_sync(strategy, variables, broadcast: bool) -> Callable[[], None]:
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


def moving_statistics(model) -> list:
    """BatchNorm moving mean/variance (and renorm statistics): Keras 3 updates them per replica."""
    names = ("moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev")
    return [v for v in model.non_trainable_weights if v.name in names]
