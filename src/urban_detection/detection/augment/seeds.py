"""Stateless random draws for the augmentation ops, each from a per-op seed.

An op turns its ``seed`` argument into a shape-[2] tensor with :func:`as_seed` and takes its
k-th random value from ``sub_seed(seed, k)``, so every draw is independent and the whole op
is deterministic for a given seed.
"""

from __future__ import annotations

import tensorflow as tf

_INT32_MAX = 2**31 - 1


def as_seed(seed) -> tf.Tensor:
    """A shape-[2] seed tensor for stateless ops (fresh from tf.random when None)."""
    if seed is None:
        return tf.random.uniform([2], minval=0, maxval=_INT32_MAX, dtype=tf.int32)
    if isinstance(seed, int):
        return tf.constant([seed, 0], dtype=tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.zeros_like(seed)])
    return tf.reshape(seed, [2])


def sub_seed(seed: tf.Tensor, k: int) -> tf.Tensor:
    """An independent seed for the k-th random draw of an op."""
    return tf.random.experimental.stateless_fold_in(seed, k)


def uniform(seed, k, minval=0.0, maxval=1.0, shape=()):
    """Float32 uniform in [minval, maxval) of ``shape`` (a scalar by default)."""
    return tf.random.stateless_uniform(
        list(shape), seed=sub_seed(seed, k), minval=minval, maxval=maxval, dtype=tf.float32
    )


def randint(seed, k, minval, maxval):
    """Scalar int32 uniform in [minval, maxval) (maxval must exceed minval)."""
    return tf.random.stateless_uniform(
        [], seed=sub_seed(seed, k), minval=minval, maxval=maxval, dtype=tf.int32
    )


def coin(seed, k, probability: float) -> tf.Tensor:
    """True with the given probability (never for 0, always for 1)."""
    return uniform(seed, k) < float(probability)
