"""tf.data input pipelines from TF Object Detection API tf.Example TFRecords.

Training batches are ``(images, {"boxes", "labels"})`` as KerasHub's RetinaNet
expects: ``images`` float32 ``[B, S, S, 3]`` in ``[0, 255]`` (the model
normalises), ``boxes`` float32 ``[B, max_boxes, 4]`` **pixel** ``yxyx`` in the
resized ``S x S`` frame (:data:`~.model.BOX_FORMAT`), ``labels`` int32
``[B, max_boxes]`` model class indices (0 vehicle, 1 pedestrian, 2 cyclist),
padded with -1 (boxes padded with -1 too).

Order of operations: read files in parallel -> shuffle -> parse + decode ->
augment (float32 ``[0, 255]`` image, normalised boxes, label ids) -> map labels
and drop unusable boxes -> resize to ``S x S`` -> pad -> batch -> prefetch.
Frames without boxes are kept (they teach the background); :func:`summarize_records`
counts them and everything else that is dropped.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf

from urban_detection.detection.model import LABEL_TO_INDEX, label_ids_to_indices
from urban_detection.waymo.example import FEATURE_SPEC

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
AugmentFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]
MIN_BOX_SIDE = 1e-4  # normalised; thinner boxes are degenerate and dropped


def _paths(tfrecord_paths) -> list[str]:
    if isinstance(tfrecord_paths, (str, Path)):
        tfrecord_paths = [tfrecord_paths]
    paths = [str(p) for p in tfrecord_paths]
    if not paths:
        raise ValueError("no TFRecord paths given")
    missing = [p for p in paths if not tf.io.gfile.exists(p)]
    if missing:
        raise FileNotFoundError(f"TFRecord file(s) not found: {missing[:5]}")
    return paths


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parse one tf.Example and decode its image.

    Returns ``image`` uint8 ``[H, W, 3]``, ``boxes`` float32
    ``[N, 4]`` normalised ``[ymin, xmin, ymax, xmax]``, ``labels`` int32 ``[N]``
    label ids, ``source_id``, ``height``, ``width`` (of the encoded image).
    """
    f = tf.io.parse_single_example(serialized, FEATURE_SPEC)
    image = tf.io.decode_image(f["image/encoded"], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    coords = [tf.sparse.to_dense(f[f"image/object/bbox/{k}"]) for k in ("ymin", "xmin", "ymax", "xmax")]
    labels = tf.cast(tf.sparse.to_dense(f["image/object/class/label"]), tf.int32)
    n = tf.reduce_min(tf.stack([tf.size(c) for c in coords] + [tf.size(labels)]))
    boxes = tf.stack([c[:n] for c in coords], axis=-1)
    shape = tf.shape(image)
    return {
        "image": tf.cast(image, tf.uint8),
        "boxes": tf.reshape(boxes, [-1, 4]),
        "labels": labels[:n],
        "source_id": f["image/source_id"],
        "height": shape[0],
        "width": shape[1],
    }


def clean_boxes(boxes: tf.Tensor, label_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Clip normalised boxes to [0, 1], map label ids to model indices, drop unknown/degenerate ones."""
    boxes = tf.clip_by_value(tf.cast(boxes, tf.float32), 0.0, 1.0)
    indices = label_ids_to_indices(label_ids)
    keep = _kept(boxes, indices)
    return tf.boolean_mask(boxes, keep), tf.boolean_mask(indices, keep)


def _kept(boxes: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """Which clipped boxes (``[..., 4]``) training keeps: a known class and both sides above ``MIN_BOX_SIDE``."""
    height, width = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    return (indices >= 0) & (height > MIN_BOX_SIDE) & (width > MIN_BOX_SIDE)


def pad_boxes(boxes: tf.Tensor, labels: tf.Tensor, max_boxes: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Keep the first ``max_boxes`` and pad with -1 to exactly ``max_boxes``."""
    boxes, labels = boxes[:max_boxes], labels[:max_boxes]
    pad = max_boxes - tf.shape(labels)[0]
    boxes = tf.pad(boxes, [[0, pad], [0, 0]], constant_values=-1.0)
    labels = tf.pad(labels, [[0, pad]], constant_values=-1)
    return tf.ensure_shape(boxes, [max_boxes, 4]), tf.ensure_shape(labels, [max_boxes])


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """``ds`` with tf.data's autotuning off (the parallel steps then use every core). Measured here on 2
    cores: an evaluation pass over 336 frames takes the same time either way, but an autotuned iterator
    was sometimes (2 of 8 passes) held 2 to 10 s after its last batch before it was released, never without
    (0 of 12); the default training input (batch 4 at 320 px, flip, brightness, contrast) gives 550 to 800
    images/s either way, against the 17 to 22 a training step on these cores takes."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def clean_batch_targets(boxes: tf.Tensor, label_ids: tf.Tensor, image_size: int,
                        max_boxes: int = 100) -> dict[str, tf.Tensor]:
    """A batch's ground truth as :func:`make_dataset` gives it to the losses: every frame's boxes cleaned
    (:func:`clean_boxes`: clipped, unknown labels and degenerate boxes dropped, the rest in their order),
    the first ``max_boxes`` kept, pixel yxyx, padded with -1. ``boxes`` ``[B, N, 4]`` normalised yxyx and
    ``label_ids`` ``[B, N]`` as :func:`make_inference_dataset`'s ``meta`` (padding -1)."""
    boxes = tf.clip_by_value(tf.cast(boxes, tf.float32), 0.0, 1.0)
    indices = label_ids_to_indices(label_ids)
    keep = _kept(boxes, indices)
    order = tf.argsort(tf.cast(~keep, tf.int32), axis=1, stable=True)[:, :max_boxes]  # kept boxes first
    keep = tf.gather(keep, order, batch_dims=1)
    boxes = tf.where(keep[..., None], tf.gather(boxes, order, batch_dims=1) * float(image_size), -1.0)
    labels = tf.where(keep, tf.gather(indices, order, batch_dims=1), -1)
    pad = max_boxes - tf.shape(labels)[1]
    return {"boxes": tf.ensure_shape(tf.pad(boxes, [[0, 0], [0, pad], [0, 0]], constant_values=-1.0),
                                     [boxes.shape[0], max_boxes, 4]),
            "labels": tf.ensure_shape(tf.pad(labels, [[0, 0], [0, pad]], constant_values=-1),
                                      [labels.shape[0], max_boxes])}


def make_dataset(
    tfrecord_paths,
    image_size: int,
    batch_size: int,
    training: bool,
    augment_fn: AugmentFn | None = None,
    shuffle_buffer: int = 256,
    max_boxes: int = 100,
    cache: bool = False,
    seed: int = 0,
    repeat: bool | None = None,
    deterministic: bool | None = None,
    report: dict | None = None,
) -> tf.data.Dataset:
    """Batches ``(images, {"boxes", "labels"})`` for training or loss evaluation.

    ``training=True``: files interleaved in shuffled order, examples shuffled,
    ``augment_fn`` applied, repeated forever (unless ``repeat=False``), partial
    last batch dropped so every batch has static shape. ``training=False``:
    file order kept, no augmentation, one pass, last batch kept. ``cache=True``
    keeps decoded uint8 images in memory (resized to ``S x S`` when there is no
    augmentation or ``augment_fn.size_invariant`` is true, else at their original size) -- for
    small datasets. ``deterministic`` keeps the
    element order of parallel steps (default: only when not training), e.g. for
    reproducible tests. When a ``report`` dict is given it is filled with :func:`summarize_records` (frames,
    frames without boxes, dropped boxes, bad records; an extra pass over the
    records that does not decode images) and a summary is logged. Records that fail to parse or decode are skipped with
    a warning (see :func:`summarize_records` for counts).
    """
    paths = _paths(tfrecord_paths)
    if report is not None:
        report.update(summarize_records(paths, max_boxes=max_boxes))
        log.info("%d frames in %d file(s): %d without boxes, %d boxes dropped (unknown label/degenerate), "
                 "%d bad records skipped", report["frames"], len(paths), report["frames_without_boxes"],
                 report["unknown_label_boxes"] + report["degenerate_boxes"], report["bad_records"])
    repeat = training if repeat is None else repeat
    ordered = (not training) if deterministic is None else bool(deterministic)
    files = tf.data.Dataset.from_tensor_slices(paths)
    if training and len(paths) > 1:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(paths), 8),
        num_parallel_calls=AUTOTUNE,
        deterministic=ordered,
    )
    augment = augment_fn if training else None
    # Without augmentation, or with one whose ops do not depend on the image size (a flip, colour
    # changes: ``augment_fn.size_invariant``), the image is resized right after decoding: less work
    # per step, and the cache holds model-size frames. Otherwise it is resized after the augmenter,
    # which must see the whole original image. Images stay uint8 until the end either way.
    resize_early = augment is None or bool(getattr(augment, "size_invariant", False))

    def decode(serialized):
        ex = parse_example(serialized)
        image = ex["image"]
        if resize_early:
            image = _resize_uint8(image, image_size)
        return image, ex["boxes"], ex["labels"]

    if training and not cache:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(decode, num_parallel_calls=AUTOTUNE, deterministic=ordered).ignore_errors(log_warning=True)
    if cache:
        ds = ds.cache()
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def finish(image, boxes, label_ids):
        image = tf.cast(image, tf.float32)
        if augment is not None:
            image, boxes, label_ids = augment(image, boxes, label_ids)
        boxes, labels = clean_boxes(boxes, label_ids)
        if not resize_early:
            image = tf.image.resize(image, [image_size, image_size])
        image = tf.clip_by_value(image, 0.0, 255.0)
        boxes, labels = pad_boxes(boxes * float(image_size), labels, max_boxes)  # pixel yxyx
        return tf.ensure_shape(image, [image_size, image_size, 3]), {"boxes": boxes, "labels": labels}

    ds = ds.map(finish, num_parallel_calls=AUTOTUNE, deterministic=ordered)
    ds = ds.batch(batch_size, drop_remainder=training, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
    return without_autotune(ds)


def _resize_uint8(image: tf.Tensor, size: int) -> tf.Tensor:
    resized = tf.image.resize(tf.cast(image, tf.float32), [size, size])
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def make_inference_dataset(tfrecord_paths, image_size: int, batch_size: int, max_boxes: int | None = None):
    """Batches ``(images, meta)`` in file order for evaluation and rendering.

    ``images`` float32 ``[B, S, S, 3]`` in ``[0, 255]``; ``meta`` holds
    ``source_id`` (string), ``height``/``width`` of the original image,
    ``num_boxes`` and the ground truth ``boxes`` (normalised ``[ymin, xmin, ymax,
    xmax]``) and ``labels`` (label ids 1/2/4) padded with -1 to the largest frame
    of the batch (or to ``max_boxes``). Ground truth is passed through unchanged
    apart from clipping to [0, 1] (unknown labels are kept, evaluation decides), and ``path``, the
    file each frame was read from (a batch may span files).
    """
    paths = _paths(tfrecord_paths)
    ds = tf.data.Dataset.from_tensor_slices(paths).interleave(
        lambda path: tf.data.TFRecordDataset(path).map(lambda record: (record, path)),
        cycle_length=1, num_parallel_calls=AUTOTUNE, deterministic=True,
    )

    def prepare(serialized, path):
        ex = parse_example(serialized)
        image = tf.image.resize(tf.cast(ex["image"], tf.float32), [image_size, image_size])
        meta = {
            "path": path,
            "source_id": ex["source_id"],
            "height": ex["height"],
            "width": ex["width"],
            "num_boxes": tf.shape(ex["labels"])[0],
            "boxes": tf.clip_by_value(ex["boxes"], 0.0, 1.0),
            "labels": ex["labels"],
        }
        return tf.ensure_shape(tf.clip_by_value(image, 0.0, 255.0), [image_size, image_size, 3]), meta

    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True).ignore_errors(log_warning=True)
    pad_shapes = (
        [image_size, image_size, 3],
        {"path": [], "source_id": [], "height": [], "width": [], "num_boxes": [],
         "boxes": [max_boxes, 4] if max_boxes else [None, 4], "labels": [max_boxes] if max_boxes else [None]},
    )
    pad_values = (0.0, {"path": "", "source_id": "", "height": 0, "width": 0, "num_boxes": 0, "boxes": -1.0,
                        "labels": -1})
    if max_boxes:
        ds = ds.map(lambda im, m: (im, {**m, "boxes": m["boxes"][:max_boxes], "labels": m["labels"][:max_boxes],
                                        "num_boxes": tf.minimum(m["num_boxes"], max_boxes)}))
    return without_autotune(ds.padded_batch(batch_size, padded_shapes=pad_shapes, padding_values=pad_values)
                            .prefetch(AUTOTUNE))


def summarize_records(tfrecord_paths, max_boxes: int = 100, check_images: bool = False) -> dict:
    """Scan records (without decoding images unless ``check_images``) and count what the pipeline sees.

    Returns ``frames``, ``frames_without_boxes`` (kept for training),
    ``frames_over_max_boxes`` (boxes beyond ``max_boxes`` are cut),
    ``boxes_per_class`` (by label id), ``unknown_label_boxes`` and
    ``degenerate_boxes`` (dropped), ``bad_records`` (skipped) and a list of
    ``problems`` (file, record index, reason). Each problem is also logged.
    """
    report = Counter()
    per_class: Counter = Counter()
    problems: list[dict] = []
    for path in _paths(tfrecord_paths):
        index = -1
        try:
            for index, record in enumerate(tf.data.TFRecordDataset(path)):
                try:
                    f = tf.io.parse_single_example(record, FEATURE_SPEC)
                    labels = tf.sparse.to_dense(f["image/object/class/label"]).numpy()
                    coords = [tf.sparse.to_dense(f[f"image/object/bbox/{k}"]).numpy()
                              for k in ("ymin", "xmin", "ymax", "xmax")]
                    if check_images:
                        tf.io.decode_image(f["image/encoded"], channels=3, expand_animations=False)
                except (tf.errors.InvalidArgumentError, ValueError) as err:
                    report["bad_records"] += 1
                    problems.append({"file": path, "record": index, "reason": str(err).splitlines()[0][:200]})
                    log.warning("skipping bad record %s #%d: %s", path, index, problems[-1]["reason"])
                    continue
                report["frames"] += 1
                n = min(len(labels), *(len(c) for c in coords))
                if len(labels) != n or any(len(c) != n for c in coords):
                    report["mismatched_box_lists"] += 1
                    log.warning("%s #%d: box/label lists differ in length, using the first %d", path, index, n)
                boxes = np.stack([c[:n] for c in coords], -1).reshape(-1, 4)
                labels = labels[:n]
                known = np.isin(labels, list(LABEL_TO_INDEX))
                boxes = np.clip(boxes, 0.0, 1.0)
                heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
                degenerate = (heights <= MIN_BOX_SIDE) | (widths <= MIN_BOX_SIDE)
                report["unknown_label_boxes"] += int((~known).sum())
                report["degenerate_boxes"] += int((known & degenerate).sum())
                usable = known & ~degenerate
                per_class.update(int(i) for i in labels[usable])
                if not usable.any():
                    report["frames_without_boxes"] += 1
                if usable.sum() > max_boxes:
                    report["frames_over_max_boxes"] += 1
        except tf.errors.DataLossError as err:
            report["bad_records"] += 1
            problems.append({"file": path, "record": index + 1, "reason": f"corrupt TFRecord: {err.message[:200]}"})
            log.warning("stopping at corrupt data in %s after record %d: %s", path, index, err.message[:200])
    out = {k: int(report[k]) for k in ("frames", "frames_without_boxes", "frames_over_max_boxes",
                                        "unknown_label_boxes", "degenerate_boxes", "mismatched_box_lists",
                                        "bad_records")}
    out["boxes_per_class"] = {int(k): int(per_class[k]) for k in sorted(LABEL_TO_INDEX)}
    out["problems"] = problems
    if out["frames_without_boxes"]:
        log.info("%d of %d frames have no usable boxes (kept for training)", out["frames_without_boxes"], out["frames"])
    return out


def iterate_numpy(ds: tf.data.Dataset, limit: int | None = None) -> Iterable:
    """Iterate a dataset as numpy, at most ``limit`` batches (a small helper for nodes and tests)."""
    for i, batch in enumerate(ds.as_numpy_iterator()):
        if limit is not None and i >= limit:
            return
        yield batch
