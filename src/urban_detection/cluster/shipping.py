"""A trained detector as plain data, to send between processes (a Ray task and the Kedro driver).

:func:`pack` keeps the model's weights as NumPy arrays (BatchNorm statistics included) and the
record :class:`~urban_detection.detection.trained.TrainedDetector` holds (config, provenance,
step, MLflow run, summary); :func:`unpack` builds the same detector from its own config and sets
those weights, so the receiver gets the kind of object that training in-process returns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from urban_detection.detection.trained import TrainedDetector


@dataclass
class ShippedDetector:
    """What :func:`pack` sends: the detector's record and its weights."""

    metadata: dict
    weights: list[np.ndarray]
    init_report: dict | None = None


def pack(trained: TrainedDetector) -> ShippedDetector:
    return ShippedDetector(trained.metadata(), [np.asarray(w) for w in trained.model.get_weights()],
                           getattr(trained.model, "init_report", None))


def unpack(shipped: ShippedDetector) -> TrainedDetector:
    """The detector of ``shipped``: built from its config, with its weights."""
    from urban_detection.detection.model import build_detector

    meta = shipped.metadata
    spec = meta["config"]["model"]
    model = build_detector(spec["arch"], image_size=int(spec["image_size"]), weights=None,
                           **(spec.get("overrides") or {}))
    model.set_weights(shipped.weights)
    if shipped.init_report is not None:
        object.__setattr__(model, "init_report", shipped.init_report)  # as pretrained.set_init_report keeps it
    return TrainedDetector(model=model, config=meta["config"], provenance=meta["provenance"], step=int(meta["step"]),
                           run_id=meta.get("run_id"), summary=meta.get("summary") or {})
