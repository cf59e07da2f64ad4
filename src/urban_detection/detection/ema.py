"""An exponential moving average of a model's weights: the weights that are judged, exported and evaluated.

After every optimizer step each float weight ``w`` (trainable weights and BatchNorm statistics)
updates its average ``a``::

    a = d * a + (1 - d) * w,    d = decay * (1 - exp(-updates / ramp_steps))

so the average follows the weights closely at first (``d`` near 0) and smooths over about
``1 / (1 - decay)`` steps once ``updates`` is well past ``ramp_steps`` (YOLOv5/v8's ``ModelEMA``
uses the same ramp with ``ramp_steps`` 2000 and decay 0.9999 for schedules of 100k+ steps).
Training keeps stepping the raw weights; :meth:`WeightAverage.swapped` puts the average in the
model for a while (to judge a checkpoint), :meth:`WeightAverage.finalize` for good (to export).
The averages are checkpointed beside the weights, so a resumed run continues them.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import tensorflow as tf


def check_ema(decay, ramp_steps) -> None:
    """``ValueError`` unless ``decay`` is in (0, 1) and ``ramp_steps`` >= 0 (``decay`` None: no average)."""
    if decay is None:
        return
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < float(decay) < 1.0:
        raise ValueError(f"train.ema_decay must be a number in (0, 1) (or null: no average), got {decay!r}")
    if isinstance(ramp_steps, bool) or not isinstance(ramp_steps, (int, float)) or ramp_steps < 0:
        raise ValueError(f"train.ema_ramp_steps must be a number >= 0, got {ramp_steps!r}")


class WeightAverage:
    """The average of ``weights`` (``{path: variable}``; float ones only), see the module doc.

    Create it in the distribution strategy's scope (the averages are variables of that strategy).
    """

    def __init__(self, weights: Mapping[str, tf.Variable], decay: float, ramp_steps: float = 0.0):
        check_ema(decay, ramp_steps)
        self.decay, self.ramp_steps = float(decay), float(ramp_steps)
        self.weights = {k: v for k, v in weights.items() if tf.as_dtype(v.dtype).is_floating}
        self.averages = {k: tf.Variable(tf.identity(v), trainable=False, name=f"ema/{k.replace(':', '_')}")
                         for k, v in self.weights.items()}

    def __repr__(self) -> str:
        return f"WeightAverage({len(self.averages)} weights, decay={self.decay}, ramp_steps={self.ramp_steps:g})"

    def decay_at(self, updates) -> tf.Tensor:
        """The factor ``d`` after ``updates`` optimizer steps."""
        updates = tf.cast(updates, tf.float32)
        if self.ramp_steps <= 0:
            return tf.constant(self.decay)
        return self.decay * (1.0 - tf.exp(-updates / self.ramp_steps))

    def update(self, updates) -> None:
        """One step of every average (in a ``tf.function``, outside ``strategy.run``)."""
        d = self.decay_at(updates)
        for key, avg in self.averages.items():
            w = tf.cast(self.weights[key], avg.dtype)
            avg.assign(tf.cast(d, avg.dtype) * avg + tf.cast(1.0 - d, avg.dtype) * w)

    def _exchange(self) -> None:
        for key, avg in self.averages.items():
            raw = tf.identity(self.weights[key])
            self.weights[key].assign(tf.cast(avg, self.weights[key].dtype))
            avg.assign(tf.cast(raw, avg.dtype))

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block and its training weights again after it."""
        self._exchange()
        try:
            yield
        finally:
            self._exchange()

    def finalize(self) -> None:
        """Give the model the averaged weights for good (training is over)."""
        for key, avg in self.averages.items():
            self.weights[key].assign(tf.cast(avg, self.weights[key].dtype))

