"""Export: a trained detector as ``model.keras`` and a TF SavedModel with the OD API's outputs, and loading them back."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from urban_detection.detection.model import indices_to_label_ids


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
        return od_api_outputs(model, model(x, training=False), x)

    saved_path = out_dir / "saved_model"
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=serve)
    archive.write_out(str(saved_path), verbose=False)
    return {"keras": str(keras_path), "saved_model": str(saved_path)}


def od_api_outputs(model, head_outputs, images) -> dict:
    """The Object Detection API's outputs from the head's raw outputs (``bbox_regression``,
    ``cls_logits``) on ``images`` (the model's square input): anchors decoded and NMS applied
    by the model's own decoder, boxes normalised, label-map ids. The SavedModel's serving
    function and the TFLite models' host-side post-processing share it."""
    size = float(images.shape[1])
    pred = model.decode_predictions(head_outputs, images)
    valid = pred["labels"] >= 0
    boxes = tf.clip_by_value(tf.cast(pred["boxes"], tf.float32) / size, 0.0, 1.0)
    return {
        "detection_boxes": tf.where(valid[..., None], boxes, -1.0),
        "detection_scores": tf.cast(pred["confidence"], tf.float32),
        "detection_classes": indices_to_label_ids(pred["labels"]),
        "num_detections": tf.cast(pred["num_detections"], tf.int32),
    }


def uint8_batch(images, who: str = "detectors") -> tf.Tensor:
    """``images`` (one HxWx3 image or a batch) as a uint8 batch tensor; ``TypeError`` for other dtypes."""
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8:
        raise TypeError(f"{who} take uint8 images, got {images.dtype.name}")
    return images[None] if images.shape.rank == 3 else images


class ExportedDetector:
    """A loaded SavedModel detector: ``detector(images_uint8)`` -> dict of numpy arrays."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._module = tf.saved_model.load(self.path)
        self._fn = self._module.signatures["serving_default"]

    def __repr__(self) -> str:
        info = getattr(self, "info", None) or {}
        made = (f"{info.get('experiment')}: {info.get('arch')} at {info.get('image_size')} px, step {info.get('step')}, "
                f"fingerprint {str(info.get('fingerprint'))[:12]}, " if info else "")
        return f"ExportedDetector({made}SavedModel {self.path})"

    def predict(self, images, score_threshold: float | None = None, batch_size: int = 8):
        """The same API as :meth:`TrainedDetector.predict <urban_detection.detection.trained.TrainedDetector.predict>`:
        uint8 images of any size in, :class:`~urban_detection.detection.detections.Detections` out."""
        from urban_detection.detection.detections import DEFAULT_SCORE_THRESHOLD, predict_images

        threshold = DEFAULT_SCORE_THRESHOLD if score_threshold is None else float(score_threshold)
        return predict_images(self, images, score_threshold=threshold, batch_size=batch_size)

    def __call__(self, images) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self._fn(images=uint8_batch(images, "exported detectors")).items()}


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
