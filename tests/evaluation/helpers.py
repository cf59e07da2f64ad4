"""Tiny data and a tiny trained detector for the evaluation/export/render tests."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image, ImageDraw
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from urban_detection.waymo.example import DetectionExample, encode_example

IMAGE_SIZE = 64
ARCH = "retinanet_resnet18_fpn_small"
# (label, colour, (h, w) as fractions of the image)
OBJECTS = [(1, (220, 30, 30), (0.30, 0.45)), (2, (30, 200, 30), (0.45, 0.16))]


def frame(seed: int, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grey frame with a red 'vehicle' and a green 'pedestrian' at seeded positions."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(90, 130, (size, size, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    boxes, labels = [], []
    for label, colour, (h, w) in OBJECTS:
        y0, x0 = rng.uniform(0.02, 0.98 - h), rng.uniform(0.02, 0.98 - w)
        box = np.array([y0, x0, y0 + h, x0 + w], np.float32)
        draw.rectangle([box[1] * size, box[0] * size, box[3] * size - 1, box[2] * size - 1], fill=colour)
        boxes.append(box)
        labels.append(label)
    return np.asarray(img), np.stack(boxes), np.asarray(labels, np.int32)


def moving_frames(n: int, hide_pedestrian_every: int = 3, size: int = IMAGE_SIZE) -> list[np.ndarray]:
    """Frames of the two objects drifting right; the pedestrian is missing from every
    ``hide_pedestrian_every``-th frame (a detector then flickers, a tracker bridges the gap)."""
    rng = np.random.default_rng(0)
    background = rng.integers(90, 130, (size, size, 3), dtype=np.uint8)
    out = []
    for t in range(n):
        img = Image.fromarray(background.copy())
        draw = ImageDraw.Draw(img)
        for k, (label, colour, (h, w)) in enumerate(OBJECTS):
            if label == 2 and hide_pedestrian_every and t % hide_pedestrian_every == 1:
                continue
            y0, x0 = (0.1, 0.05 + 0.01 * t) if k == 0 else (0.45, 0.75 - 0.01 * t)
            draw.rectangle([x0 * size, y0 * size, (x0 + w) * size - 1, (y0 + h) * size - 1], fill=colour)
        out.append(np.asarray(img))
    return out


def write_trip(path: Path, trip: str, seeds: list[int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i, seed in enumerate(seeds):
            image, boxes, labels = frame(seed)
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="JPEG", quality=95)
            writer.write(encode_example(DetectionExample(
                image=buf.getvalue(), height=IMAGE_SIZE, width=IMAGE_SIZE, filename=f"{trip}_{i * 10}.jpg",
                source_id=f"{trip}/{i * 10}", boxes=boxes, labels=labels)))
    return path


# Frame seeds of each trip (a seed fixes the objects' positions). Train shares none with val/test,
# so quality checks on val/test frames measure detection of unseen frames, not memorisation.
TRIP_SEEDS = {"trip_train": ("train", list(range(1000, 1048))), "trip_val": ("val", [100, 101, 102, 103]),
              "trip_test": ("test", [104, 105, 106, 107, 108])}


def make_dataset_dir(root: Path) -> dict:
    """Three trips (train/val/test) plus the frame index and split manifest pointing at them."""
    trips = TRIP_SEEDS
    train_seeds = set(trips["trip_train"][1])
    assert not train_seeds & set(trips["trip_val"][1] + trips["trip_test"][1]), "held-out frames in train"
    rows, manifest = [], []
    for trip, (split, seeds) in trips.items():
        path = write_trip(root / "trips" / f"{trip}.tfrecord", trip, seeds)
        manifest.append({"trip": trip, "split": split})
        for i, _ in enumerate(seeds):
            rows.append({"trip": trip, "frame": i * 10, "path": str(path)})
    return {"frame_index": pd.DataFrame(rows), "split_manifest": pd.DataFrame(manifest),
            "paths": {t: str(root / "trips" / f"{t}.tfrecord") for t in trips}}


def config(steps: int) -> dict:
    return {
        "name": "tiny", "parent": None,
        "model": {"arch": ARCH, "image_size": IMAGE_SIZE, "weights": None},
        "optimizer": {"type": "adam", "schedule": {"type": "constant", "learning_rate": 0.003}},
        "augmentations": [],
        "train": {"batch_size": 4, "steps": steps, "checkpoint_every": steps},
    }


def train_tiny(model_dir: Path, paths: list[str], steps: int = 250):
    """Train the small detector a few steps on ``paths`` (the train trip only: it learns to find the
    two coloured boxes anywhere, checked on the held-out val/test frames); returns the model."""
    from urban_detection.detection.data import make_dataset
    from urban_detection.detection.model import build_detector
    from urban_detection.detection.train import train

    tf.keras.utils.set_random_seed(0)
    cfg = config(steps)
    model = build_detector(ARCH, image_size=IMAGE_SIZE)
    ds = make_dataset(paths, IMAGE_SIZE, 4, training=True, shuffle_buffer=32, cache=True, seed=0, deterministic=True)
    train(model, ds, None, steps=steps, checkpoint_dir=model_dir / "checkpoints", checkpoint_every=steps,
          log_every=50, optimizer=cfg["optimizer"])
    model.save_weights(model_dir / "final.weights.h5")  # as the train pipeline does at the end
    return model, cfg


def plain_pycocotools(gt_file, det_file):
    """The 12 stats and per-class AP@[.5:.95] straight from pycocotools on the JSON files."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes(str(det_file))
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        p = ev.eval["precision"][:, :, k, 0, -1]
        per_class[gt.cats[cat]["name"]] = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
    return list(ev.stats), per_class
