"""Benchmark: the project's default detector against a peer, Ultralytics YOLOv8n from scratch.

Both detectors see the same data and the same wall-time budget, and are scored by the
project's own COCO evaluation (pycocotools' rules, Object Detection API names) on the same test
ground truth:

1. the project's ingested trips (frame index + trip TFRecords of TF OD API tf.Examples)
   and its verified split manifest are exported to Ultralytics' YOLO format in a temp
   folder (the encoded images are copied as they are, boxes become YOLO label files);
2. YOLOv8n is built from ``yolov8n.yaml`` (no pretrained weights, nothing downloaded)
   and trained for the budget with Ultralytics' ``time=`` argument (it stops when the
   budget is spent and sizes its schedule from the measured epoch time), at the default
   experiment's image size (Ultralytics letterboxes to it; the project stretches);
3. the project's model is either the default run's (its export, else its trained
   weights; the script says which, and that it was trained for its own budget) or, with
   ``--train-project``, the default experiment trained for each budget: steps scale with
   the budget at the default run's training speed (so 1x is the default run's own model,
   and 3x is 3x its steps, the cosine schedule set to them); without a default run, a
   short calibration run measures the speed;
4. both are run over the test split and scored; mAP and mAP@.50IOU are printed with
   their ratio (YOLO / project), for each budget multiple (default 1x and 3x).

The budget defaults to the default experiment's measured training time (from its trained
model's metadata when present, else 550 s).

Ultralytics and torch are the project's ``peer`` extra (``pip install -e ".[peer]"``),
not runtime dependencies. No network: ``YOLO_OFFLINE=1``, a temp settings folder with
telemetry (``sync``) and every logger integration (MLflow included) off, ``amp=False``
(its check downloads weights), ``plots=False`` and fonts resolved locally. When
torchvision's C++ ops do not load against the installed torch (a CPU-only torch with a
CUDA build of torchvision), this script registers a pure-torch NMS as ``torchvision::nms``
before torchvision is imported: a runtime patch of this script only.

    ./dev.sh python benchmarks/peer_yolo.py [--project-dir .] [--budget-seconds 550] [--multipliers 1 3]
        [--train-project] [--max-test-frames N] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
INDEX_CANDIDATES = ("data/02_intermediate/trips/frame_index.parquet", "data/02_intermediate/frame_index.parquet")
MANIFEST = "data/03_primary/split_manifest.parquet"
EVAL_INDEX = "data/02_intermediate/eval_trips/frame_index.parquet"  # the frames the evaluate pipeline scores
FALLBACK_BUDGET_S = 550.0
MIN_BOX_SIDE = 1e-4  # as the project's training input (detection.data.MIN_BOX_SIDE)
MAP = "DetectionBoxes_Precision/mAP"
MAP50 = "DetectionBoxes_Precision/mAP@.50IOU"
# Ultralytics settings switched off: telemetry and every logger integration (its MLflow one would log runs).
OFF_SETTINGS = ("sync", "hub", "clearml", "comet", "dvc", "mlflow", "neptune", "raytune", "tensorboard", "wandb")
SHOWN = (MAP, MAP50, "DetectionBoxes_Precision/mAP@.75IOU", "DetectionBoxes_Recall/AR@100")

log = logging.getLogger("peer_yolo")


# --------------------------------------------------------------------------- the project's data


def read_index(project_dir: Path) -> tuple[pd.DataFrame, Path]:
    """The frame index (either location) with ``path`` made absolute."""
    for rel in INDEX_CANDIDATES:
        file = project_dir / rel
        if file.is_file():
            index = pd.read_parquet(file)
            index["path"] = [str(resolve_trip(p, project_dir, file.parent)) for p in index["path"]]
            return index, file
    raise SystemExit(f"no frame index in {project_dir} ({' or '.join(INDEX_CANDIDATES)}): "
                     "run `kedro run --pipelines=ingest,split` first")


def resolve_trip(path: str, project_dir: Path, index_dir: Path) -> Path:
    """A trip path as stored in the index: absolute, relative to the project, or to the index's folder."""
    p = Path(path)
    if p.is_absolute():
        return p
    for base in (project_dir, index_dir):
        if (base / p).is_file():
            return base / p
    return index_dir / p


def split_paths(project_dir: Path) -> dict[str, list[str]]:
    """Trip TFRecords per split (train, val, test) of the verified split manifest. Test comes from the
    evaluate pipeline's frames (``eval_trips``) when they exist, as the project's own evaluation."""
    index, _ = read_index(project_dir)
    manifest_file = project_dir / MANIFEST
    if not manifest_file.is_file():
        raise SystemExit(f"no split manifest {manifest_file}: run `kedro run --pipelines=split` first")
    manifest = pd.read_parquet(manifest_file)
    out = {}
    for split in ("train", "val", "test"):
        trips = set(manifest.loc[manifest.split == split, "trip"])
        out[split] = sorted(index.loc[index.trip.isin(trips), "path"].unique())
        if not out[split]:
            raise SystemExit(f"split {split!r} has no trip TFRecord in {manifest_file}")
    eval_index = project_dir / EVAL_INDEX
    if eval_index.is_file():  # score on the evaluate pipeline's frames (every frame of the test trips)
        frames = pd.read_parquet(eval_index)
        tests = set(manifest.loc[manifest.split == "test", "trip"])
        paths = sorted({str(eval_index.parent / p) for p in frames.loc[frames.trip.isin(tests), "path"]})
        if paths:
            out["test"] = paths
    return out


def train_params(project_dir: Path) -> dict:
    return yaml.safe_load((project_dir / "conf" / "base" / "parameters_train.yml").read_text())["train"]


def default_experiment(project_dir: Path, steps: int | None = None, image_size: int | None = None) -> dict:
    """The resolved config of the default experiment (first of ``train.experiments``), optionally
    with other ``steps`` (a cosine schedule without ``total_steps`` follows them; a warm-up longer
    than the run is cut to a tenth of it, with a warning) and image size."""
    from urban_detection.detection.config import deep_merge, resolve_experiments

    params = train_params(project_dir)
    name = list(params["experiments"])[0]
    settings: dict = {}
    if steps is not None:
        settings["train"] = {"steps": int(steps)}
        own = deep_merge(params["base"], params["catalog"].get(name) or {})
        sched = own.get("optimizer", {}).get("schedule", {})
        if int(sched.get("warmup_steps") or 0) + int(sched.get("hold_base_rate_steps") or 0) > steps:
            log.warning("%d steps are fewer than %s's warm-up (%s): warm-up cut to %d steps", steps, name,
                        sched.get("warmup_steps"), steps // 10)
            settings["optimizer"] = {"schedule": {"warmup_steps": steps // 10, "hold_base_rate_steps": 0}}
    if image_size is not None:
        settings["model"] = {"image_size": int(image_size)}
    return resolve_experiments({**params, "experiments": [name], "settings": settings})[name]


def measured_training_seconds(project_dir: Path, name: str, batch_size: int) -> tuple[float, str]:
    """The default run's training time: its recorded seconds, else steps x batch / images per second."""
    candidates = [project_dir / "data/06_models" / name / "model/model.json",
                  project_dir / "data/06_models" / name / "train_result.json"]
    for file in candidates:
        if not file.is_file():
            continue
        meta = json.loads(file.read_text())
        summary = meta.get("summary", meta)
        for key in ("train_seconds", "seconds"):
            if summary.get(key):
                return float(summary[key]), f"{file.relative_to(project_dir)} {key}"
        steps = summary.get("final_step", meta.get("step"))
        ips = summary.get("images_per_sec")
        start = summary.get("start_step", 0) or 0
        if steps and ips:
            return (int(steps) - int(start)) * batch_size / float(ips), \
                f"{file.relative_to(project_dir)}: {int(steps) - int(start)} steps x {batch_size} / {ips:.1f} img/s"
    return FALLBACK_BUDGET_S, "no trained default run found: the documented 550 s"


# --------------------------------------------------------------------------- YOLO format


def yolo_lines(boxes: np.ndarray, labels: np.ndarray, class_index: dict[int, int], report: dict) -> list[str]:
    """YOLO label lines ``class xc yc w h`` (normalised) of normalised yxyx boxes; unknown labels and
    degenerate boxes are counted in ``report`` and left out, as in the project's training input."""
    lines = []
    for (ymin, xmin, ymax, xmax), label in zip(np.clip(boxes, 0.0, 1.0), labels):
        if int(label) not in class_index:
            report["unknown_label_boxes"] = report.get("unknown_label_boxes", 0) + 1
            continue
        if ymax - ymin <= MIN_BOX_SIDE or xmax - xmin <= MIN_BOX_SIDE:
            report["degenerate_boxes"] = report.get("degenerate_boxes", 0) + 1
            continue
        lines.append(f"{class_index[int(label)]} {(xmin + xmax) / 2:.6f} {(ymin + ymax) / 2:.6f} "
                     f"{xmax - xmin:.6f} {ymax - ymin:.6f}")
    return lines


def export_split(paths: list[str], out_dir: Path, split: str, class_index: dict[int, int],
                 report: dict) -> dict[tuple[str, str], Path]:
    """Write ``images/<split>/`` and ``labels/<split>/``; returns ``(trip path, source_id) -> image file``."""
    from urban_detection.waymo.example import decode_example
    from urban_detection.waymo.read import iter_examples

    image_dir, label_dir = out_dir / "images" / split, out_dir / "labels" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    files: dict[tuple[str, str], Path] = {}
    for path, record, serialized in iter_examples(paths, report):
        try:
            ex = decode_example(serialized)
        except ValueError as exc:
            log.warning("%s record %d: %s; skipped", path, record, exc)
            report["bad_records"] = report.get("bad_records", 0) + 1
            continue
        ext = "png" if ex.image[:4] == b"\x89PNG" else "jpg"
        stem = f"{Path(path).stem}_{record:05d}"
        (image_dir / f"{stem}.{ext}").write_bytes(ex.image)
        lines = yolo_lines(ex.boxes, ex.labels, class_index, report)
        (label_dir / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        files[(path, ex.source_id)] = image_dir / f"{stem}.{ext}"
        report[f"{split}_frames"] = report.get(f"{split}_frames", 0) + 1
    return files


def export_yolo_dataset(splits: dict[str, list[str]], out_dir: Path) -> tuple[Path, dict, dict]:
    """The three splits in YOLO format plus ``data.yaml``; returns (yaml path, test image files, report)."""
    from urban_detection.waymo.example import LABEL_MAP

    class_index = {label: k for k, label in enumerate(LABEL_MAP)}
    report: dict = {}
    test_files = {}
    for split, paths in splits.items():
        files = export_split(paths, out_dir, split, class_index, report)
        if split == "test":
            test_files = files
    data_yaml = out_dir / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "path": str(out_dir), "train": "images/train", "val": "images/val", "test": "images/test",
        "names": {k: LABEL_MAP[label] for label, k in class_index.items()},
    }, sort_keys=False))
    return data_yaml, test_files, report


# --------------------------------------------------------------------------- Ultralytics, offline


def _torchvision_ops_load() -> bool:
    import importlib.util

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    try:
        torch.ops.load_library(str(next(Path(spec.origin).parent.glob("_C*.so"))))
        return True
    except (StopIteration, OSError, RuntimeError):
        return False


def pure_torch_nms(boxes, scores, iou_threshold: float):
    """Greedy NMS of xyxy ``boxes`` (indices kept, best score first), as ``torchvision.ops.nms``."""
    import torch

    order = torch.argsort(scores, descending=True, stable=True)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    keep = []
    while order.numel():
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter).clamp(min=1e-12)
        order = rest[iou <= iou_threshold]
    return torch.stack(keep) if keep else torch.zeros(0, dtype=torch.int64)


_NMS_LIBRARY = None  # the torch.library registration must stay alive


def patch_torchvision_nms() -> bool:
    """Register :func:`pure_torch_nms` as ``torchvision::nms`` when torchvision's C++ ops do not load.

    Must run before torchvision is imported (Ultralytics imports it). Returns True when patched.
    """
    global _NMS_LIBRARY
    import torch

    if "torchvision" in sys.modules or _torchvision_ops_load():
        return False
    _NMS_LIBRARY = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        _NMS_LIBRARY.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _NMS_LIBRARY.impl(op, pure_torch_nms, "CPU")
    import torchvision.ops.boxes

    torchvision.ops.boxes._assert_has_ops = lambda: None  # the op is there now, in pure torch
    return True


def local_font(font: str = "Arial.ttf", *args, **kwargs) -> str:
    """Ultralytics' ``check_font`` without its download: matplotlib's own DejaVu Sans."""
    from matplotlib import font_manager

    return font_manager.findfont("DejaVu Sans")


def offline_ultralytics(config_dir: Path):
    """Import Ultralytics with no network use: settings in ``config_dir``, telemetry and integrations off."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    patched = patch_torchvision_nms()
    import ultralytics
    import ultralytics.data.utils
    import ultralytics.utils.checks
    from ultralytics.utils import SETTINGS

    SETTINGS.update({key: False for key in OFF_SETTINGS if key in SETTINGS})
    for module in (ultralytics.data.utils, ultralytics.utils.checks):
        module.check_font = local_font
    return ultralytics, patched


# --------------------------------------------------------------------------- YOLO train and predict


def train_yolo(data_yaml: Path, budget_s: float, image_size: int, batch: int, out_dir: Path, workers: int,
               cache: bool) -> tuple[Path, dict]:
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    start = time.perf_counter()
    model.train(data=str(data_yaml), imgsz=image_size, epochs=1000, time=budget_s / 3600.0, batch=batch,
                device="cpu", workers=workers, pretrained=False, amp=False, plots=False, val=False,
                project=str(out_dir), name="yolo", exist_ok=True, seed=0, verbose=False, cache=cache)
    seconds = time.perf_counter() - start
    trainer = model.trainer
    weights = Path(trainer.save_dir) / "weights" / "last.pt"
    return weights, {"seconds_total": seconds, "epochs": int(trainer.epoch) + 1,
                     "train_seconds": float(time.time() - trainer.train_time_start)
                     if getattr(trainer, "train_time_start", None) else float("nan"),
                     "batch": batch, "weights": str(weights)}


def yolo_detections(weights: Path, gt_frames: list[dict], image_files: dict, image_size: int,
                    batch: int = 16) -> list[dict]:
    """YOLO's detections on the test frames as the project's detection records (COCO-style
    settings: conf 0.001, NMS IoU 0.7, at most 100 per image, as Ultralytics validates)."""
    from ultralytics import YOLO

    from urban_detection.waymo.example import LABEL_MAP

    label_ids = np.asarray(list(LABEL_MAP), np.int32)
    model = YOLO(str(weights))
    det_frames = []
    for i in range(0, len(gt_frames), batch):
        chunk = gt_frames[i:i + batch]
        sources = [str(image_files[(g["path"], g["source_id"])]) for g in chunk]
        results = model.predict(sources, imgsz=image_size, conf=0.001, iou=0.7, max_det=100, device="cpu",
                                verbose=False)
        for gt, r in zip(chunk, results):
            xyxy = r.boxes.xyxyn.numpy().astype(np.float32).reshape(-1, 4)
            det_frames.append({k: gt[k] for k in ("image_id", "source_id", "height", "width")} | {
                "boxes": xyxy[:, [1, 0, 3, 2]],
                "scores": r.boxes.conf.numpy().astype(np.float32),
                "labels": label_ids[r.boxes.cls.numpy().astype(np.int64)],
            })
    return det_frames


# --------------------------------------------------------------------------- the project's model


def reuse_project_model(project_dir: Path, cfg: dict):
    """The default run's model: its export, else its trained weights. Returns (model, description)."""
    from urban_detection.detection.predict import load_trained_model
    from urban_detection.detection.export import load_exported

    models = project_dir / "data" / "06_models" / cfg["name"]
    export = models / "export"
    if (export / "saved_model" / "saved_model.pb").is_file() or (export / "saved_model.pb").is_file():
        return load_exported(export), f"the default run's export ({export})"
    for weights in (models / "model" / "weights.weights.h5", models / "final.weights.h5"):
        if weights.is_file():
            spec = cfg["model"]
            return (load_trained_model(spec["arch"], spec["image_size"], weights_file=weights,
                                       overrides=spec.get("overrides")), f"the default run's weights ({weights})")
    raise SystemExit(f"no trained {cfg['name']} model under {models}: run `kedro run --pipelines=train,evaluate` "
                     "or pass --train-project")


def _train_for_steps(cfg: dict, train_paths: list[str], val_paths: list[str], steps: int, work_dir: Path):
    import tensorflow as tf

    from urban_detection.detection import model as detmodel
    from urban_detection.detection.precision import precision, resolve

    tcfg, mcfg = cfg["train"], cfg["model"]
    tf.keras.utils.set_random_seed(int(tcfg.get("seed", 0)))
    mixed = resolve(tcfg.get("mixed_precision", False))  # as the train pipeline: "auto" decided here

    def build():
        return detmodel.build_detector(mcfg["arch"], image_size=mcfg["image_size"], weights=mcfg.get("weights"),
                                       **(mcfg.get("overrides") or {}))

    with precision(mixed):  # built and trained under the experiment's policy, as the default run
        model, result, seconds = _fit(build(), cfg, train_paths, val_paths, steps, work_dir, mixed)
    if mixed:  # scored in float32, as the evaluate pipeline scores the stored model
        scored = build()
        scored.set_weights(model.get_weights())
        model = scored
    return model, result, seconds


def _fit(model, cfg: dict, train_paths: list[str], val_paths: list[str], steps: int, work_dir: Path, mixed):
    from urban_detection.detection import augment, data, train as dettrain
    from urban_detection.training import recipe_kwargs

    tcfg, mcfg = cfg["train"], cfg["model"]
    train_ds = data.make_dataset(train_paths, mcfg["image_size"], tcfg["batch_size"], training=True,
                                 augment_fn=augment.build_augmenter(cfg.get("augmentations")),
                                 shuffle_buffer=tcfg.get("shuffle_buffer", 256), seed=int(tcfg.get("seed", 0)),
                                 cache=bool(tcfg.get("cache", False)))
    val_ds = data.make_dataset(val_paths, mcfg["image_size"], tcfg["batch_size"], training=False)
    start = time.perf_counter()
    result = dettrain.train(model, train_ds, val_ds, steps=steps, checkpoint_dir=work_dir,
                            checkpoint_every=min(int(tcfg["checkpoint_every"]), steps),
                            log_every=min(int(tcfg.get("log_every", 10)), steps), optimizer=cfg["optimizer"],
                            val_steps=tcfg.get("val_batches"), resume=False, mixed_precision=mixed,
                            **recipe_kwargs(tcfg))  # focal loss and weight average, as the train pipeline
    return model, result, time.perf_counter() - start


def calibrate_project(project_dir: Path, splits: dict, image_size: int | None, work_dir: Path,
                      steps: int) -> tuple[float, float]:
    """``(images/s, fixed seconds)`` of the default experiment's training, from a run of its first ``steps``
    steps: the speed excludes the first (tracing) step and validation; the fixed seconds are the rest of
    that run's wall time (model build, input start-up, tracing, validation)."""
    cfg = default_experiment(project_dir, image_size=image_size)
    _, result, seconds = _train_for_steps(cfg, splits["train"], splits["val"], steps, work_dir)
    batch = int(cfg["train"]["batch_size"])
    ips = result.images_per_sec if math.isfinite(result.images_per_sec) else steps * batch / seconds
    return ips, max(0.0, seconds - (steps - 1) * batch / ips)


def train_project(project_dir: Path, splits: dict, budget_s: float, speed: tuple[float, float],
                  image_size: int | None, work_dir: Path):
    """Train the default experiment for a wall time of ``budget_s``: steps = (budget - fixed seconds) x
    images/s / batch size, with ``speed`` from :func:`calibrate_project`."""
    ips, fixed = speed
    batch = int(default_experiment(project_dir, image_size=image_size)["train"]["batch_size"])
    steps = max(1, int(max(budget_s - fixed, 0.0) * ips / batch))
    log.info("project: %.1f images/s, %.0f s fixed -> %d steps of batch %d for %.0f s", ips, fixed, steps, batch,
             budget_s)
    cfg = default_experiment(project_dir, steps=steps, image_size=image_size)
    model, result, seconds = _train_for_steps(cfg, splits["train"], splits["val"], steps, work_dir)
    return model, cfg, {"steps": int(result.step), "seconds_total": seconds, "images_per_sec": result.images_per_sec,
                        "calibration_images_per_sec": ips, "calibration_fixed_seconds": fixed}


# --------------------------------------------------------------------------- scoring and report


def score(gt_frames: list[dict], det_frames: list[dict]) -> dict:
    from urban_detection.detection.evaluate import evaluate_detections

    return evaluate_detections(gt_frames, det_frames)["metrics"]


def ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) and b > 0 else float("nan")


def print_round(multiple: float, budget_s: float, project: dict, yolo: dict) -> None:
    print(f"\n== budget {multiple:g}x = {budget_s:.0f} s ==")
    print(f"{'':30s} {'project':>12s} {'YOLOv8n':>12s} {'YOLO/project':>13s}")
    print(f"{'training wall time (s)':30s} {project['seconds']:12.1f} {yolo['seconds']:12.1f}")
    print(f"{'steps / epochs':30s} {project['progress']:>12s} {yolo['progress']:>12s}")
    for name in SHOWN:
        p, y = project["metrics"].get(name, float("nan")), yolo["metrics"].get(name, float("nan"))
        short = name.split("/", 1)[1]
        print(f"{short:30s} {p:12.4f} {y:12.4f} {ratio(y, p):13.2f}")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project-dir", type=Path, default=ROOT)
    ap.add_argument("--budget-seconds", type=float, default=None,
                    help="1x budget (default: the default run's measured training time, else 550)")
    ap.add_argument("--multipliers", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--train-project", action="store_true",
                    help="train the default experiment for each budget too (else reuse the default run's model)")
    ap.add_argument("--image-size", type=int, default=None, help="default: the default experiment's")
    ap.add_argument("--yolo-batch", type=int, default=16, help="Ultralytics' default")
    ap.add_argument("--workers", type=int, default=2, help="Ultralytics data-loader workers")
    ap.add_argument("--yolo-cache", action="store_true", help="Ultralytics cache=ram (decoded images in memory)")
    ap.add_argument("--calibration-steps", type=int, default=20, help="project steps timed to size its run")
    ap.add_argument("--max-test-frames", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=8, help="inference batch of the project model")
    ap.add_argument("--keep", type=Path, default=None, help="keep the YOLO dataset and runs in this folder")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    return ap.parse_args()


class ProjectSide:
    """The project's detector for each budget, scored on the test frames.

    Without ``--train-project`` the default run's model serves every budget. With it, the
    default experiment is trained for each budget: its steps scale with the budget at the
    default run's own training speed (images/s in its model.json), so 1x is exactly the default
    experiment, and the default run's model is scored for 1x instead of training it again. With
    no default run, a short calibration run measures the speed."""

    def __init__(self, args, project_dir: Path, cfg: dict, splits: dict, work: Path, budget_1x: float):
        self.args, self.project_dir, self.cfg, self.splits, self.work = args, project_dir, cfg, splits, work
        self.image_size = int(cfg["model"]["image_size"])
        self.budget_1x = budget_1x
        self.speed, self.reused, self.default = None, None, None
        if args.train_project:
            ips = default_run_speed(project_dir, cfg["name"]) if args.image_size is None else None
            if ips:
                self.speed = (ips, 0.0)
                model, what = reuse_project_model(project_dir, cfg)
                self.default = {"model": model, "what": what}
                print(f"project training speed: {ips:.1f} images/s (the default run's); 1x = its model ({what})")
            else:
                self.speed = calibrate_project(project_dir, splits, args.image_size, work / "calibration",
                                               args.calibration_steps)
                print(f"project training speed: {self.speed[0]:.1f} images/s, {self.speed[1]:.0f} s fixed cost "
                      f"({args.calibration_steps}-step calibration run)")
        else:
            model, what = reuse_project_model(project_dir, cfg)
            print(f"project model: {what}; it was trained for its own budget, not retrained per budget "
                  "(--train-project does)")
            self.reused = {"info": {"reused": what}, "progress": "reused", "seconds": float("nan"),
                           **self.scored(model)}

    def scored(self, model) -> dict:
        from urban_detection.detection.predict import predict_split

        gt_frames, det_frames = predict_split(model, self.splits["test"], self.image_size, self.args.batch_size,
                                              max_frames=self.args.max_test_frames)
        return {"gt_frames": gt_frames, "metrics": score(gt_frames, det_frames)}

    def run(self, budget_s: float, tag: str) -> dict:
        if self.reused is not None:
            return self.reused
        if self.default is not None and math.isclose(budget_s, self.budget_1x):
            steps = int(self.cfg["train"]["steps"])
            return {"info": {"reused": self.default["what"], "steps": steps, "seconds_total": self.budget_1x},
                    "progress": f"{steps} st", "seconds": self.budget_1x, **self.scored(self.default["model"])}
        model, _, info = train_project(self.project_dir, self.splits, budget_s, self.speed, self.args.image_size,
                                       self.work / f"project_{tag}")
        return {"info": info, "progress": f"{info['steps']} st", "seconds": info["seconds_total"],
                **self.scored(model)}


def default_run_speed(project_dir: Path, name: str) -> float | None:
    """Training images/s of the default run's model (its model.json), when there is one."""
    file = project_dir / "data/06_models" / name / "model/model.json"
    if not file.is_file():
        return None
    ips = (json.loads(file.read_text()).get("summary") or {}).get("images_per_sec")
    return float(ips) if ips and math.isfinite(float(ips)) else None


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("tensorflow", "absl", "urban_detection.detection.train"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    project_dir = args.project_dir.resolve()
    cfg = default_experiment(project_dir, image_size=args.image_size)
    image_size = int(cfg["model"]["image_size"])
    budget, budget_source = (args.budget_seconds, "--budget-seconds") if args.budget_seconds else \
        measured_training_seconds(project_dir, cfg["name"], int(cfg["train"]["batch_size"]))
    splits = split_paths(project_dir)
    print(f"default experiment: {cfg['name']} ({cfg['model']['arch']}), image size {image_size}")
    print(f"1x budget: {budget:.0f} s ({budget_source}); multiples {args.multipliers}")
    print(f"data: {project_dir}: " + ", ".join(f"{k} {len(v)} trip(s)" for k, v in splits.items()))

    temp = tempfile.TemporaryDirectory(prefix="peer_yolo_") if args.keep is None else None  # removed at the end
    work = Path(temp.name) if temp is not None else args.keep.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"experiment": cfg["name"], "image_size": image_size, "budget_seconds": budget,
                     "budget_source": budget_source, "rounds": []}
    try:
        _, patched = offline_ultralytics(work / "ultralytics_config")
        if patched:
            print("note: torchvision's C++ ops do not load with this torch; a pure-torch NMS is registered as "
                  "torchvision::nms for this run")
        t0 = time.perf_counter()
        data_yaml, test_files, report = export_yolo_dataset(splits, work / "yolo_data")
        print(f"YOLO export in {time.perf_counter() - t0:.1f} s: {report}")
        project_side = ProjectSide(args, project_dir, cfg, splits, work, budget)
        for multiple in args.multipliers:
            budget_s, tag = budget * multiple, f"{multiple:g}x"
            project = project_side.run(budget_s, tag)
            gt_frames = project["gt_frames"]
            weights, yolo_info = train_yolo(data_yaml, budget_s, image_size, args.yolo_batch, work / f"yolo_runs_{tag}",
                                            args.workers, args.yolo_cache)
            yolo = {"seconds": yolo_info["seconds_total"], "progress": f"{yolo_info['epochs']} ep",
                    "metrics": score(gt_frames, yolo_detections(weights, gt_frames, test_files, image_size))}
            print_round(multiple, budget_s, project, yolo)
            print(f"(test frames: {len(gt_frames)}; wall times include set-up, tracing and validation)")
            results["rounds"].append({
                "multiple": multiple, "budget_seconds": budget_s, "test_frames": len(gt_frames),
                "project": {**project["info"], "metrics": project["metrics"]},
                "yolo": {**yolo_info, "metrics": yolo["metrics"]},
                "ratio_map": ratio(yolo["metrics"][MAP], project["metrics"][MAP]),
                "ratio_map50": ratio(yolo["metrics"][MAP50], project["metrics"][MAP50])})
    finally:
        if temp is not None:
            temp.cleanup()
    if args.json:
        from urban_detection.detection.evaluate import json_safe

        args.json.write_text(json.dumps(json_safe(results), indent=2, default=str))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
