"""Per-class non-maximum suppression, the detector's prediction decoder (:class:`MultiClassNMS`)."""
from __future__ import annotations

import keras
import tensorflow as tf

from urban_detection.detection.model.conventions import BOX_FORMAT, KERAS_PACKAGE


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class MultiClassNMS(keras.layers.Layer):
    """Per-class NMS as the OD API's ``batch_multiclass_non_max_suppression``.

    Same call signature and outputs as ``keras_hub.layers.NonMaxSuppression``
    (``boxes``, ``confidence``, ``labels``, ``num_detections``; invalid slots are
    -1), but suppression is done per class (KerasHub's is class-agnostic), boxes
    are clipped to the image and the top ``pre_nms_top_k`` scores per class are
    kept before NMS. TensorFlow backend only (uses ``tf.image``).
    """

    def __init__(
        self,
        bounding_box_format=BOX_FORMAT,
        from_logits=True,
        iou_threshold=0.6,
        confidence_threshold=1e-8,
        max_detections=100,
        max_detections_per_class=100,
        pre_nms_top_k=1000,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if bounding_box_format not in ("yxyx", "rel_yxyx"):
            raise ValueError(f"MultiClassNMS supports yxyx/rel_yxyx boxes, got {bounding_box_format!r}")
        self.bounding_box_format = bounding_box_format
        self.from_logits = from_logits
        self.iou_threshold = iou_threshold
        self.confidence_threshold = confidence_threshold
        self.max_detections = max_detections
        self.max_detections_per_class = max_detections_per_class
        self.pre_nms_top_k = pre_nms_top_k
        self.built = True

    def call(self, box_prediction, class_prediction, images=None):
        boxes = tf.cast(box_prediction, tf.float32)
        scores = tf.cast(class_prediction, tf.float32)
        if self.from_logits:
            scores = tf.sigmoid(scores)
        if self.bounding_box_format == "yxyx" and images is not None:
            shape = tf.cast(tf.shape(images)[1:3], tf.float32)
            limit = tf.concat([shape, shape], 0)
        else:
            limit = tf.ones([4], tf.float32)
        boxes = tf.clip_by_value(boxes, 0.0, limit) / limit  # NMS in [0, 1] units
        num_anchors = tf.shape(scores)[1]
        k = tf.minimum(self.pre_nms_top_k, num_anchors)
        # [B, C, k] best anchors per class, then boxes [B, C*k, 1, 4] and scores [B, C*k, C].
        top_scores, top_idx = tf.math.top_k(tf.transpose(scores, [0, 2, 1]), k=k, sorted=False)
        num_classes = tf.shape(scores)[2]
        top_boxes = tf.gather(boxes, top_idx, batch_dims=1)  # [B, C, k, 4]
        onehot = tf.one_hot(tf.range(num_classes), num_classes)  # [C, C]
        cand_scores = top_scores[..., None] * onehot[None, :, None, :]  # [B, C, k, C]
        batch = tf.shape(scores)[0]
        cand_boxes = tf.reshape(top_boxes, [batch, -1, 1, 4])
        cand_scores = tf.reshape(cand_scores, [batch, -1, num_classes])
        nmsed_boxes, nmsed_scores, nmsed_classes, valid = tf.image.combined_non_max_suppression(
            cand_boxes,
            cand_scores,
            max_output_size_per_class=self.max_detections_per_class,
            max_total_size=self.max_detections,
            iou_threshold=self.iou_threshold,
            score_threshold=self.confidence_threshold,
            pad_per_class=False,
            clip_boxes=False,
        )
        nmsed_boxes = nmsed_boxes * limit
        mask = tf.range(self.max_detections)[None, :] < valid[:, None]
        return {
            "boxes": tf.where(mask[..., None], nmsed_boxes, -1.0),
            "confidence": tf.where(mask, nmsed_scores, -1.0),
            "labels": tf.where(mask, tf.cast(nmsed_classes, tf.int32), -1),
            "num_detections": valid,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            bounding_box_format=self.bounding_box_format,
            from_logits=self.from_logits,
            iou_threshold=self.iou_threshold,
            confidence_threshold=self.confidence_threshold,
            max_detections=self.max_detections,
            max_detections_per_class=self.max_detections_per_class,
            pre_nms_top_k=self.pre_nms_top_k,
        )
        return config
