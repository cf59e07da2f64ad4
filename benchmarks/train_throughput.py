"""Training throughput: the full input pipeline vs the same model fed in-memory tensors.

Full pipeline = trip TFRecords -> parse/decode -> augmentation of the experiment ->
resize/pad/batch -> train step, with MLflow logging every `log_every` steps (SQLite
store in a temp folder). In-memory = one pre-built batch repeated, no logging.
Prints both images/s and the pipeline overhead (1 - full / in-memory).

    ./dev.sh python benchmarks/train_throughput.py [--steps 60] [--image-size 320] [--batch 8]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mlflow
import tensorflow as tf

from urban_detection.detection import augment, data, model as detmodel, train as dettrain
from urban_detection.tracking import log_metrics
from urban_detection.waymo.ingest import ingest_files
from urban_detection.waymo.synthetic import write_synthetic_trips

AUGS = [{"name": "random_horizontal_flip"}, {"name": "random_adjust_brightness"},
        {"name": "random_crop_image", "min_object_covered": 0.0, "aspect_ratio_range": [0.75, 3.0],
         "area_range": [0.75, 1.0], "overlap_thresh": 0.0}]
OPT = {"type": "momentum", "momentum": 0.9,
       "schedule": {"type": "cosine", "base_lr": 0.01, "warmup_lr": 0.001, "warmup_steps": 5, "total_steps": 10000}}


def measure(ds, steps, image_size, tmp, tag, on_log=None):
    tf.keras.utils.set_random_seed(0)
    model = detmodel.build_detector("retinanet_resnet18_fpn_small", image_size=image_size)
    warm = 5
    dettrain.train(model, ds, None, steps=warm, checkpoint_dir=tmp / tag, checkpoint_every=10_000, log_every=warm,
                   optimizer=OPT)  # traces the step function
    t0 = time.perf_counter()
    res = dettrain.train(model, ds, None, steps=warm + steps, checkpoint_dir=tmp / tag, checkpoint_every=10_000,
                         log_every=10, on_log=on_log)
    wall = time.perf_counter() - t0
    return res.images_per_sec, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--image-size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="train_bench_"))
    raw = write_synthetic_trips(tmp / "raw", n_trips=4, frames_per_trip=40, width=960, height=640, seed=1)
    result = ingest_files(raw, tmp / "trips", workers=2, stride=2, progress=False)
    paths = sorted(str(p) for p in (tmp / "trips").glob("*.tfrecord"))
    print(f"{result.report['frames_written']} frames in {len(paths)} trip files, image {args.image_size}, "
          f"batch {args.batch}, {args.steps} timed steps")

    full = data.make_dataset(paths, args.image_size, args.batch, training=True,
                             augment_fn=augment.build_augmenter(AUGS), shuffle_buffer=256)
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    with mlflow.start_run():
        ips_full, wall_full = measure(full, args.steps, args.image_size, tmp, "full",
                                      on_log=lambda m, s: log_metrics(m, s))

    images, targets = next(iter(data.make_dataset(paths, args.image_size, args.batch, training=True)))
    memory = tf.data.Dataset.from_tensors((images, targets)).repeat()
    ips_mem, wall_mem = measure(memory, args.steps, args.image_size, tmp, "memory")

    print(f"full pipeline (TFRecords + augmentation + MLflow): {ips_full:7.2f} images/s  ({wall_full:.1f} s)")
    print(f"in-memory tensors, same model:                    {ips_mem:7.2f} images/s  ({wall_mem:.1f} s)")
    print(f"ratio full / in-memory: {ips_full / ips_mem:.3f}  -> pipeline overhead {100 * (1 - ips_full / ips_mem):.1f}%")


if __name__ == "__main__":
    main()
