"""Benchmark: evaluation time of the test split and video rendering speed.

Prints
* evaluation of the test split: model inference (frames/s) and the COCO computation
  separately, plus the evaluation losses;
* rendering: frames/s of the whole render path (read + decode a raw segment at full
  rate, detect with the exported SavedModel, track, draw, encode H.264) beside bare
  model inference frames/s on the same, already decoded frames (SavedModel and Keras).

Model: the experiment's trained weights when the train pipeline has produced them
(``data/06_models/<experiment>/model``), else the same architecture with
random weights (inference cost is the same). Data: the project's test split when
ingest/split have run, else the real sample in ``../shared/data/waymo_processed_sample``,
else tiny synthetic trips. Rendering reads a synthetic raw segment written to a temp dir.

    ./dev.sh python benchmarks/evaluate_render.py [--experiment fast_cpu] [--frames 60] [--render-frames 40]
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "waymo_processed_sample"


def experiment_model_spec(name: str) -> dict:
    cfg_file = ROOT / "data" / "05_model_input" / "experiment_configs" / f"{name}.yml"
    if cfg_file.exists():
        return yaml.safe_load(cfg_file.read_text())["model"]
    params = yaml.safe_load((ROOT / "conf" / "base" / "parameters_train.yml").read_text())["train"]
    spec = dict(params["base"]["model"])
    spec.update((params["catalog"].get(name) or {}).get("model") or {})
    return spec


def load_model(name: str, image_size: int | None):
    from urban_detection.detection.model import build_detector

    from urban_detection.detection.trained import load_trained

    spec = experiment_model_spec(name)
    size = image_size or spec["image_size"]
    folder = ROOT / "data" / "06_models" / name / "model"
    if (folder / "model.json").is_file():
        trained = load_trained(folder)
        if size == trained.image_size:
            return trained.model, f"{name} trained model ({folder.relative_to(ROOT)}, step {trained.step})", size
    return build_detector(spec["arch"], image_size=size), f"{spec['arch']} with random weights", size


def test_paths(max_files: int) -> tuple[list[str], str]:
    manifest = ROOT / "data" / "03_primary" / "split_manifest.parquet"
    index = ROOT / "data" / "02_intermediate" / "trips" / "frame_index.parquet"
    if manifest.exists() and index.exists():
        from urban_detection.datasets import TripsDataset

        paths = TripsDataset(str(index.parent)).load().split_paths(pd.read_parquet(manifest), "test")
        if paths:
            return paths[:max_files], "project test split"
    if SAMPLE.is_dir():
        return sorted(str(p) for p in SAMPLE.glob("*.tfrecord"))[:max_files], f"real sample {SAMPLE.name}"
    raise SystemExit("no test split and no ../shared sample: run `kedro run --pipelines=ingest,split` first")


def bench_evaluation(model, paths, size, batch_size, max_frames) -> dict:
    from urban_detection.detection.data import make_dataset
    from urban_detection.detection.evaluate import evaluate_detections
    from urban_detection.detection.predict import evaluation_losses, predict_split

    predict_split(model, paths[:1], size, batch_size, max_frames=batch_size)  # warm-up (tracing)
    t0 = time.perf_counter()
    gt, dets = predict_split(model, paths, size, batch_size, max_frames=max_frames)
    inference = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = evaluate_detections(gt, dets, {"vehicle": 0.6, "pedestrian": 0.3, "cyclist": 0.4})
    coco = time.perf_counter() - t0
    t0 = time.perf_counter()
    batches = -(-len(gt) // batch_size)
    losses = evaluation_losses(model, make_dataset(paths, size, batch_size, training=False), batches)
    loss_s = time.perf_counter() - t0
    return {"frames": len(gt), "detections": len(result["detections"]), "inference_s": inference,
            "coco_s": coco, "losses_s": loss_s, "mAP": result["metrics"]["DetectionBoxes_Precision/mAP"],
            "loss": losses["loss/total"]}


def bare_inference_fps(detector, frames: list[np.ndarray], size: int, batch_size: int) -> float:
    from urban_detection.detection.predict import detect_batch

    detect_batch(detector, np.stack(frames[:batch_size]), size)  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(frames), batch_size):
        detect_batch(detector, np.stack(frames[i:i + batch_size]), size)
    return len(frames) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="fast_cpu")
    ap.add_argument("--image-size", type=int, default=None, help="default: the experiment's")
    ap.add_argument("--files", type=int, default=3, help="test TFRecords to evaluate")
    ap.add_argument("--frames", type=int, default=60, help="at most this many test frames")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--render-frames", type=int, default=40)
    ap.add_argument("--width", type=int, default=960, help="raw segment frame width (height = 2/3)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tf.get_logger().setLevel("ERROR")

    from urban_detection.detection.render import iter_camera_frames, render_video
    from urban_detection.detection.export import export_model, load_exported
    from urban_detection.waymo.synthetic import write_trip

    model, what, size = load_model(args.experiment, args.image_size)
    paths, source = test_paths(args.files)
    print(f"model: {what}, input {size}x{size}; CPU threads: {tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}")
    print(f"test data: {source}, {len(paths)} file(s), up to {args.frames} frames, batch {args.batch_size}")

    ev = bench_evaluation(model, paths, size, args.batch_size, args.frames)
    print("\n== evaluation (test split) ==")
    print(f"inference      : {ev['inference_s']:7.2f} s  for {ev['frames']} frames  "
          f"({ev['frames'] / ev['inference_s']:.1f} frames/s, {ev['detections']} detections)")
    print(f"COCO metrics   : {ev['coco_s']:7.2f} s  (ground truth + results JSON, COCOeval raw and large-box filtered, "
          f"PR curves)")
    print(f"eval losses    : {ev['losses_s']:7.2f} s")
    print(f"(mAP {ev['mAP']:.4f}, loss {ev['loss']:.4f})")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        segment = write_trip(tmp / "raw", 3, frames=args.render_frames, width=args.width,
                             height=args.width * 2 // 3, cameras=("FRONT",))
        files = export_model(model, tmp / "export", image_size=size)
        saved = load_exported(files["saved_model"])
        frames = [im for _, im in iter_camera_frames(segment, "FRONT")]
        bare_saved = bare_inference_fps(saved, frames, size, args.batch_size)
        bare_keras = bare_inference_fps(model, frames, size, args.batch_size)
        render_video(saved, iter_camera_frames(segment, "FRONT"), tmp / "warm.mp4", batch_size=args.batch_size,
                     image_size=size, max_frames=args.batch_size)
        results = {}
        for tracking in (False, True):
            results[tracking] = render_video(saved, iter_camera_frames(segment, "FRONT"), tmp / f"v{tracking}.mp4",
                                             fps=10, score_threshold=0.3, tracking=tracking,
                                             batch_size=args.batch_size, image_size=size)
    h, w = frames[0].shape[:2]
    print(f"\n== rendering ({len(frames)} raw frames {w}x{h}, full rate) ==")
    print(f"bare inference, SavedModel : {bare_saved:6.1f} frames/s (decoded frames, resize inside the model)")
    print(f"bare inference, Keras      : {bare_keras:6.1f} frames/s")
    for tracking, info in results.items():
        print(f"render video, tracking {'on ' if tracking else 'off'}: {info['frames_per_sec']:6.1f} frames/s "
              f"(read+decode+detect+draw+encode; inference {info['inference_seconds']:.2f} of {info['seconds']:.2f} s)"
              f"; persistence raw {info['persistence_raw']:.3f}"
              + (f", tracked {info['persistence_tracked']:.3f}" if tracking else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
