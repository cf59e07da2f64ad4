"""The detector's conventions at its boundary: classes, label ids, box format, input scale.

* The model takes float32 RGB images in ``[0, 255]`` of shape ``[B, S, S, 3]``;
  ImageNet normalisation (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`) happens
  inside the backbone, so exported models and :mod:`urban_detection.detection.data`
  never normalise.
* Inside the model boxes are **pixel** ``yxyx`` (:data:`BOX_FORMAT`) in the input
  frame and classes are contiguous indices ``0..num_classes-1``. The project's
  label ids (1 vehicle, 2 pedestrian, 4 cyclist) are converted with
  :data:`LABEL_TO_INDEX` / :data:`INDEX_TO_LABEL` (:func:`label_ids_to_indices`,
  :func:`indices_to_label_ids`); :func:`~.postprocess.postprocess_detections`
  returns normalised ``[ymin, xmin, ymax, xmax]`` boxes and label ids.
* The custom Keras classes are registered under the package :data:`KERAS_PACKAGE`
  (``urban_detection>ClassName``), so saved models load after
  ``import urban_detection.detection.model``.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

LABEL_TO_INDEX: dict[int, int] = {1: 0, 2: 1, 4: 2}
INDEX_TO_LABEL: dict[int, int] = {v: k for k, v in LABEL_TO_INDEX.items()}
CLASS_NAMES: tuple[str, ...] = ("vehicle", "pedestrian", "cyclist")
BOX_FORMAT = "yxyx"  # pixel coordinates of the model input
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KERAS_PACKAGE = "urban_detection"  # register_keras_serializable package of the custom classes


def label_ids_to_indices(labels):
    """Map label ids (1, 2, 4) to model indices (0, 1, 2); unknown ids give -1. numpy or tf."""
    if tf.is_tensor(labels):
        table = tf.constant([LABEL_TO_INDEX.get(i, -1) for i in range(max(LABEL_TO_INDEX) + 1)], tf.int32)
        labels = tf.cast(labels, tf.int32)
        ok = (labels >= 0) & (labels <= max(LABEL_TO_INDEX))
        return tf.where(ok, tf.gather(table, tf.clip_by_value(labels, 0, max(LABEL_TO_INDEX))), -1)
    labels = np.asarray(labels)
    return np.asarray([LABEL_TO_INDEX.get(int(i), -1) for i in labels.reshape(-1)], np.int32).reshape(labels.shape)


def indices_to_label_ids(indices):
    """Map model indices (0, 1, 2) back to label ids (1, 2, 4); negatives stay -1. numpy or tf."""
    table = [INDEX_TO_LABEL[i] for i in range(len(INDEX_TO_LABEL))]
    if tf.is_tensor(indices):
        idx = tf.cast(indices, tf.int32)
        ok = (idx >= 0) & (idx < len(table))
        return tf.where(ok, tf.gather(tf.constant(table, tf.int32), tf.clip_by_value(idx, 0, len(table) - 1)), -1)
    idx = np.asarray(indices, np.int64)
    out = np.full(idx.shape, -1, np.int32)
    ok = (idx >= 0) & (idx < len(table))
    out[ok] = np.asarray(table, np.int32)[idx[ok]]
    return out
