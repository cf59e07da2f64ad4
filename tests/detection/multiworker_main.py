"""One worker of a multi-worker training run, for tests/detection/test_multiworker.py.

``TF_CONFIG=... python multiworker_main.py config.json`` builds the small detector inside a
``MultiWorkerMirroredStrategy`` scope, runs :func:`~urban_detection.detection.train.train` on
the TFRecords the config names and writes ``<out>.npz`` (every checkpointed model and
optimizer value, keyed by checkpoint name) and ``<out>.json`` (the ``TrainResult`` and what
the callbacks saw). With ``validate`` every checkpoint is judged as the training pipeline does
(:class:`~urban_detection.detection.best_checkpoint.CheckpointJudge`: the chief scores the val
frames with COCO on a copy of the model) and the chief exports the best checkpoint, as the
training pipeline does: its weights go to ``<out>_exported.npz`` and ``final.weights.h5``, its
step to the JSON.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path


def main(config_path: str) -> None:
    cfg = json.loads(Path(config_path).read_text())
    logging.basicConfig(level=logging.INFO, format=f"worker {cfg['name']} %(asctime)s %(name)s: %(message)s")
    import keras
    import numpy as np

    from urban_detection.detection.distribute import is_chief, strategy_scope
    from urban_detection.detection.train import train

    strategy = strategy_scope("multi_worker_mirrored")  # before any other TensorFlow op
    keras.utils.set_random_seed(cfg["seed"])

    from urban_detection.detection.best_checkpoint import CheckpointJudge
    from urban_detection.detection.checkpoint_eval import load_frames
    from urban_detection.detection.checkpoints import TrainingRecord
    from urban_detection.detection.data import make_dataset
    from urban_detection.detection.model import build_detector, checkpoint_weights

    with strategy.scope():
        model = build_detector(cfg["arch"], cfg["image_size"], **cfg.get("overrides", {}))
    size, batch = cfg["image_size"], cfg["global_batch"]
    train_ds = make_dataset(cfg["records"], size, batch, training=True, cache=True, shuffle_buffer=16,
                            seed=cfg["seed"], deterministic=True)
    val_ds = make_dataset(cfg["records"], size, 4, training=False, cache=True) if cfg["validate"] else None
    seen = {"log_steps": [], "checkpoints": []}
    chief = is_chief(strategy)
    record = TrainingRecord.open(cfg["checkpoint_dir"], cfg["best_metric"])
    judge = CheckpointJudge(record, load_frames(cfg["records"], size) if chief and cfg["validate"] else None, size,
                            model, chief=chief, copy=lambda: build_detector(cfg["arch"], size, **cfg["overrides"]))

    def on_checkpoint(step, path, val):
        seen["checkpoints"].append({"step": step, "path": path, "val_loss": val.get("loss/total")})
        if cfg["validate"]:
            judge(step, path, val)

    result = train(model, train_ds, val_ds, steps=cfg["steps"], checkpoint_dir=cfg["checkpoint_dir"],
                   checkpoint_every=cfg["checkpoint_every"], log_every=1, optimizer=cfg["optimizer"],
                   strategy=strategy, val_steps=1, on_log=lambda metrics, step: seen["log_steps"].append(step),
                   on_checkpoint=on_checkpoint)

    log = logging.getLogger("multiworker_main")
    log.info("trained to step %d", result.step)
    out = Path(cfg["out"])
    values = {f"weights/{k}": v.numpy() for k, v in checkpoint_weights(model).items()}
    values.update({f"optimizer/{i:03d}:{v.path}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)})
    np.savez(out.with_suffix(".npz"), **values)
    log.info("values saved")
    exported_step = result.step
    if chief:  # the caller's part: the best checkpoint's weights (and the MLflow run) on the chief only
        if cfg["validate"] and record.restore_best_weights(model):
            exported_step = record.best.best_step
        exported = {f"weights/{k}": v.numpy() for k, v in checkpoint_weights(model).items()}
        np.savez(out.with_name(out.name + "_exported.npz"), **exported)
        model.save_weights(Path(cfg["checkpoint_dir"]).parent / "final.weights.h5")
    out.with_suffix(".json").write_text(json.dumps({
        "is_chief": result.is_chief, "is_chief_helper": is_chief(strategy), "step": result.step,
        "start_step": result.start_step, "last_checkpoint": result.last_checkpoint,
        "losses": [h["loss/total"] for h in result.history], "val_losses": [h["loss/total"] for h in result.val_history],
        "replicas": strategy.num_replicas_in_sync, **seen,
        "exported_step": exported_step, "val_history": record.val_history, "best": record.best.to_dict(),
    }, default=float))
    log.info("done")


if __name__ == "__main__":
    main(sys.argv[1])
