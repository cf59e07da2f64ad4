"""Prediction: a trained detector loaded and run over a split's frames, as detection records and losses.

The flow for one split::

    gt_frames, det_frames = predict_split(model, paths, image_size, batch_size)

or, for the evaluation, the detections and the training losses of the same frames from one forward pass::

    gt_frames, det_frames, losses = predict_split_and_losses(model, paths, image_size, batch_size)

Per-frame records follow :mod:`.coco`: ground truth ``{image_id, source_id, path,
height, width, boxes, labels}``, detections ``{image_id, source_id, height, width,
boxes, labels, scores}`` with normalised ``[ymin, xmin, ymax, xmax]`` boxes and
label-map ids (1 vehicle, 2 pedestrian, 4 cyclist). Image ids are ``1..N`` in the
order the frames are read (files in the order given, records in file order), so
the same files always give the same ids. :mod:`.evaluate` scores them.
"""
from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)


def load_trained_model(
    arch: str,
    image_size: int,
    weights_file: str | Path | None = None,
    checkpoint: str | None = None,
    overrides: Mapping[str, Any] | None = None,
):
    """Build ``arch`` at ``image_size`` (float32) and load trained weights into it.

    ``weights_file`` (a complete ``.weights.h5`` / ``.keras`` file, e.g. the train
    pipeline's ``final.weights.h5``) is preferred; otherwise the tf.train
    ``checkpoint`` prefix (which holds every weight by path) is restored.
    """
    from urban_detection.detection.model import build_detector, load_initial_weights

    model = build_detector(arch, image_size=int(image_size), **dict(overrides or {}))
    if weights_file is not None:
        load_initial_weights(model, str(weights_file))
    elif checkpoint is not None:
        load_initial_weights(model, checkpoint)
    else:
        raise ValueError("load_trained_model needs weights_file or checkpoint")
    return model


def is_keras_model(model: Any) -> bool:
    """Whether ``model`` is a Keras detector (else an exported one, called on uint8 images)."""
    return hasattr(model, "predict_on_batch")


def detect_batch(model: Any, images: Any, image_size: int | None = None,
                 pad_to: int | None = None) -> list[dict[str, np.ndarray]]:
    """Detections of one batch ``[B, H, W, 3]`` (uint8, or float in [0, 255]) in project conventions.

    ``model`` is a Keras detector (images are resized to its ``image_size`` input when
    needed) or an exported detector, i.e. a callable on uint8 images returning the
    Object Detection API outputs (``detection_boxes``, ``detection_scores``,
    ``detection_classes``, ``num_detections``) such as
    :class:`urban_detection.detection.export.ExportedDetector`. Each result has
    ``boxes`` (N, 4) normalised yxyx, ``scores`` (N,) and ``labels`` (N,) label ids,
    best first. ``pad_to`` pads a short (last) batch with blank images for a Keras
    model so that its predict function is not traced again for a new batch shape.
    """
    if is_keras_model(model):
        from urban_detection.detection.model import detect

        x = tf.cast(tf.convert_to_tensor(images), tf.float32)
        size = image_size or model.input_shape[1]
        if size and tuple(x.shape[1:3]) != (size, size):
            x = tf.clip_by_value(tf.image.resize(x, [size, size]), 0.0, 255.0)
        n = int(x.shape[0])
        if pad_to and n < pad_to:
            x = tf.concat([x, tf.zeros([pad_to - n, *x.shape[1:]], x.dtype)], axis=0)
        return detect(model, x)[:n]
    x = tf.convert_to_tensor(images)
    if x.dtype != tf.uint8:
        x = tf.cast(tf.clip_by_value(tf.round(tf.cast(x, tf.float32)), 0.0, 255.0), tf.uint8)
    out = model(x)
    return od_api_to_records(out)


def od_api_to_records(outputs: Mapping[str, Any]) -> list[dict[str, np.ndarray]]:
    """Object Detection API style outputs (padded batch arrays) to per-image records."""
    from urban_detection.detection.model import split_detections

    return split_detections(outputs["detection_boxes"], outputs["detection_scores"],
                            outputs["detection_classes"], outputs["num_detections"])


def predict_split(
    model: Any,
    tfrecord_paths: str | Path | Sequence[str | Path],
    image_size: int,
    batch_size: int,
    max_frames: int | None = None,
    progress_every_s: float = 10.0,
) -> tuple[list[dict], list[dict]]:
    """Run ``model`` over every frame of ``tfrecord_paths``; return ``(gt_frames, det_frames)``.

    Frames are resized to ``image_size`` squared for the model (as in training);
    boxes come back normalised, so they apply to the original frame. Ground truth is
    taken from the records unchanged (clipped to [0, 1]); unknown labels are left for
    :func:`~.coco.to_coco_ground_truth` to count. Records that do not parse are
    skipped with a warning by :func:`~.data.make_inference_dataset`. ``max_frames``
    stops early (for quick checks). Progress (frames, frames/s) is logged.
    """
    gt_frames, det_frames, _ = _predict(model, tfrecord_paths, image_size, batch_size, max_frames, progress_every_s)
    return gt_frames, det_frames


def predict_split_and_losses(model: Any, tfrecord_paths: str | Path | Sequence[str | Path], image_size: int,
                             batch_size: int, max_frames: int | None = None, progress_every_s: float = 10.0,
                             **loss_kwargs) -> tuple[list[dict], list[dict], dict]:
    """:func:`predict_split` of a Keras detector and the training losses of the same frames
    (:func:`evaluation_losses`' keys), from one forward pass per batch: its raw outputs are both decoded
    into the detections and scored against the frames' ground truth, cleaned as for training
    (:func:`~.data.clean_batch_targets`). The losses are the mean over batches of each batch's losses, as
    in training's validation; a short last batch is padded with blank frames that do not count.
    ``loss_kwargs``: ``focal_alpha``, ``focal_gamma``, ``smooth_l1_beta`` of the training. No readable
    frame: no records and NaN losses (the caller says the split was not evaluated)."""
    import keras

    from urban_detection.detection.losses import compile_detector, regularization_loss

    compile_detector(model, keras.optimizers.SGD(learning_rate=0.0), **loss_kwargs)  # the training losses
    gt_frames, det_frames, sums = _predict(model, tfrecord_paths, image_size, batch_size, max_frames,
                                           progress_every_s, _detect_and_loss_step(model, image_size, batch_size))
    batches = sums["batches"]
    cls, box = (sums["classification"] / batches, sums["localization"] / batches) if batches else (np.nan, np.nan)
    reg = float(regularization_loss(model))
    losses = {"loss/classification": cls, "loss/localization": box, "loss/regularization": reg,
              "loss/total": cls + box + reg, "batches": batches}
    return gt_frames, det_frames, losses


_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _detect_and_loss_step(model: Any, image_size: int, batch_size: int):
    """One traced function per model, size, batch size and compiled losses: a batch of
    :func:`~.data.make_inference_dataset` (``images``, ``boxes``, ``label_ids``; a short last batch is padded
    here with blank frames that do not count) to ``(decoded predictions, classification loss, localization
    loss)``. Traced once: every batch has the same shapes inside."""
    from urban_detection.detection.data import clean_batch_targets
    from urban_detection.detection.losses import detection_losses, loss_settings

    steps = _STEPS.setdefault(model, {})
    key = (image_size, batch_size, loss_settings(model))
    if key not in steps:
        size = int(image_size)

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32),
                                      tf.TensorSpec([None, None, 4], tf.float32),
                                      tf.TensorSpec([None, None], tf.int32)])
        def step(images, boxes, label_ids):
            n = tf.shape(images)[0]
            pad = batch_size - n
            images = tf.ensure_shape(tf.pad(images, [[0, pad], [0, 0], [0, 0], [0, 0]]), [batch_size, size, size, 3])
            targets = clean_batch_targets(tf.pad(boxes, [[0, pad], [0, 0], [0, 0]], constant_values=-1.0),
                                          tf.pad(label_ids, [[0, pad], [0, 0]], constant_values=-1), size)
            outputs = model(images, training=False)
            cls, box = detection_losses(model, images, targets, outputs, frame_weights=tf.range(batch_size) < n)
            return model.decode_predictions(outputs, images), cls, box

        steps[key] = step
    return steps[key]


def _predict(model, tfrecord_paths, image_size: int, batch_size: int, max_frames: int | None,
             progress_every_s: float, step=None) -> tuple[list[dict], list[dict], dict]:
    """:func:`predict_split`, and with ``step`` (:func:`_detect_and_loss_step`) the batches' summed losses."""
    from urban_detection.detection.data import make_inference_dataset
    from urban_detection.detection.model import postprocess_detections

    paths = [str(tfrecord_paths)] if isinstance(tfrecord_paths, (str, Path)) else [str(p) for p in tfrecord_paths]
    if not paths:
        raise ValueError("no TFRecord paths to predict on")
    gt_frames: list[dict] = []
    det_frames: list[dict] = []
    sums = {"classification": 0.0, "localization": 0.0, "batches": 0}
    start = last = time.perf_counter()
    for images, meta in make_inference_dataset(paths, image_size, batch_size):  # one pipeline, batches span files
        if max_frames is not None and len(gt_frames) >= max_frames:
            break
        n = int(images.shape[0])
        if step is None:
            dets = detect_batch(model, images, image_size, pad_to=batch_size)
        else:
            preds, cls, box = step(images, meta["boxes"], tf.cast(meta["labels"], tf.int32))
            dets = postprocess_detections({k: v.numpy() for k, v in preds.items()}, (image_size, image_size))
            sums["classification"] += float(cls)
            sums["localization"] += float(box)
            sums["batches"] += 1
        num = meta["num_boxes"].numpy()
        for i, det in enumerate(dets[:n][:None if max_frames is None else max_frames - len(gt_frames)]):
            image_id = len(gt_frames) + 1
            k = int(num[i])
            common = {
                "image_id": image_id,
                "source_id": meta["source_id"][i].numpy().decode(errors="replace"),
                "height": int(meta["height"][i]),
                "width": int(meta["width"][i]),
            }
            gt_frames.append({**common, "path": meta["path"][i].numpy().decode(),
                              "boxes": meta["boxes"][i, :k].numpy().astype(np.float32),
                              "labels": meta["labels"][i, :k].numpy().astype(np.int32)})
            det_frames.append({**common, **det})
        now = time.perf_counter()
        if now - last >= progress_every_s:
            last = now
            log.info("predicted %d frames (%.1f frames/s)", len(gt_frames), len(gt_frames) / (now - start))
    elapsed = time.perf_counter() - start
    log.info("predicted %d frames from %d file(s) in %.1fs", len(gt_frames), len(paths), elapsed)
    return gt_frames, det_frames, sums


def evaluation_losses(model: Any, dataset: tf.data.Dataset, max_batches: int | None = None, **loss_kwargs) -> dict:
    """Mean classification, localization, regularization and total loss over ``dataset``.

    ``dataset`` yields ``(images, {"boxes", "labels"})`` as
    :func:`~.data.make_dataset` with ``training=False``. The model is compiled with
    the training losses (:func:`~.losses.compile_detector`; ``loss_kwargs`` are its
    ``focal_alpha``, ``focal_gamma``, ``smooth_l1_beta``) and evaluated in inference
    mode, exactly as the validation losses during training. Keys ``loss/classification``,
    ``loss/localization``, ``loss/regularization``, ``loss/total`` (and ``batches``).
    """
    import keras

    from urban_detection.detection.losses import compile_detector, evaluate_losses

    compile_detector(model, keras.optimizers.SGD(learning_rate=0.0), **loss_kwargs)
    return evaluate_losses(model, dataset, max_batches)
