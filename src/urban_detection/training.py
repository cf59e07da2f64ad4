"""Train one resolved experiment config and record it in MLflow (no Kedro here).

Glue between :mod:`urban_detection.detection` (model, data, augmentation, loop) and
:mod:`urban_detection.tracking` (the experiment's MLflow child run).
"""
from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import numpy as np
import tensorflow as tf

from urban_detection.detection import augment, data, model as detmodel, train as dettrain
from urban_detection.tracking import experiment_run, log_metrics

log = logging.getLogger(__name__)


def latest_checkpoint(checkpoint_dir: str | Path | None) -> str | None:
    """Prefix of the newest tf.train checkpoint in ``checkpoint_dir`` (None when there is none)."""
    if not checkpoint_dir or not Path(checkpoint_dir).is_dir():
        return None
    return tf.train.latest_checkpoint(str(checkpoint_dir))


def preview_figure(cfg: dict, train_paths: list[str], n: int = 8, seed: int = 0):
    """Grid of augmented training frames with their boxes, for one experiment."""
    frames = data.iterate_numpy(data.make_inference_dataset(train_paths[:2], image_size=cfg["model"]["image_size"],
                                                            batch_size=n), limit=1)
    images, meta = next(iter(frames))
    images, boxes, labels = _preview_inputs(images, meta, n)
    fig = augment.augmentation_preview(images, boxes, labels, augment.build_augmenter(cfg.get("augmentations")),
                                       n=n, seed=seed)
    fig.suptitle(f"{cfg['name']}: augmented training frames")
    return fig


def _preview_inputs(images, meta, n):
    keep = [lab > 0 for lab in meta["labels"][:n]]
    boxes = [b[k] for b, k in zip(meta["boxes"][:n], keep)]
    labels = [lab[k] for lab, k in zip(meta["labels"][:n], keep)]
    return list(images[:n]), boxes, labels


def run_experiment(cfg: dict, *, train_paths: list[str], val_paths: list[str], model_dir: Path,
                   reporting_dir: Path, initial_weights: str | None = None) -> dict:
    """Train ``cfg`` (resuming from ``model_dir/checkpoints``), log to MLflow, return a summary dict."""
    name, tcfg, mcfg = cfg["name"], cfg["train"], cfg["model"]
    model_dir, reporting_dir = Path(model_dir), Path(reporting_dir)
    ckpt_dir = model_dir / "checkpoints"
    resuming = latest_checkpoint(ckpt_dir) is not None
    reporting_dir.mkdir(parents=True, exist_ok=True)

    tf.keras.utils.set_random_seed(int(tcfg.get("seed", 0)))
    dettrain.configure_precision(bool(tcfg.get("mixed_precision", False)))
    try:
        strategy = dettrain.strategy_scope(tcfg.get("strategy", "default"))
        with strategy.scope():
            model = detmodel.build_detector(mcfg["arch"], image_size=mcfg["image_size"], weights=mcfg.get("weights"),
                                            **(mcfg.get("overrides") or {}))
        if initial_weights and not resuming:
            loaded = detmodel.load_initial_weights(model, initial_weights)
            log.info("%s: initial weights from %s", name, loaded)

        augmenter = augment.build_augmenter(cfg.get("augmentations"))
        train_ds = data.make_dataset(train_paths, mcfg["image_size"], tcfg["batch_size"], training=True,
                                     augment_fn=augmenter, shuffle_buffer=tcfg.get("shuffle_buffer", 256),
                                     seed=int(tcfg.get("seed", 0)), cache=bool(tcfg.get("cache", False)))
        val_ds = data.make_dataset(val_paths, mcfg["image_size"], tcfg["batch_size"], training=False)

        with experiment_run(name, model_dir, cfg) as run:
            if not resuming:
                mlflow.log_dict(cfg, "config.yml")
                fig = preview_figure(cfg, train_paths)
                fig.savefig(reporting_dir / "augmentation_preview.png", dpi=80)
                mlflow.log_figure(fig, "augmentation_preview.png")

            def on_checkpoint(step, path, val_metrics):
                log_metrics({f"val_{k}": v for k, v in val_metrics.items() if k.startswith("loss/")}, step)
                for f in Path(path).parent.glob(Path(path).name + ".*"):
                    mlflow.log_artifact(str(f), artifact_path="checkpoints")

            result = dettrain.train(
                model, train_ds, val_ds,
                steps=tcfg["steps"], checkpoint_dir=ckpt_dir, checkpoint_every=tcfg["checkpoint_every"],
                keep_checkpoints=tcfg.get("keep_checkpoints", 3), log_every=tcfg.get("log_every", 10),
                on_log=lambda metrics, step: log_metrics(metrics, step), on_checkpoint=on_checkpoint,
                mixed_precision=bool(tcfg.get("mixed_precision", False)),
                jit_compile=bool(tcfg.get("jit_compile", False)), strategy=strategy,
                optimizer=cfg["optimizer"], val_steps=tcfg.get("val_batches"),
            )
            weights_path = model_dir / "final.weights.h5"
            trained_now = result.step > result.start_step
            if trained_now or not weights_path.exists():
                model.save_weights(weights_path)
                mlflow.log_artifact(str(weights_path), artifact_path="model_weights")
                if tcfg.get("log_keras_model", True):
                    mlflow.keras.log_model(model, name="model", pip_requirements=["tensorflow", "keras", "keras-hub"])
                log_metrics({"train/images_per_sec": result.images_per_sec}, result.step)
            first = result.history[0]["loss/total"] if result.history else float("nan")
            last = result.history[-1]["loss/total"] if result.history else float("nan")
            summary = {
                "run_id": run.info.run_id,
                "final_step": int(result.step),
                "start_step": int(result.start_step),
                "last_checkpoint": result.last_checkpoint,
                "weights": str(weights_path),
                "images_per_sec": float(result.images_per_sec) if np.isfinite(result.images_per_sec) else None,
                "first_logged_loss": float(first),
                "last_logged_loss": float(last),
                "arch": mcfg["arch"],
                "image_size": int(mcfg["image_size"]),
            }
    finally:
        dettrain.configure_precision(False)
    return summary
