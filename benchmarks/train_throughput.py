"""Training throughput: the full input pipeline vs the same model fed in-memory tensors.

Full pipeline = trip TFRecords -> parse/decode -> augmentation of the experiment ->
resize/pad/batch -> train step, with MLflow logging every `log_every` steps (SQLite
store in a temp folder). Cached = the same with ``train.cache`` (decoded, resized frames kept
in memory after the first pass: no JPEG decoding in later epochs). In-memory = one pre-built
batch repeated, no logging. Prints images/s of each and the pipeline overhead
(1 - full / in-memory). ``--augs fast_cpu`` uses the default experiment's augmentations
(flip, brightness, contrast: size-invariant, so frames are resized before the cache);
``--precision auto`` its compute precision.

    ./dev.sh python benchmarks/train_throughput.py [--steps 60] [--image-size 320] [--batch 8]
        [--augs baseline|fast_cpu] [--precision false|auto|bfloat16] [--repeats 1]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mlflow
import tensorflow as tf

from urban_detection.detection import augment, data, model as detmodel, train as dettrain
from urban_detection.detection.precision import precision, resolve
from urban_detection.tracking import log_metrics
from urban_detection.waymo.ingest import ingest_files
from urban_detection.waymo.synthetic import write_synthetic_trips

AUGS = [{"name": "random_horizontal_flip"}, {"name": "random_adjust_brightness"},
        {"name": "random_crop_image", "min_object_covered": 0.0, "aspect_ratio_range": [0.75, 3.0],
         "area_range": [0.75, 1.0], "overlap_thresh": 0.0}]
FAST_CPU_AUGS = [{"name": "random_horizontal_flip"}, {"name": "random_adjust_brightness"},
                 {"name": "random_adjust_contrast"}]
OPT = {"type": "momentum", "momentum": 0.9,
       "schedule": {"type": "cosine", "base_lr": 0.01, "warmup_lr": 0.001, "warmup_steps": 5, "total_steps": 10000}}


def measure(ds, steps, image_size, tmp, tag, on_log=None, mixed=False, warm=5):
    tf.keras.utils.set_random_seed(0)
    with precision(mixed):  # the model built and trained under the policy, the previous one restored
        model = detmodel.build_detector("retinanet_resnet18_fpn_small", image_size=image_size)
        dettrain.train(model, ds, None, steps=warm, checkpoint_dir=tmp / tag, checkpoint_every=10_000,
                       log_every=warm, optimizer=OPT, mixed_precision=mixed)  # traces the step (and fills a cache)
        t0 = time.perf_counter()
        res = dettrain.train(model, ds, None, steps=warm + steps, checkpoint_dir=tmp / tag, checkpoint_every=10_000,
                             log_every=10, on_log=on_log, mixed_precision=mixed)
        wall = time.perf_counter() - t0
    return res.images_per_sec, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--image-size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--augs", choices=("baseline", "fast_cpu"), default="baseline")
    ap.add_argument("--precision", default="false", help="false | auto | bfloat16 | float16")
    ap.add_argument("--repeats", type=int, default=1, help="full / cached measured in turn this many times")
    args = ap.parse_args()
    mixed = resolve({"false": False, "true": True}.get(args.precision.lower(), args.precision))
    augs = AUGS if args.augs == "baseline" else FAST_CPU_AUGS
    tmp = Path(tempfile.mkdtemp(prefix="train_bench_"))
    raw = write_synthetic_trips(tmp / "raw", n_trips=8, frames_per_trip=40, width=960, height=640, seed=1)
    result = ingest_files(raw, tmp / "trips", workers=2, stride=2, progress=False)
    paths = sorted(str(p) for p in (tmp / "trips").glob("*.tfrecord"))
    print(f"{result.report['frames_written']} frames in {len(paths)} trip files, image {args.image_size}, "
          f"batch {args.batch}, {args.steps} timed steps")

    def pipeline(cache):
        return data.make_dataset(paths, args.image_size, args.batch, training=True, cache=cache,
                                 augment_fn=augment.build_augmenter(augs), shuffle_buffer=256)

    # warm-up steps: the cached pipeline's first pass (every frame decoded once) is not timed
    warm_cached = -(-result.report["frames_written"] // args.batch) + 5
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    rows = []
    for r in range(args.repeats):
        for tag, cache, warm in (("full", False, 5), ("cached", True, warm_cached)):
            with mlflow.start_run():
                ips, wall = measure(pipeline(cache), args.steps, args.image_size, tmp, f"{tag}{r}",
                                    on_log=lambda m, s: log_metrics(m, s), mixed=mixed, warm=warm)
            rows.append((tag, ips, wall))

    images, targets = next(iter(data.make_dataset(paths, args.image_size, args.batch, training=True)))
    memory = tf.data.Dataset.from_tensors((images, targets)).repeat()
    ips_mem, wall_mem = measure(memory, args.steps, args.image_size, tmp, "memory", mixed=mixed)

    print(f"augmentations {args.augs}, compute {mixed or 'float32'}")
    for tag, ips, wall in rows:
        label = "full pipeline (TFRecords + augmentation + MLflow)" if tag == "full" else "same, cached decoded frames"
        print(f"{label:<50}{ips:7.2f} images/s  ({wall:.1f} s)")
    print(f"{'in-memory tensors, same model:':<50}{ips_mem:7.2f} images/s  ({wall_mem:.1f} s)")
    full = [ips for tag, ips, _ in rows if tag == "full"]
    cached = [ips for tag, ips, _ in rows if tag == "cached"]
    ips_full = sum(full) / len(full)
    print(f"ratio cached / full: {sum(cached) / len(cached) / ips_full:.3f}")
    print(f"ratio full / in-memory: {ips_full / ips_mem:.3f}  -> pipeline overhead {100 * (1 - ips_full / ips_mem):.1f}%")


if __name__ == "__main__":
    main()
