"""Render: each selected experiment's exported model over one test trip, as a video.

One namespace per experiment of ``train.experiments`` (as in train and evaluate):
``<name>.export`` -> ``render_<name>`` -> ``<name>.video`` (MP4) and ``<name>.render_info``.
The node also takes ``<name>.config`` (from the train pipeline's config node, which
pipeline_registry adds) and the trips and split manifest, to refuse an export that the
current config and data did not make, and ``ingest_source`` (your raw data: the trip's raw
segment, read at full rate when it is there).
"""
from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from urban_detection.pipelines import selection

from .nodes import make_render_node


def create_pipeline(**kwargs) -> Pipeline:
    branches = Pipeline([])
    for name in selection.experiments():
        branches += pipeline(
            [node(make_render_node(name), ["export", "config", "trips", "split_manifest", "params:render",
                                           "ingest_source"],
                  ["video", "render_info"], name="render")],
            namespace=name,
            inputs={"trips", "split_manifest", "ingest_source"},
            parameters={"params:render"},
        )
    return branches
