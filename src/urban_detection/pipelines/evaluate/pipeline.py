"""Export and evaluation of each selected experiment, then one comparison over them.

Per experiment of ``train.experiments`` (a namespace, as in the train pipeline):
``<name>.model`` -> ``export_<name>`` -> ``<name>.export`` and ``evaluate_<name>`` ->
``<name>.metrics``, ``<name>.coco_files``, ``<name>.evaluation_figures``.
``compare_experiments`` reads every ``<name>.metrics`` and writes the report in
``data/08_reporting/comparison/`` (also MLflow artifacts of the kedro run).
"""
from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from urban_detection.pipelines import selection
from urban_detection.pipelines.train.pipeline import configs_pipeline

from .nodes import compare_experiments, make_evaluate_node, make_export_node


def create_pipeline(**kwargs) -> Pipeline:
    chosen = selection.experiments()
    names = list(chosen)
    branches = configs_pipeline(chosen)
    for name in names:
        branches += pipeline(
            [
                node(make_export_node(name), "model", "export", name="export"),
                node(make_evaluate_node(name), ["model", "config", "trips", "split_manifest", "params:evaluate"],
                     ["metrics", "coco_files", "evaluation_figures"], name="evaluate"),
            ],
            namespace=name,
            inputs={"trips", "split_manifest"},
            parameters={"params:evaluate"},
        )
    if not names:
        return branches
    comparison = node(
        compare_experiments,
        ["params:evaluate", *[f"{name}.metrics" for name in names]],
        ["evaluation_comparison", "evaluation_comparison_md", "evaluation_comparison_plot",
         "evaluation_pr_curves_plot", "evaluation_headline"],
        name="compare_experiments",
    )
    return branches + Pipeline([comparison])
