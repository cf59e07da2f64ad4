"""Cost of a seed-experiment training step: ``retinanet_resnet50_fpn_coco`` at 640 px.

Measured on this machine (CPU, float32): parameters, forward FLOPs per image
(TensorFlow's profiler on the frozen forward graph), forward+backward+update time
per image through ``detection.train.train`` (the project's training loop, momentum
SGD, in-memory batch of random images and boxes), resident memory after building
the model and peak resident memory while training, at two batch sizes (each in its
own process) to split training memory into a per-image and a fixed part.

Estimated (no GPU here, printed as estimates with what they come from): time per
1,000 steps at batch 8 on a V100 / T4 from the FLOP count and an assumed fraction
of the GPU's float32 peak, cross-checked against Detectron2's published
RetinaNet-R50-FPN training speed; GPU memory at batch 8 from the measured
per-image training memory.

    ./dev.sh python benchmarks/seed_step_cost.py [--image-size 640] [--batches 1 2] [--steps 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from urban_detection.detection import model as detmodel, train as dettrain

ARCH = "retinanet_resnet50_fpn_coco"
SEED_BATCH = 8
OPT = {"type": "momentum", "momentum": 0.9,
       "schedule": {"type": "cosine", "base_lr": 0.004, "warmup_lr": 0.0013333, "warmup_steps": 2000,
                    "total_steps": 25000}}
# Peak float32 throughput (TFLOP/s, no tensor cores) from NVIDIA's data sheets.
GPU_FP32_TFLOPS = {"V100": 15.7, "T4": 8.1}
UTILISATION = (0.3, 0.5)  # assumed share of the peak reached by a float32 conv-net training step
# Detectron2 MODEL_ZOO, RetinaNet R50-FPN 1x: 0.205 s/iter, 16 images of ~1333x800 on 8 V100 (2 per GPU),
# 4.1 GB peak memory per GPU (PyTorch, float32).
D2_SEC_PER_ITER, D2_IMAGES_PER_GPU, D2_PIXELS, D2_MEMORY_GB = 0.205, 2, 1333 * 800, 4.1


def rss_mb() -> float:
    """Current resident memory of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def forward_flops(model, image_size: int) -> int:
    """Floating-point operations of one forward pass on one image (profiler count of the frozen graph)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, image_size, image_size, 3], tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    opts = tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
    opts = opts.with_empty_output().build()
    info = tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                         options=opts)
    return int(info.total_float_ops)


def random_batch(batch: int, image_size: int, boxes_per_image: int = 8, seed: int = 0):
    """Random images and boxes (pixel yxyx, labels 0..2, half of the slots padding -1) as the input pipeline gives."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch, image_size, image_size, 3)).astype("float32")
    n = boxes_per_image // 2
    corners = np.sort(rng.uniform(0, image_size, (batch, n, 2, 2)), axis=2)  # (y, x) min and max
    boxes = np.full((batch, boxes_per_image, 4), -1.0, np.float32)
    boxes[:, :n] = np.concatenate([corners[:, :, 0], corners[:, :, 1]], axis=-1)
    labels = np.full((batch, boxes_per_image), -1, np.int32)
    labels[:, :n] = rng.integers(0, 3, (batch, n))
    return images, {"boxes": boxes, "labels": labels}


def measure(size: int, batch: int, steps: int) -> dict:
    """Build the model and train ``1 + steps`` steps at ``batch``; the figures."""
    out = {"batch": batch, "rss_start_mb": rss_mb()}
    model = detmodel.build_detector(ARCH, size)  # random weights: the cost does not depend on them
    out.update(rss_model_mb=rss_mb(), params=model.count_params(), trainable=detmodel.count_params(model))
    images, targets = random_batch(batch, size)
    ds = tf.data.Dataset.from_tensors((images, targets)).repeat()
    with tempfile.TemporaryDirectory(prefix="seed_step_cost_") as tmp:
        t0 = time.perf_counter()
        res = dettrain.train(model, ds, None, steps=1 + steps, checkpoint_dir=Path(tmp),
                             checkpoint_every=10**9, log_every=1 + steps, optimizer=OPT)
        out["wall_s"] = time.perf_counter() - t0
    out.update(images_per_sec=res.images_per_sec, peak_rss_mb=peak_rss_mb(), load_end=os.getloadavg()[0])
    return out


def run_child(size: int, batch: int, steps: int) -> dict:
    """:func:`measure` in a fresh process, so each batch size has its own peak memory."""
    cmd = [sys.executable, __file__, "--child", "--image-size", str(size), "--batch", str(batch),
           "--steps", str(steps)]
    lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image-size", type=int, default=640)
    ap.add_argument("--batches", type=int, nargs=2, default=[1, 2], help="two batch sizes (memory slope)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps after the first (tracing) one")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = args.image_size
    if args.child:
        print(json.dumps(measure(size, args.batch, args.steps)))
        return
    print(f"{ARCH}, {size} px, float32, CPU: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    small, large = (run_child(size, b, args.steps) for b in sorted(args.batches))
    flops = forward_flops(detmodel.build_detector(ARCH, size), size)  # here: the profiler's memory is not counted
    print(f"parameters: {small['params']:,} ({small['trainable']:,} trainable); forward {flops / 1e9:.1f} GFLOPs "
          f"per image (~{3 * flops / 1e9:.0f} GFLOPs forward+backward)")
    for r in (small, large):
        print(f"CPU train step at batch {r['batch']}: {1 / r['images_per_sec']:.2f} s per image over {args.steps} "
              f"steps after the tracing step (whole call {r['wall_s']:.0f} s, load average {r['load_end']:.1f} at "
              f"its end); memory {r['rss_model_mb']:.0f} MB after building the model, peak {r['peak_rss_mb']:.0f} MB")
    per_image_mb = (large["peak_rss_mb"] - small["peak_rss_mb"]) / (large["batch"] - small["batch"])
    fixed_mb = small["peak_rss_mb"] - small["rss_start_mb"] - small["batch"] * per_image_mb
    print(f"training memory: {per_image_mb:.0f} MB per image in the batch + {fixed_mb:.0f} MB fixed "
          "(model, gradients, optimizer slots, traced graphs; TensorFlow's own start-up excluded)")

    step_flops = 3 * flops * SEED_BATCH
    print(f"\nESTIMATES for the seed experiments (batch {SEED_BATCH}, {size} px, float32), not measured on a GPU:")
    print(f"  one step = 3 x forward x {SEED_BATCH} images = {step_flops / 1e12:.2f} TFLOPs")
    for gpu, peak_tflops in GPU_FP32_TFLOPS.items():
        lo, hi = (step_flops / (peak_tflops * 1e12 * u) * 1000 / 60 for u in reversed(UTILISATION))
        print(f"  {gpu} ({peak_tflops} TFLOP/s fp32 peak, {UTILISATION[0]:.0%}-{UTILISATION[1]:.0%} of it): "
              f"{lo:.0f}-{hi:.0f} min per 1,000 steps")
    d2_pixels_per_sec = D2_IMAGES_PER_GPU * D2_PIXELS / D2_SEC_PER_ITER
    d2_minutes = SEED_BATCH * size * size / d2_pixels_per_sec * 1000 / 60
    print(f"  cross-check, Detectron2 RetinaNet-R50-FPN on a V100 ({D2_SEC_PER_ITER} s per {D2_IMAGES_PER_GPU} images "
          f"of 1333x800) scaled by pixels: {d2_minutes:.0f} min per 1,000 steps")
    est_gb = (fixed_mb + SEED_BATCH * per_image_mb) / 1024
    d2_gb = D2_MEMORY_GB * SEED_BATCH * size * size / (D2_IMAGES_PER_GPU * D2_PIXELS)
    print(f"  GPU memory at batch {SEED_BATCH}: ~{est_gb:.1f} GB from the memory measured here "
          f"({SEED_BATCH} x {per_image_mb:.0f} MB + {fixed_mb:.0f} MB); Detectron2's {D2_MEMORY_GB} GB for "
          f"{D2_IMAGES_PER_GPU} images of 1333x800 scaled by pixels: ~{d2_gb:.1f} GB. "
          "train.mixed_precision=true roughly halves the activations.")


if __name__ == "__main__":
    main()
