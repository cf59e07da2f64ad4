"""Training curves on one page, like Ultralytics' ``results.png``. No Kedro here.

Six panels against the global step: classification, localization and total loss (train
and validation on shared axes), learning rate, and the validation COCO mAP and
mAP@.50IOU. The best step (by validation mAP unless told otherwise) is marked on every
panel. Inputs are :class:`~.train.TrainResult`'s ``history`` (one dict per progress
line: ``step``, ``loss/...``, ``learning_rate``) and ``val_history`` (one dict per
checkpoint: ``step``, the validation ``loss/...`` and, when computed, the COCO metrics of
:func:`~.checkpoint_eval.val_coco_metrics`). Missing values are simply not drawn.

The validation lines are what training scored at each checkpoint (its loss batches and the
fixed subset of ``train.val_coco_frames`` frames; MLflow keys ``val_checkpoint/...``), not the
evaluate pipeline's final val metrics on every evaluation frame (``val/...``): the metric
panels say "checkpoint subset", so their best value is not mistaken for the final one.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from urban_detection.detection.checkpoint_eval import MAP, MAP50, BestCheckpoint

# (key in the histories, panel title); losses have train and val lines, the rest one source.
LOSS_PANELS: tuple[tuple[str, str], ...] = (
    ("loss/classification", "classification loss"),
    ("loss/localization", "localization loss"),
    ("loss/total", "total loss"),
)
TRAIN_PANELS: tuple[tuple[str, str], ...] = (("learning_rate", "learning rate"),)
VAL_PANELS: tuple[tuple[str, str], ...] = ((MAP, "val mAP (checkpoint subset)"),
                                          (MAP50, "val mAP@.50IOU (checkpoint subset)"))
TRAIN_COLOUR, VAL_COLOUR, BEST_COLOUR = "tab:blue", "tab:orange", "tab:green"


def series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of ``key`` over the entries that have a finite value of it."""
    steps, values = [], []
    for entry in history:
        try:
            step, value = float(entry["step"]), float(entry[key])
        except (KeyError, TypeError, ValueError):
            continue
        if np.isfinite(value):
            steps.append(step)
            values.append(value)
    return np.asarray(steps), np.asarray(values)


def smooth(values: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Centred moving average over ``fraction`` of the points (at least 3, odd), edges padded by reflection."""
    n = len(values)
    width = max(3, int(n * fraction) // 2 * 2 + 1)
    if n < width:
        return values.copy()
    padded = np.pad(values, width // 2, mode="reflect")
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def best_step_of(val_history: Sequence[Mapping[str, Any]], metric: str = MAP, mode: str | None = None) -> int | None:
    """The step of the best ``metric`` value in ``val_history`` (None when no entry has one); ``mode``
    ``"max"`` or ``"min"``, by default the metric's direction (:func:`~.best_metric.metric_direction`)."""
    best = BestCheckpoint(metric, mode)
    for entry in val_history:
        best.update(int(entry["step"]), entry)
    return best.best_step


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def _draw_panel(ax, title: str, train: tuple | None, val: tuple | None, empty: str, smoothed: bool) -> None:
    """One panel: ``train`` and ``val`` are ``(steps, values)`` (None: that source has no line here);
    ``smoothed`` adds a moving average of a noisy train line (of 5 points or more)."""
    if train is not None and len(train[0]):
        steps, values = train
        many = smoothed and len(steps) >= 5
        ax.plot(steps, values, color=TRAIN_COLOUR, lw=1, alpha=0.5 if many else 1.0, label="train")
        if many:
            ax.plot(steps, smooth(values), color=TRAIN_COLOUR, lw=1.5, ls=":", label="train (smoothed)")
    if val is not None and len(val[0]):
        ax.plot(*val, color=VAL_COLOUR, lw=1.5, marker="o", ms=3, label="val")
    if not ax.lines:
        _no_data(ax, empty)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)


def _mark_best(axes, best_step: int, val_history) -> None:
    for ax in axes:
        ax.axvline(best_step, color=BEST_COLOUR, ls="--", lw=1, label=f"best step {best_step}")
    for ax, (key, _) in zip(axes[-len(VAL_PANELS):], VAL_PANELS):
        steps, values = series(val_history, key)
        at = steps == best_step
        if at.any():
            ax.plot(steps[at], values[at], color=BEST_COLOUR, marker="*", ms=12, ls="none",
                    label=f"best {values[at][0]:.4f}")


def results_figure(
    history: Sequence[Mapping[str, Any]],
    val_history: Sequence[Mapping[str, Any]],
    best_step: int | None = None,
    best_metric: str = MAP,
    best_mode: str | None = None,
    title: str | None = None,
) -> Figure:
    """Training and validation curves against the step (2 x 3 panels, see the module doc).

    ``best_step`` is marked on every panel (a dashed line, and a star on the mAP panels);
    by default it is the step of the best ``best_metric`` (``best_mode`` ``"max"`` or
    ``"min"``, by default the metric's direction) in ``val_history``, none when no checkpoint
    has that metric. Panels without data say so. Built on ``matplotlib.figure.Figure`` (no pyplot state).
    """
    fig = Figure(figsize=(13, 6.5), layout="constrained")
    panels = LOSS_PANELS + TRAIN_PANELS + VAL_PANELS
    axes = list(fig.subplots(2, 3, sharex=True).ravel())
    for ax, (key, name) in zip(axes, panels):
        train = series(history, key) if (key, name) not in VAL_PANELS else None
        val = series(val_history, key) if (key, name) not in TRAIN_PANELS else None
        _draw_panel(ax, name, train, val, "no validation yet" if train is None else "no data",
                    smoothed=(key, name) in LOSS_PANELS)
    lr = series(history, "learning_rate")[1]
    if len(lr) and (lr > 0).all() and lr.max() > 10 * lr.min():
        axes[3].set_yscale("log")
    if best_step is None:
        best_step = best_step_of(val_history, best_metric, best_mode)
    if best_step is not None:
        _mark_best(axes, int(best_step), val_history)
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
    for ax in axes[3:]:
        ax.set_xlabel("step")
    fig.suptitle(title or "training results")
    return fig
