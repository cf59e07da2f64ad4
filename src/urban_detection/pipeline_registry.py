"""Project pipelines, found by ``find_pipelines``; ``__default__`` runs them all.

The train, evaluate and render pipelines hold one namespace per experiment selected in
``train.experiments`` (see :mod:`urban_detection.pipelines.selection`); predict, which is not
part of ``__default__``, one for ``predict.experiment``.
"""
from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from urban_detection.pipelines import ingest, selection, split
from urban_detection.pipelines.train.pipeline import configs_pipeline


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    for name in ("evaluate", "render", "edge"):
        if name in pipelines:
            # evaluate, render and edge check each model against its current config: they start from the
            # train pipeline's config node too
            pipelines[name] = configs_pipeline(selection.experiments()) + pipelines[name]
    # predict runs on the user's own media (`predict.source`), edge converts to TFLite: only when asked for
    pipelines["__default__"] = sum((p for name, p in pipelines.items() if name not in ("predict", "edge")),
                                   Pipeline([]))
    if "train" in pipelines:
        # `kedro run --pipeline=train` must work from a fresh clone: it brings the data it
        # trains on (ingest and split reuse what is already up to date, so this is cheap).
        pipelines["train"] = ingest.create_pipeline() + split.create_pipeline() + pipelines["train"]
    return pipelines
