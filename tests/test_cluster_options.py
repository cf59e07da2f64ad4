"""``train.ray_address`` / ``train.resources`` / ``train.workers``: checked before any training, with clear errors;
the study sizing model's arithmetic."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import yaml

from kedro_project import REPO
from urban_detection.cluster.options import LaunchError, from_train_params, launch_options
from urban_detection.pipelines.train.nodes import resolve_configs


def train_params(**launch) -> dict:
    train = yaml.safe_load((REPO / "conf/base/parameters_train.yml").read_text())["train"]
    return {**copy.deepcopy(train), **launch}


def test_the_default_trains_here():
    options = from_train_params(train_params())
    assert not options.on_ray and options.workers == 1 and options.task_options() == {"num_cpus": 1}


def test_resources_become_ray_options():
    options = launch_options("auto", {"num_cpus": 4, "num_gpus": 1, "resources": {"big_disk": 1}}, 2)
    assert options.on_ray and options.task_options() == {"num_cpus": 4, "num_gpus": 1, "resources": {"big_disk": 1}}
    assert options.worker_resources() == {"CPU": 4.0, "GPU": 1.0, "big_disk": 1}


@pytest.mark.parametrize("launch, message", [
    ({"workers": 2}, "train.workers=2 trains on 2 Ray workers and needs a Ray cluster: set train.ray_address"),
    ({"ray_address": "auto", "resources": {"gpus": 1}}, r"unknown key\(s\) \['gpus'\] in train.resources; use num_cpus"),
    ({"ray_address": "auto", "resources": {"num_gpus": -1}}, "train.resources.num_gpus must be a number >= 0"),
    ({"ray_address": "auto", "workers": 0}, "train.workers must be a whole number >= 1"),
    ({"ray_address": ""}, "train.ray_address must be null, 'local', 'auto' or a Ray address"),
])
def test_bad_launch_settings_stop_before_any_training(launch, message):
    with pytest.raises(LaunchError, match=message):
        resolve_configs(train_params(**launch))


def test_the_study_sizing_follows_the_parent_child_graph():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import study_sizing
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    configs = study_sizing.study_configs()
    cost = {name: 10.0 for name in configs}
    assert study_sizing.wall_time(configs, cost, 1)[0] == 60  # one after the other
    assert study_sizing.wall_time(configs, cost, 2)[0] == 30
    assert study_sizing.wall_time(configs, cost, 3)[0] == 20  # the chain's head in the first round
    wall, plan = study_sizing.wall_time(configs, cost, 6)
    starts = {name: start for name, start, _ in plan}
    assert wall == 20 and starts["augs3"] == 10  # the child after its parent, whatever the GPUs
