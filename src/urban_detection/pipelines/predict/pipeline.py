"""Predict: an experiment's exported model over the user's images, video or Waymo camera log.

    kedro run --pipeline=predict --params "predict.source=<path>,predict.experiment=fast_cpu"

One namespace, the experiment of ``predict.experiment`` (default: the first of
``train.experiments``): ``predict_source`` + ``<name>.export`` -> ``predict`` ->
``<name>.predictions_media`` (annotated images or MP4s), ``<name>.predictions_coco``
(COCO results JSON), ``<name>.predictions_table`` (CSV) and ``<name>.predict_summary``.
The node also takes the trips, split manifest and ``params:train`` to refuse an export that
the current config and data did not make. Not part of ``__default__``.
"""
from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from urban_detection.pipelines import selection

from .nodes import make_predict_node

SHARED = {"trips", "split_manifest", "predict_source"}
PARAMS = {"params:train", "params:predict"}


def create_pipeline(**kwargs) -> Pipeline:
    name = selection.predict_experiment()
    if not name:
        return Pipeline([])
    return pipeline(
        [node(make_predict_node(name),
              ["export", "params:train", "trips", "split_manifest", "predict_source", "params:predict"],
              ["predictions_media", "predictions_coco", "predictions_table", "predict_summary"], name="predict")],
        namespace=name,
        inputs=SHARED,
        parameters=PARAMS,
    )
