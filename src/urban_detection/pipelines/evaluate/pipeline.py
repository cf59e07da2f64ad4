"""Export and evaluation of every defined experiment, then one comparison over all of them.

Each experiment of ``train.catalog`` gets a namespace (as in the train pipeline):
``<name>.train_result`` -> ``export_<name>`` -> ``<name>.export_info`` and
``evaluate_<name>`` -> ``<name>.metrics``, ``<name>.coco_files``,
``<name>.evaluation_figures``. Experiments that were never trained skip at once.
``compare_experiments`` reads every ``<name>.metrics`` and writes the report in
``data/08_reporting/comparison/`` (also MLflow artifacts of the kedro run).
"""
from __future__ import annotations

import warnings

from kedro.pipeline import Pipeline, node, pipeline

from urban_detection.pipelines.train.pipeline import defined_experiments

from .nodes import compare_experiments, make_evaluate_node, make_export_node

SHARED_INPUTS = {"experiment_configs", "split_manifest", "frame_index"}
PARAMETERS = {"params:evaluate", "params:paths"}


def create_pipeline(**kwargs) -> Pipeline:
    names = list(defined_experiments())
    branches = Pipeline([])
    for name in names:
        branches += pipeline(
            [
                node(make_export_node(name), ["train_result", "experiment_configs", "params:evaluate", "params:paths"],
                     "export_info", name="export"),
                node(make_evaluate_node(name),
                     ["train_result", "experiment_configs", "split_manifest", "frame_index", "params:evaluate",
                      "params:paths"],
                     ["metrics", "coco_files", "evaluation_figures"], name="evaluate"),
            ],
            namespace=name,
            inputs=SHARED_INPUTS,
            parameters=PARAMETERS,
        )
    with warnings.catch_warnings():  # "<name>.metrics" are namespaced datasets: the dot is intended
        warnings.filterwarnings("ignore", message=".*contain '.' characters.*")
        comparison = node(
            compare_experiments,
            ["params:evaluate", *[f"{name}.metrics" for name in names]],
            ["evaluation_comparison", "evaluation_comparison_md", "evaluation_comparison_plot",
             "evaluation_pr_curves_plot"],
            name="compare_experiments",
        )
    return branches + Pipeline([comparison])
