"""Benchmark: speed of the training step in float32, bfloat16 compute and with XLA, one after the other.

The default experiment's model (small RetinaNet, ResNet-18-like, from scratch) at 320 px, batch 8,
fed one in-memory batch again and again (no input pipeline, no logging), Adam at a constant rate.
Each mode: 5 steps that trace the step function, then ``--steps`` timed steps. Prints images/s
per mode and the ratio to float32. bfloat16 pays only on CPUs with AVX512-BF16 or AMX (see
``grep -o 'avx512_bf16\\|amx_bf16' /proc/cpuinfo``).

    ./dev.sh python benchmarks/step_precision.py [--steps 40] [--modes fp32 bf16 xla]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import tensorflow as tf

from urban_detection.detection import data, model as detmodel, train as dettrain
from urban_detection.detection.precision import precision
from urban_detection.waymo.ingest import ingest_files
from urban_detection.waymo.synthetic import write_synthetic_trips

OPT = {"type": "adam", "global_clipnorm": 10.0, "schedule": {"type": "constant", "learning_rate": 1e-3}}
MODES = {"fp32": (False, False), "bf16": ("bfloat16", False), "xla": (False, True), "bf16xla": ("bfloat16", True)}


def images_per_sec(batch: tf.data.Dataset, mode: str, steps: int, folder: Path) -> float:
    mixed, jit = MODES[mode]
    with precision(mixed):
        tf.keras.utils.set_random_seed(0)
        model = detmodel.build_detector("retinanet_resnet18_fpn_small", image_size=320)
        common = dict(checkpoint_dir=folder / mode, checkpoint_every=10_000, mixed_precision=mixed, jit_compile=jit)
        dettrain.train(model, batch, None, steps=5, log_every=5, optimizer=OPT, **common)  # traces the step
        return dettrain.train(model, batch, None, steps=5 + steps, log_every=steps, **common).images_per_sec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["fp32", "bf16", "xla"])
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="step_precision_"))
    raw = write_synthetic_trips(tmp / "raw", n_trips=2, frames_per_trip=20, width=960, height=640, seed=1)
    ingest_files(raw, tmp / "trips", workers=1, stride=2, progress=False)
    paths = sorted(str(p) for p in (tmp / "trips").glob("*.tfrecord"))
    images, targets = next(iter(data.make_dataset(paths, 320, 8, training=True)))
    batch = tf.data.Dataset.from_tensors((images, targets)).repeat()
    rates = {mode: images_per_sec(batch, mode, args.steps, tmp) for mode in args.modes}
    reference = rates.get("fp32")
    for mode, rate in rates.items():
        ratio = f"  {rate / reference:.2f}x float32" if reference else ""
        print(f"{mode:8s} {rate:6.2f} images/s{ratio}")


if __name__ == "__main__":
    main()
