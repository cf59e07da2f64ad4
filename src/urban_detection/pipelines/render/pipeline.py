"""Render: each exported experiment's detections over one test trip, as a video.

One namespace per experiment of ``train.catalog`` (as in train and evaluate):
``<name>.export_info`` (from the evaluate pipeline's export node) ->
``render_<name>`` -> ``<name>.render_info``; the MP4 (and GIF) land in
``data/08_reporting/videos/``. Experiments without an export skip at once.
"""
from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from urban_detection.pipelines.train.pipeline import defined_experiments

from .nodes import make_render_node


def create_pipeline(**kwargs) -> Pipeline:
    branches = Pipeline([])
    for name in defined_experiments():
        branches += pipeline(
            [node(make_render_node(name),
                  ["export_info", "split_manifest", "frame_index", "params:render", "params:paths"],
                  "render_info", name="render")],
            namespace=name,
            inputs={"split_manifest", "frame_index"},
            parameters={"params:render", "params:paths"},
        )
    return branches
