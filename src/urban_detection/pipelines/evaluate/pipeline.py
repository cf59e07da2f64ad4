"""Export and evaluation of each selected experiment, then one comparison over them.

``ingest_eval_trips`` first converts the val and test trips of ``ingest_source`` again at
``evaluate.frame_stride`` (every frame, 10 Hz, by default) into ``eval_trips``: the frames every
experiment is scored on (``report_eval_frames``: their ``eval_frames_report``).
Per experiment of ``train.experiments`` (a namespace, as in the train pipeline):
``<name>.model`` -> ``export_<name>`` -> ``<name>.export`` and ``evaluate_<name>`` ->
``<name>.metrics``, ``<name>.coco_files``, ``<name>.evaluation_figures``, ``<name>.bootstrap_draws``,
``<name>.slices``, ``<name>.per_trip``.
``evaluate.reference`` naming an experiment this run does not train adds ``<ref>.evaluate_stored``: its
stored model (``<ref>.model``) evaluated the same way, to be compared with.
``compare_experiments`` reads every ``<name>.metrics`` and ``<name>.bootstrap_draws`` and writes the report in
``data/08_reporting/comparison/`` (also MLflow artifacts of the kedro run).
"""
from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from urban_detection.pipelines import selection

from .compare import compare_experiments
from .nodes import (convert_eval_trips, eval_frames_report, make_evaluate_node, make_export_node,
                    make_stored_reference_node)

OUTPUTS = ["metrics", "coco_files", "evaluation_figures", "bootstrap_draws", "slices", "per_trip"]


def create_pipeline(**kwargs) -> Pipeline:
    chosen = selection.experiments()
    names = list(chosen)
    branches = Pipeline([])  # the configs' node comes from the train pipeline (pipeline_registry adds it)
    if names:
        branches += Pipeline([  # the node returns the conversion; eval_trips runs it on its folder
            node(convert_eval_trips, ["trips", "split_manifest", "ingest_source", "params:ingest", "params:evaluate"],
                 "eval_trips", name="ingest_eval_trips"),
            node(eval_frames_report, "eval_trips", "eval_frames_report", name="report_eval_frames"),
        ])
    for name in names:
        branches += pipeline(
            [
                node(make_export_node(name), "model", "export", name="export"),
                node(make_evaluate_node(name), ["model", "config", "trips", "eval_trips", "split_manifest",
                                                "params:evaluate"],
                     OUTPUTS, name="evaluate"),
            ],
            namespace=name,
            inputs={"trips", "eval_trips", "split_manifest"},
            parameters={"params:evaluate"},
        )
    if not names:
        return branches
    reference = selection.stored_reference()
    if reference:  # compared with, not trained: its stored model is evaluated from the catalog
        branches += pipeline(
            [node(make_stored_reference_node(reference), ["model", "trips", "eval_trips", "split_manifest",
                                                          "params:evaluate"], OUTPUTS, name="evaluate_stored")],
            namespace=reference,
            inputs={"trips", "eval_trips", "split_manifest"},
            parameters={"params:evaluate"},
        )
        names = [*names, reference]
    comparison = node(
        compare_experiments,
        ["params:evaluate", *[f"{name}.metrics" for name in names], *[f"{name}.bootstrap_draws" for name in names]],
        ["evaluation_comparison", "evaluation_comparison_md", "evaluation_comparison_plot",
         "evaluation_pr_curves_plot", "evaluation_headline", "evaluation_paired_plot"],
        name="compare_experiments",
    )
    return branches + Pipeline([comparison])
