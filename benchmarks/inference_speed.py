"""Benchmark: inference frames/s of the exported SavedModel and of the served MLflow pyfunc against
plain ``model.predict``, at 320 and 640 px, batch 1 and 8, in one run of this script.

The weights are a trained experiment's (``--project-dir``, ``--experiment``: its
``data/06_models/<experiment>/model``), built at each input size (the network is fully
convolutional, so the same weights run at 320 and 640 px and NMS sees realistic scores). The
frames are real 640x640 Waymo frames from ``../shared/data/waymo_processed_sample`` when it
is there, else the project's test trips. Each path is timed on the same frames:

* ``model.predict``: Keras on float images already resized to the input (network + decoding + NMS);
* SavedModel: uint8 frames of any size in (resize inside), the Object Detection API outputs out;
* served pyfunc: JPEG bytes in (decode + the SavedModel), one row per image out, as
  ``mlflow models serve`` runs it (logged to a throw-away SQLite store here).

    ./dev.sh python benchmarks/inference_speed.py --project-dir DIR [--experiment fast_cpu] [--repeats 5]
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared/data/waymo_processed_sample"


def frames(project: Path, count: int) -> list[np.ndarray]:
    from urban_detection.detection.render import iter_trip_frames

    files = sorted(SAMPLE.glob("*.tfrecord")) if SAMPLE.is_dir() else sorted(
        (project / "data/02_intermediate/trips").rglob("*.tfrecord"))
    out: list[np.ndarray] = []
    for file in files:
        out += [image for _, image in iter_trip_frames(file)][:4]
        if len(out) >= count:
            return out[:count]
    return out


def rate(fn, batches: list, repeats: int) -> float:
    """Frames/s of ``fn`` over ``batches`` (one warm-up pass, then the best of ``repeats`` passes)."""
    for batch in batches[:2]:
        fn(batch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            fn(batch)
        best = min(best, time.perf_counter() - start)
    return sum(len(b) for b in batches) / best


def served_model(export_dir: Path, store: Path):
    import mlflow

    from urban_detection.serving import log_served_model

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    mlflow.set_experiment("inference_speed")
    with mlflow.start_run() as run:
        run_id = run.info.run_id
    log_served_model(export_dir, run_id, "inference_speed")
    return mlflow.pyfunc.load_model(f"runs:/{run_id}/served_model")


def main() -> None:
    import pandas as pd
    import tensorflow as tf
    from PIL import Image

    from urban_detection.detection.export import ExportedDetector, export_model
    from urban_detection.detection.model import build_detector
    from urban_detection.detection.trained import WEIGHTS_FILE, read_metadata

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    parser.add_argument("--experiment", default="fast_cpu")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = args.project_dir.resolve() / "data/06_models" / args.experiment / "model"
    spec = read_metadata(folder)["config"]["model"]
    images = frames(args.project_dir.resolve(), args.frames)
    jpegs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    print(f"{args.experiment}: {spec['arch']} trained at {spec['image_size']} px; {len(images)} frames of "
          f"{images[0].shape[1]}x{images[0].shape[0]}; best of {args.repeats} passes")
    print(f"{'size':>5s} {'batch':>5s} {'model.predict':>14s} {'SavedModel':>11s} {'served pyfunc':>14s} "
          f"{'SavedModel/predict':>19s} {'pyfunc/predict':>15s}")
    for size in (320, 640):
        model = build_detector(spec["arch"], image_size=size, weights=str(folder / WEIGHTS_FILE),
                               **(spec.get("overrides") or {}))
        with tempfile.TemporaryDirectory() as tmp:
            export_model(model, Path(tmp) / "export", image_size=size)
            exported = ExportedDetector(Path(tmp) / "export" / "saved_model")
            pyfunc = served_model(Path(tmp) / "export", Path(tmp))
            resized = tf.image.resize(np.stack(images).astype(np.float32), [size, size]).numpy()
            for batch in (1, 8):
                chunks = range(0, len(images), batch)
                keras_fps = rate(lambda x: model.predict(x, batch_size=batch, verbose=0),
                                 [resized[i:i + batch] for i in chunks], args.repeats)
                saved_fps = rate(exported, [np.stack(images[i:i + batch]) for i in chunks], args.repeats)
                served_fps = rate(pyfunc.predict, [pd.DataFrame({"image": jpegs[i:i + batch]}) for i in chunks],
                                  args.repeats)
                print(f"{size:5d} {batch:5d} {keras_fps:14.1f} {saved_fps:11.1f} {served_fps:14.1f} "
                      f"{saved_fps / keras_fps:19.2f} {served_fps / keras_fps:15.2f}")
    print("frames/s; ratios > 1: faster than model.predict")


if __name__ == "__main__":
    main()
