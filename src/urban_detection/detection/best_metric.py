"""Which validation number may choose the exported checkpoint (``train.best_metric``), and which way is better.

At every checkpoint training scores a fixed validation subset with COCO (:mod:`.checkpoint_eval`)
and computes the validation losses (:func:`~.losses.evaluate_losses`); ``train.best_metric`` names
one of those numbers and the checkpoint with its best value is exported. AP and AR are better
higher, losses lower::

    metric_direction("DetectionBoxes_Precision/mAP@.50IOU")   # "max"
    metric_direction("loss/total")                            # "min"
    metric_direction("mAP50")                                 # ValueError listing BEST_METRICS

The names are the Object Detection API's (:data:`~.coco.SUMMARY_METRICS`, per-class AP and AP50)
and :data:`~.losses.LOSS_KEYS`. Waymo-style AP is computed by the evaluate pipeline only, so it
cannot choose a checkpoint.
"""
from __future__ import annotations

from urban_detection.detection.coco import PER_CLASS_AP, PER_CLASS_AP50, SUMMARY_METRICS
from urban_detection.detection.losses import LOSS_KEYS
from urban_detection.detection.suggest import did_you_mean
from urban_detection.waymo.example import CLASS_NAMES

MAXIMISED: tuple[str, ...] = (*SUMMARY_METRICS,
                              *(f.format(name) for f in (PER_CLASS_AP, PER_CLASS_AP50) for name in CLASS_NAMES))
MINIMISED: tuple[str, ...] = tuple(LOSS_KEYS)
BEST_METRICS: tuple[str, ...] = MAXIMISED + MINIMISED  # every valid train.best_metric
DIRECTIONS = ("max", "min")


def unknown_metric_message(name: object) -> str:
    """``unknown train.best_metric ... (valid: ...)`` with the nearest valid name when one is near."""
    return (f"unknown train.best_metric {name!r} (valid: {', '.join(BEST_METRICS)})"
            f"{did_you_mean(name, BEST_METRICS)}")


def metric_direction(name: str) -> str:
    """``"max"`` for an AP or AR, ``"min"`` for a loss; ``ValueError`` listing the valid names otherwise."""
    if name in MAXIMISED:
        return "max"
    if name in MINIMISED:
        return "min"
    raise ValueError(unknown_metric_message(name))


def selects_by_loss(name: str | None) -> bool:
    """Whether ``name`` chooses the checkpoint by a validation loss (so the loss batches decide it)."""
    return name in MINIMISED
