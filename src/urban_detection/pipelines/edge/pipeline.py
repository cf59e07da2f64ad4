"""Edge: each selected experiment's model as TFLite float16 and int8, with size, latency and test accuracy.

    kedro run --pipeline=edge                      # after the evaluate pipeline (its export and eval frames)

Per experiment of ``train.experiments`` (a namespace): ``<name>.model`` + ``<name>.export`` ->
``edge_<name>`` -> ``<name>.tflite`` (``float16.tflite``, ``int8.tflite``) and ``<name>.edge_report``
(each format's size, CPU latency and test mAP@.50IOU next to the SavedModel's). The int8 model is
calibrated on training frames. Not part of ``__default__``.
"""
from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from urban_detection.pipelines import selection

from .nodes import make_edge_node


def create_pipeline(**kwargs) -> Pipeline:
    branches = Pipeline([])
    for name in selection.experiments():
        branches += pipeline(
            [node(make_edge_node(name), ["model", "export", "config", "trips", "eval_trips", "split_manifest",
                                         "params:edge"], ["tflite", "edge_report"], name="edge")],
            namespace=name,
            inputs={"trips", "eval_trips", "split_manifest"},
            parameters={"params:edge"},
        )
    return branches
