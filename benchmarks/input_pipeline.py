"""Benchmark: training-input capacity (decode, the baseline augmentations, resize, batch) in images/s per core.

Runs ``detection.data.make_dataset(training=True)`` with the ``baseline`` experiment's
augmentations (horizontal flip, random_crop_image) over processed 640x640 frames, at 640 and
320 px, with TensorFlow limited to 1 core and then to every core, each in its own process
(TensorFlow fixes its thread pools once per process). Nothing is trained: this is how fast the
CPU side can feed a GPU. Prints images/s and images/s per core, and, from a cited RetinaNet-50
GPU training rate, how many CPU cores one GPU needs.

    ./dev.sh python benchmarks/input_pipeline.py [--source-dir ../shared/data/waymo_processed_sample] [--batches 40]

Without ``--source-dir`` (or when it is missing) 24 synthetic trips are rendered at 640x640 first.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared/data/waymo_processed_sample"
# Detectron2 model zoo, COCO-Detection/retinanet_R_50_FPN_1x: 0.205 s/iter for 16 images on 8 V100 GPUs
# (2 images per GPU, short side 640-800 px) = 16 / 0.205 / 8 images/s per GPU.
GPU_IMAGES_PER_S = 16 / 0.205 / 8
GPU_SOURCE = "Detectron2 model zoo, RetinaNet R50-FPN 1x: 0.205 s/iter, 16 images on 8 V100s"


def measure(paths: list[str], image_size: int, threads: int, batches: int, batch_size: int) -> float:
    """Images/s of the training input pipeline (after 5 warm-up batches) with ``threads`` cores."""
    import tensorflow as tf
    import yaml

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from urban_detection.detection import augment, data

    augs = yaml.safe_load((REPO / "conf/base/parameters_train.yml").read_text())["train"]["base"]["augmentations"]
    ds = data.make_dataset(paths, image_size, batch_size, training=True, augment_fn=augment.build_augmenter(augs),
                           shuffle_buffer=256)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    it = iter(ds.with_options(options))
    for _ in range(5):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        images, _ = next(it)
        images.numpy()
    return batches * batch_size / (time.perf_counter() - start)


def sources(source_dir: Path | None, tmp: Path) -> list[str]:
    if source_dir and source_dir.is_dir():
        return sorted(str(p) for p in source_dir.glob("*.tfrecord"))
    from urban_detection.waymo.ingest import ingest_files
    from urban_detection.waymo.synthetic import write_synthetic_trips

    segments = write_synthetic_trips(tmp / "raw", n_trips=24, frames_per_trip=20, width=960, height=640, seed=1,
                                     cameras=("FRONT",))
    ingest_files(segments, tmp / "trips", size=(640, 640), stride=1, workers=1)
    return sorted(str(p) for p in (tmp / "trips").glob("*.tfrecord"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", type=Path, default=SAMPLE if SAMPLE.is_dir() else None)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one measurement in this process: "paths.json:size:threads"
        listing, size, threads = args.child.rsplit(":", 2)
        print(json.dumps(measure(json.loads(Path(listing).read_text()), int(size), int(threads), args.batches,
                                 args.batch_size)))
        return
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        paths = sources(args.source_dir, Path(tmp))
        listing = Path(tmp) / "paths.json"
        listing.write_text(json.dumps(paths))
        print(f"{len(paths)} trip files from {args.source_dir or 'synthetic trips'}; baseline augmentations; "
              f"batch {args.batch_size}, {args.batches} batches per figure; {cores} cores here")
        print(f"{'size':>5s} {'cores':>5s} {'images/s':>9s} {'per core':>9s} {'cores per GPU':>14s}")
        for size in (640, 320):
            for threads in sorted({1, cores}):
                done = subprocess.run([sys.executable, __file__, "--child", f"{listing}:{size}:{threads}",
                                       "--batches", str(args.batches), "--batch-size", str(args.batch_size)],
                                      capture_output=True, text=True, check=True)
                rate = float(done.stdout.strip().splitlines()[-1])
                print(f"{size:5d} {threads:5d} {rate:9.1f} {rate / threads:9.1f} "
                      f"{GPU_IMAGES_PER_S / (rate / threads):14.2f}")
    print(f"one GPU trains RetinaNet-50 at {GPU_IMAGES_PER_S:.1f} images/s ({GPU_SOURCE}); "
          "cores per GPU = that rate / images/s per core")


if __name__ == "__main__":
    main()
