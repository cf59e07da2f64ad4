"""Configs of the selected experiments, then one namespaced training branch per experiment.

``resolve_experiment_configs`` validates every experiment of ``train.experiments``
before any training. Each selected experiment is a namespace ``<name>``:
``<name>.config`` -> ``train_<name>`` -> ``<name>.model`` (and its augmentation
preview). A fine-tuning experiment takes its parent's ``<parent>.model`` as an input,
so the chain is a data dependency that ``kedro viz`` shows (when the parent is not
selected, its trained model is loaded from the catalog).
"""
from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from urban_detection.pipelines import selection

from .nodes import make_train_node, preview_augmentations, resolve_configs

SHARED = {"trips", "split_manifest"}
# where every experiment trains (urban_detection.cluster): the same for all, so not namespaced
LAUNCH = {"ray_address": "params:train.ray_address", "resources": "params:train.resources",
          "workers": "params:train.workers"}


def configs_pipeline(chosen: dict) -> Pipeline:
    """The node resolving and validating the selected experiments' configs (train and evaluate
    both start from it, so each checks models against the current parameters)."""
    if not chosen:
        return Pipeline([])
    return Pipeline([node(resolve_configs, "params:train", {name: f"{name}.config" for name in chosen},
                          name="resolve_experiment_configs")])


def create_pipeline(**kwargs) -> Pipeline:
    chosen = selection.experiments()
    branches = configs_pipeline(chosen)
    for name, parent in chosen.items():
        inputs = {"config": "config", "trips": "trips", "split_manifest": "split_manifest",
                  "checkpoints": "checkpoints", **LAUNCH}
        if parent:
            inputs["parent"] = f"{parent}.model"
        branches += pipeline(
            [
                node(preview_augmentations, ["config", "trips", "split_manifest"], "augmentation_preview",
                     name="preview_augmentations"),
                node(make_train_node(name), inputs, "model", name="train"),
            ],
            namespace=name,
            inputs=SHARED | ({f"{parent}.model"} if parent else set()),
            parameters=set(LAUNCH.values()),
        )
    return branches
