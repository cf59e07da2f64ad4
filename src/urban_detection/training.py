"""Train one resolved experiment config and record it in MLflow (no Kedro here).

Glue between :mod:`urban_detection.detection` (model, data, augmentation, loop) and
:mod:`urban_detection.tracking` (the experiment's MLflow child run). Checkpoints go to
the folder of the model's fingerprint (handed over by the train node's checkpoints
dataset), so an interrupted run resumes and a changed config or data trains anew.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable

import mlflow
import numpy as np
import tensorflow as tf

from urban_detection.detection import augment, checkpoint_eval, data, model as detmodel, pretrained, train as dettrain
from urban_detection.detection.best_checkpoint import CheckpointJudge
from urban_detection.detection.distribute import is_chief, strategy_scope
from urban_detection.detection.precision import configure_precision, resolve as resolve_precision
from urban_detection.detection.checkpoints import TrainingRecord
from urban_detection.detection.trained import TrainedDetector
from urban_detection.tracking import CHECKPOINT_VAL, experiment_run, log_metrics

log = logging.getLogger(__name__)


def preview_figure(cfg: dict, train_paths: list[str], n: int = 8, seed: int = 0):
    """Grid of augmented training frames with their boxes, for one experiment."""
    frames = data.iterate_numpy(data.make_inference_dataset(train_paths[:2], image_size=cfg["model"]["image_size"],
                                                            batch_size=n), limit=1)
    images, meta = next(iter(frames))
    keep = [lab > 0 for lab in meta["labels"][:n]]
    boxes = [b[k] for b, k in zip(meta["boxes"][:n], keep)]
    labels = [lab[k] for lab, k in zip(meta["labels"][:n], keep)]
    fig = augment.augmentation_preview(list(images[:n]), boxes, labels,
                                       augment.build_augmenter(cfg.get("augmentations")), n=n, seed=seed)
    fig.suptitle(f"{cfg['name']}: augmented training frames")
    return fig


RECIPE_KEYS = ("focal_alpha", "focal_gamma", "smooth_l1_beta", "ema_decay", "ema_ramp_steps")


def recipe_kwargs(tcfg: dict) -> dict:
    """The loss and weight-average settings of a config's ``train`` section that the training loop takes."""
    return {k: tcfg[k] for k in RECIPE_KEYS if k in tcfg}


def _build(cfg: dict, weights: str | None = None):
    """The config's detector (in the current distribution scope), with ``weights`` or random ones."""
    mcfg = cfg["model"]
    return detmodel.build_detector(mcfg["arch"], image_size=mcfg["image_size"], weights=weights,
                                   **(mcfg.get("overrides") or {}))


def run_experiment(cfg: dict, *, train_paths: list[str], val_paths: list[str], checkpoint_dir: Path,
                   provenance: dict, run_id: str | None = None, on_run: Callable[[str], None] | None = None,
                   parent: TrainedDetector | None = None, parent_run_id: str | None = None,
                   strategy: str | tf.distribute.Strategy | None = None) -> TrainedDetector:
    """Train ``cfg`` (resuming from ``checkpoint_dir``), log to MLflow, return the trained detector.

    ``run_id``: the MLflow run of an interrupted earlier attempt (same fingerprint), reopened;
    ``on_run(run_id)`` is called once the run is open so the caller can remember it.
    ``parent``: the detector to fine-tune from (its weights initialise the model).
    ``parent_run_id``: the kedro run to nest a new MLflow run under when none is active here (a Ray job).
    ``strategy``: a ``tf.distribute`` strategy, or its name, instead of the config's ``train.strategy``.
    """
    name, tcfg, mcfg = cfg["name"], cfg["train"], cfg["model"]
    resuming = tf.train.latest_checkpoint(str(checkpoint_dir)) is not None
    tf.keras.utils.set_random_seed(int(tcfg.get("seed", 0)))
    # true/"float16" (GPUs), "bfloat16" (CPUs with AVX512-BF16 or AMX) or "auto" (the one this machine computes)
    mixed = resolve_precision(tcfg.get("mixed_precision", False))
    configure_precision(mixed)
    try:
        if not isinstance(strategy, tf.distribute.Strategy):
            strategy = strategy_scope(strategy or tcfg.get("strategy", "default"))
        with strategy.scope():
            model = _build(cfg, weights=None if parent else mcfg.get("weights"))
        if parent is not None and not resuming:
            detmodel.assign_matching(model, parent.model, f"the trained {parent.name} model")
            pretrained.set_init_report(model, pretrained.init_report(
                model, f"{parent.name}@{parent.fingerprint[:12]}", pretrained.COMPONENTS, "parent experiment"))
            log.info("%s: initial weights from %r", name, parent)

        augmenter = augment.build_augmenter(cfg.get("augmentations"))
        train_ds = data.make_dataset(train_paths, mcfg["image_size"], tcfg["batch_size"], training=True,
                                     augment_fn=augmenter, shuffle_buffer=tcfg.get("shuffle_buffer", 256),
                                     seed=int(tcfg.get("seed", 0)), cache=bool(tcfg.get("cache", False)))
        val_ds = data.make_dataset(val_paths, mcfg["image_size"], tcfg["batch_size"], training=False)

        # Under multi_worker_mirrored every host runs this; only the chief logs to MLflow and
        # writes the record (the others' checkpoints go to a temporary folder, see dettrain.train)
        chief = is_chief(strategy)
        multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        with experiment_run(name, cfg, provenance, run_id, parent_run_id) if chief else contextlib.nullcontext() as run:
            if chief and on_run is not None:
                on_run(run.info.run_id)
            if chief:  # what train.mixed_precision (possibly "auto") came to on this machine
                mlflow.set_tag("dtype_policy", model.dtype_policy.name)
            if chief and parent is not None:
                mlflow.set_tag("parent_model", f"{parent.name}@{parent.fingerprint[:12]} step {parent.step}")
            if chief and not resuming and getattr(model, "init_report", None):
                mlflow.log_dict(model.init_report, "init_report.json")  # weights loaded vs newly initialised

            record = TrainingRecord.open(checkpoint_dir, tcfg.get("best_metric", checkpoint_eval.MAP50))
            # the chief judges the checkpoints; under multi-worker training it scores a copy (see best_checkpoint)
            val_frames = checkpoint_eval.load_frames(
                val_paths, mcfg["image_size"], tcfg.get("val_coco_frames", 128)) if chief else None
            judge = CheckpointJudge(record, val_frames, mcfg["image_size"], model, chief=chief,
                                    copy=(lambda: _build(cfg)) if multi_worker else None)

            def on_log(metrics, step):
                record.history.append({"step": step, **metrics})
                if chief:
                    log_metrics({f"train/{k}": v for k, v in metrics.items()}, step)

            def on_checkpoint(step, path, val_metrics):
                judged, is_best = judge(step, path, val_metrics)
                if not chief:
                    return
                log_metrics({f"{CHECKPOINT_VAL}/{k}": v for k, v in judged.items()}, step)
                if is_best:
                    log_metrics({f"{CHECKPOINT_VAL}/best_step": step}, step)
                if tcfg.get("log_checkpoints", False):
                    for f in Path(path).parent.glob(Path(path).name + ".*"):
                        mlflow.log_artifact(str(f), artifact_path="checkpoints")

            result = dettrain.train(
                model, train_ds, val_ds,
                steps=tcfg["steps"], checkpoint_dir=checkpoint_dir, checkpoint_every=tcfg["checkpoint_every"],
                keep_checkpoints=tcfg.get("keep_checkpoints", 3), log_every=tcfg.get("log_every", 10),
                on_log=on_log, on_checkpoint=on_checkpoint,
                mixed_precision=mixed,
                jit_compile=bool(tcfg.get("jit_compile", False)), strategy=strategy,
                optimizer=cfg["optimizer"], val_steps=tcfg.get("val_batches"),
                **recipe_kwargs(tcfg),
            )
            trained_now = result.step > result.start_step
            step = int(result.step)
            if chief and record.restore_best_weights(model):  # export and evaluate the best checkpoint, not the last
                step = int(record.best.best_step)
                log.info("%s: best checkpoint step %d (%s %.4f) of %d", name, step, record.best.metric,
                         record.best.best_value, result.step)
            # One copy of the model per run: the export, logged as the served model (serving.py).
            # train.log_keras_model=true also logs the Keras model here (a second copy).
            if chief and trained_now and tcfg.get("log_keras_model", False):
                mlflow.keras.log_model(model, name="model", pip_requirements=["tensorflow", "keras", "keras-hub"])
            summary = {
                "start_step": int(result.start_step),
                "dtype_policy": model.dtype_policy.name,  # float32, mixed_float16 or mixed_bfloat16
                "images_per_sec": float(result.images_per_sec) if np.isfinite(result.images_per_sec) else None,
                "first_logged_loss": float(result.history[0]["loss/total"]) if result.history else None,
                "last_logged_loss": float(result.history[-1]["loss/total"]) if result.history else None,
                "last_checkpoint": result.last_checkpoint,
                "last_step": int(result.step),
                "best": record.best.to_dict(),
                "history": record.history,
                "val_history": record.val_history,
            }
            if chief and trained_now:
                log_metrics({"train/images_per_sec_overall": result.images_per_sec}, result.step)
            run_id = run.info.run_id if chief else None
    finally:
        configure_precision(False)
    return TrainedDetector(model=model, config=cfg, provenance=provenance, step=step, run_id=run_id,
                           summary=summary)
