"""Choosing the exported checkpoint while training: judge every checkpoint on validation, keep the best.

At each checkpoint a :class:`CheckpointJudge` collects the numbers to judge it by (the
validation losses of the training loop and the COCO metrics of the fixed val subset,
:func:`~.checkpoint_eval.val_coco_metrics`), appends them to the run's
:class:`~.checkpoints.TrainingRecord` and, when ``train.best_metric`` is better than ever
(in its own direction, :mod:`.best_metric`), keeps that checkpoint's weights::

    judge = CheckpointJudge(record, frames, image_size, model)                # one worker
    judge = CheckpointJudge(record, frames, image_size, model, copy=build)    # several workers
    judged, is_best = judge(step, checkpoint_path, val_losses)               # in train()'s on_checkpoint
    ...
    record.restore_best_weights(model)                                       # after training: export the best

Under ``MultiWorkerMirroredStrategy`` running the distributed model is a collective op that
every worker would have to join, so the chief scores a copy instead: built once by ``copy()``
outside the strategy and loaded from the checkpoint the chief has just written. The other
workers judge nothing and wait for the chief at the next training step; the chief chooses the
same step as one worker with the same weights would.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from urban_detection.detection.checkpoint_eval import MAP, MAP50, val_coco_metrics
from urban_detection.detection.checkpoints import TrainingRecord
from urban_detection.detection.model import load_initial_weights


class CheckpointJudge:
    """Judges each checkpoint into ``record`` (see the module doc).

    ``frames``: :func:`~.checkpoint_eval.load_frames`' val subset (``None``: judge by the losses
    only); ``model``: the model being trained; ``copy``: builds a model of the same architecture
    outside any distribution strategy (multi-worker training), scored instead of ``model``;
    ``chief``: False on the other workers of a cluster, which only record their losses.
    """

    def __init__(self, record: TrainingRecord, frames: tuple[np.ndarray, list] | None, image_size: int, model: Any,
                 *, copy: Callable[[], Any] | None = None, chief: bool = True):
        self.record, self.frames, self.image_size, self.model = record, frames, image_size, model
        self.build_copy, self.chief = copy, chief
        self.copy = None

    def weights_of(self, checkpoint: str | None) -> Any:
        """The model holding the weights of ``checkpoint``: the trained model, or its copy loaded from the file."""
        if self.build_copy is None:
            return self.model
        if checkpoint is None:
            raise ValueError("a copy is scored from the checkpoint just written, but there is none")
        if self.copy is None:
            self.copy = self.build_copy()
        load_initial_weights(self.copy, checkpoint)
        return self.copy

    def __call__(self, step: int, checkpoint: str | None, val_metrics: Mapping[str, Any]) -> tuple[dict, bool]:
        """The numbers ``step`` is judged by and whether it is the new best (always False off the chief)."""
        judged = {k: v for k, v in val_metrics.items() if k.startswith("loss/")}
        if not self.chief:
            self.record.val_history.append({"step": step, **judged})
            return judged, False
        scored = None
        if self.frames is not None:
            scored = self.weights_of(checkpoint)
            coco = val_coco_metrics(scored, self.frames, self.image_size)
            judged.update({k: coco[k] for k in {MAP, MAP50, self.record.best.metric} if k in coco})  # not a loss
        self.record.val_history.append({"step": step, **judged})
        is_best = self.record.best.update(step, judged, checkpoint=checkpoint)
        if is_best:
            self.record.keep_best_weights(scored if scored is not None else self.weights_of(checkpoint))
        self.record.save()
        return judged, is_best
