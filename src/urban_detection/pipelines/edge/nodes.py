"""The edge node: an experiment's model as TFLite float16 and int8, scored beside its SavedModel.

It refuses a model that the current config and data did not make, and an export of another
model than ``<name>.model``. The int8 model is calibrated on ``edge.calibration_frames``
training frames spread over the train trips. The SavedModel and every TFLite model then run
over the same evaluation frames of ``edge.split`` (test) and are timed the same way (median
of ``edge.latency_repeats`` single-frame calls, after a warm-up), in one run.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from urban_detection.detection.provenance import StaleModelError, check_provenance, short
from urban_detection.detection.trained import TrainedDetector
from urban_detection.waymo.trips import Trips

log = logging.getLogger(__name__)
MAP50 = "DetectionBoxes_Precision/mAP@.50IOU"
MAP = "DetectionBoxes_Precision/mAP"


def calibration_images(trips: Trips, split_manifest: pd.DataFrame, image_size: int, count: int) -> list[np.ndarray]:
    """``count`` training frames at the model's input size, taken evenly over the train trips' frames."""
    from urban_detection.detection.data import make_inference_dataset

    paths = trips.split_paths(split_manifest, "train")
    if not paths:
        raise ValueError("the split manifest has no train trip to calibrate the int8 model on")
    total = int(trips.index["trip"].isin(split_manifest.loc[split_manifest["split"] == "train", "trip"]).sum())
    stride = max(1, total // max(1, count))
    images = []
    for i, (batch, _) in enumerate(make_inference_dataset(paths, image_size, 1)):
        if i % stride == 0:
            images.append(batch[0].numpy())
        if len(images) >= count:
            break
    return images


def score(detector, paths: list[str], image_size: int, batch_size: int) -> dict[str, float]:
    """COCO mAP@.50IOU and mAP of ``detector`` on every frame of ``paths``."""
    from urban_detection.detection.coco import coco_metrics, to_coco_detections, to_coco_ground_truth
    from urban_detection.detection.predict import predict_split

    gt_frames, det_frames = predict_split(detector, paths, image_size, batch_size)
    gt = to_coco_ground_truth(gt_frames)
    metrics = coco_metrics(gt, to_coco_detections(det_frames, gt))
    return {MAP50: float(metrics[MAP50]), MAP: float(metrics[MAP]), "frames": len(gt_frames)}


def _folder_bytes(path: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def make_edge_node(name: str) -> Callable:
    """The edge node of experiment ``name``."""

    def edge(model: TrainedDetector, export, config: dict, trips: Trips, eval_trips: Trips,
             split_manifest: pd.DataFrame, params: dict) -> tuple[dict, dict]:
        from urban_detection.detection.evaluate import json_safe
        from urban_detection.detection.tflite import TFLiteDetector, convert_tflite, latency_ms

        check_provenance(model, config, trips, split_manifest)
        if export.info.get("fingerprint") != model.fingerprint or int(export.info.get("step", -1)) != model.step:
            raise StaleModelError(f"the export of {name} ({short(str(export.info.get('fingerprint')))}, step "
                                  f"{export.info.get('step')}) is not its current model ({short(model.fingerprint)}, "
                                  f"step {model.step}): run the evaluate pipeline first")
        params = params or {}
        size = model.image_size
        paths = eval_trips.split_paths(split_manifest, params.get("split", "test"))
        if not paths:
            raise ValueError(f"no evaluation frames of split {params.get('split', 'test')!r}: run evaluate first")
        calibration = calibration_images(trips, split_manifest, size, int(params.get("calibration_frames", 100)))
        flatbuffers = {mode: convert_tflite(model.model, size, mode, calibration)
                       for mode in params.get("formats", ["float16", "int8"])}
        detectors = {"saved_model": export, **{m: TFLiteDetector(b, model.model, size, m, params.get("num_threads"))
                                                for m, b in flatbuffers.items()}}
        sizes = {"saved_model": _folder_bytes(Path(export.keras_path).parent / "saved_model"),
                 **{m: len(b) for m, b in flatbuffers.items()}}
        batch = int(params.get("batch_size", 8))
        rows = {}
        for fmt, detector in detectors.items():
            metrics = score(detector, paths, size, batch)
            rows[fmt] = {"size_mb": sizes[fmt] / 1e6, "latency_ms": latency_ms(detector, size,
                                                                               int(params.get("latency_repeats", 20))),
                         "test_mAP50": metrics[MAP50], "test_mAP": metrics[MAP], "frames": metrics["frames"]}
        targets = params.get("max_drop") or {}
        for fmt, row in rows.items():
            row["mAP50_drop"] = rows["saved_model"]["test_mAP50"] - row["test_mAP50"]
            if fmt in targets:
                row["max_drop"] = float(targets[fmt])
                row["within_target"] = bool(row["mAP50_drop"] <= float(targets[fmt]))
        report = json_safe({"experiment": name, "step": model.step, "fingerprint": model.fingerprint,
                            "image_size": size, "split": params.get("split", "test"),
                            "calibration_frames": len(calibration), "latency": "median ms of one uint8 frame, "
                            "end to end (resize, network, anchor decoding, NMS)", "formats": rows})
        for fmt, row in rows.items():
            log.info("%s %s: %.2f MB, %.1f ms/frame, test mAP@.50IOU %.4f (drop %+.4f)", name, fmt, row["size_mb"],
                     row["latency_ms"], row["test_mAP50"], row["mAP50_drop"])
        _log_edge(model, report, flatbuffers)
        return flatbuffers, report

    edge.__name__ = edge.__qualname__ = f"edge_{name}"
    return edge


def _log_edge(model: TrainedDetector, report: dict, flatbuffers: dict[str, bytes]) -> None:
    """Metrics ``edge/<format>/<key>``, the report and the TFLite files into the model's MLflow run."""
    import tempfile

    import mlflow

    from urban_detection.tracking import experiment_run, log_metrics

    rows = report["formats"]
    with experiment_run(model.name, run_id=model.run_id), tempfile.TemporaryDirectory() as tmp:
        log_metrics({f"edge/{fmt}/{key}": value for fmt, row in rows.items()
                     for key, value in row.items() if key in ("size_mb", "latency_ms", "test_mAP50", "mAP50_drop")},
                    step=model.step)
        mlflow.log_dict(report, "edge/edge_report.json")
        for fmt, content in flatbuffers.items():
            (Path(tmp) / f"{fmt}.tflite").write_bytes(content)
            mlflow.log_artifact(str(Path(tmp) / f"{fmt}.tflite"), "edge")
