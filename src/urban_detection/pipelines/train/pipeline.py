"""Config generation, then one namespaced training branch per defined experiment.

Every experiment of ``train.catalog`` gets a branch (so ``kedro viz`` shows them all);
only those selected by ``train.experiments`` train, the others pass their existing
checkpoint folder through. A fine-tuning experiment takes its parent's
``<parent>.train_result`` as input, so the chain is a data dependency.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from kedro.pipeline import Pipeline, node, pipeline

from .nodes import make_train_node, resolve_configs

# Used when conf/ cannot be read at pipeline creation (e.g. packaged project).
DEFAULT_EXPERIMENTS = {
    "baseline": None,
    "augmentations_rad_loss": None,
    "augmentations_small_lr": None,
    "augmentations_adam": None,
    "augmentations2_small_lr": None,
    "augs3": "augmentations2_small_lr",
    "fast_cpu": None,
}


def defined_experiments(conf_dir: Path | None = None) -> dict[str, str | None]:
    """Experiment name -> parent name, read from ``conf/base/parameters_train.yml``."""
    path = (conf_dir or Path.cwd() / "conf") / "base" / "parameters_train.yml"
    if not path.exists():
        return dict(DEFAULT_EXPERIMENTS)
    catalog = (yaml.safe_load(path.read_text()) or {}).get("train", {}).get("catalog") or {}
    return {name: (spec or {}).get("parent") for name, spec in catalog.items()}


def create_pipeline(**kwargs) -> Pipeline:
    shared = {"experiment_configs", "split_manifest", "frame_index"}
    branches = Pipeline([node(resolve_configs, "params:train", "experiment_configs", name="resolve_experiment_configs")])
    for name, parent in defined_experiments().items():
        inputs = ["experiment_configs", "split_manifest", "frame_index", "params:paths"]
        if parent:
            inputs.append(f"{parent}.train_result")
        branches += pipeline(
            [node(make_train_node(name), inputs, "train_result", name="train")],
            namespace=name,
            inputs=shared | ({f"{parent}.train_result"} if parent else set()),
            parameters={"params:paths"},
        )
    return branches
