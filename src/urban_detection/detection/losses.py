"""Detection losses: focal and smooth-L1 losses, their compile step, per-batch and validation losses.

Sigmoid focal loss (alpha 0.25, gamma 2) summed over classes and a smooth-L1 box
loss summed over the four box deltas, both normalised by the number of positive
anchors, plus the L2 penalty of the kernels ("regularization").
"""
from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

_PACKAGE = "urban_detection"  # the registered Keras names: saved models refer to them
LOSS_KEYS = ("loss/classification", "loss/localization", "loss/regularization", "loss/total")


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
    """``model.compile`` with the detection losses (works with ``model.fit`` as well as ``train.train``)."""
    model.compile(
        optimizer=optimizer,
        box_loss=SmoothL1Loss(beta=smooth_l1_beta),
        classification_loss=FocalLoss(alpha=focal_alpha, gamma=focal_gamma),
        jit_compile=jit_compile,
    )


def detection_losses(model, images, targets, outputs, trim_padding: bool = True, frame_weights=None):
    """``(classification, localization)`` losses of one batch, each normalised by the positive anchors.

    ``targets`` are the padded ``{"boxes", "labels"}`` of :mod:`.data`;
    ``outputs`` the raw ``{"bbox_regression", "cls_logits"}`` of ``model``. Uses
    the losses given to :func:`compile_detector`. ``trim_padding`` cuts the padding after the
    batch's last real box before the anchors are matched: the same targets, at a cost that follows
    the boxes present rather than ``max_boxes`` (3x cheaper matching at 100 slots and about 20 boxes
    a frame). The cut is data-dependent, so XLA (``jit_compile``), which needs static shapes, keeps it off,
    and so does a batch of one frame (KerasHub's matcher then needs a static number of boxes).
    ``frame_weights`` ``[B]``: 0 leaves a frame out (a blank frame padding a short batch), 1 counts it.
    """
    boxes = tf.cast(targets["boxes"], tf.float32)
    labels = tf.cast(targets["labels"], tf.float32)
    if trim_padding and labels.shape[0] != 1:
        slots = tf.range(1, tf.shape(labels)[1] + 1)[None, :]
        used = tf.reduce_max(tf.where(labels >= 0, slots, tf.zeros_like(slots)))
        boxes, labels = boxes[:, :used], labels[:, :used]
    # KerasHub's force-matching (BoxMatcher.force_match_for_each_col) matches anchor 0 to a phantom
    # extra column, which is out of range unless the batch has at least one padding box: add one.
    boxes = tf.pad(boxes, [[0, 0], [0, 1], [0, 0]], constant_values=-1.0)
    labels = tf.pad(labels, [[0, 0], [0, 1]], constant_values=-1.0)
    box_targets, cls_targets = model.label_encoder(images=images, gt_boxes=boxes, gt_classes=labels)
    positive = tf.cast(cls_targets > -1.0, tf.float32)
    counted = tf.cast(tf.not_equal(cls_targets, -2.0), tf.float32)
    if frame_weights is not None:
        weights = tf.cast(frame_weights, tf.float32)[:, None]
        positive, counted = positive * weights, counted * weights
    normalizer = tf.maximum(tf.reduce_sum(positive), 1.0)
    cls_weights = counted / normalizer
    one_hot = tf.one_hot(tf.cast(cls_targets, tf.int32), model.num_classes, dtype=tf.float32)  # -1/-2 -> zeros
    cls_fn, box_fn = model.loss["cls_logits"], model.loss["bbox_regression"]
    cls_loss = cls_fn(one_hot, outputs["cls_logits"], sample_weight=cls_weights)
    box_loss = box_fn(box_targets, outputs["bbox_regression"], sample_weight=positive / normalizer)
    return tf.cast(cls_loss, tf.float32), tf.cast(box_loss, tf.float32)


def regularization_loss(model) -> tf.Tensor:
    """The sum of the model's weight penalties (0 without any)."""
    losses = [tf.cast(v, tf.float32) for v in model.losses]
    return tf.add_n(losses) if losses else tf.constant(0.0)


_EVAL_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def loss_settings(model) -> tuple:
    """The settings of the losses ``model`` is compiled with: a traced step holds the loss objects of its
    trace, so a cache of traced steps is keyed by them (compiled again with others: traced again)."""
    cls_fn, box_fn = model.loss["cls_logits"], model.loss["bbox_regression"]
    return (type(cls_fn).__name__, getattr(cls_fn, "alpha", None), getattr(cls_fn, "gamma", None),
            type(box_fn).__name__, getattr(box_fn, "beta", None))


def evaluate_losses(model, dataset, max_batches: int | None = None, jit_compile: bool = False) -> dict[str, float]:
    """Mean losses of ``model`` (inference mode) over ``dataset`` batches ``(images, targets)``.

    Reads at most ``max_batches`` batches (required for an endless dataset).
    """
    if max_batches is None and dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError("the validation dataset repeats forever: pass val_steps / max_batches")
    key = (jit_compile, loss_settings(model))
    steps = _EVAL_STEPS.setdefault(model, {})
    if key not in steps:  # one traced function per model and losses, reused at every checkpoint

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def step(images, targets):
            outputs = model(images, training=False)
            return detection_losses(model, images, targets, outputs, trim_padding=not jit_compile)

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
