from pathlib import Path

import pytest
import yaml

from urban_detection.detection.config import ConfigError, deep_merge, experiment_order, flatten, resolve_experiments

REPO = Path(__file__).resolve().parents[2]


def train_params():
    return yaml.safe_load((REPO / "conf/base/parameters_train.yml").read_text())["train"]


def test_all_seed_experiments_resolve_and_validate():
    params = train_params()
    params["experiments"] = list(params["catalog"])
    configs = resolve_experiments(params)
    assert {"baseline", "augmentations_rad_loss", "augmentations_small_lr", "augmentations_adam",
            "augmentations2_small_lr", "augs3", "fast_cpu"} <= set(configs)
    base = configs["baseline"]
    assert base["model"]["arch"] == "retinanet_resnet50_fpn" and base["model"]["image_size"] == 640
    assert base["train"]["batch_size"] == 8
    assert base["optimizer"]["schedule"] == {"type": "cosine", "base_lr": 0.04, "warmup_lr": 0.013333,
                                             "warmup_steps": 2000, "total_steps": 25000}
    adam = configs["augmentations_adam"]["optimizer"]
    assert adam["type"] == "adam" and "momentum" not in adam  # another type replaces, not merges
    assert adam["schedule"] == {"type": "manual_step", "initial_lr": 0.001, "steps": [[700, 0.0001], [1400, 1e-05]]}
    names = [a["name"] for a in configs["augmentations_rad_loss"]["augmentations"]]
    assert "random_jitter_boxes" in names
    assert "random_jitter_boxes" not in [a["name"] for a in configs["augmentations_small_lr"]["augmentations"]]
    assert configs["augs3"]["parent"] == "augmentations2_small_lr"
    assert configs["augmentations2_small_lr"]["optimizer"]["schedule"]["base_lr"] == 0.004
    order = experiment_order(configs)
    assert order.index("augmentations2_small_lr") < order.index("augs3")


def test_settings_apply_last_to_every_selected_experiment():
    params = train_params()
    params["experiments"] = ["baseline", "fast_cpu"]
    params["settings"] = {"train": {"steps": 3000, "batch_size": 4}, "model": {"image_size": 256}}
    configs = resolve_experiments(params)
    for cfg in configs.values():
        assert cfg["train"]["steps"] == 3000 and cfg["train"]["batch_size"] == 4
        assert cfg["model"]["image_size"] == 256
    assert configs["baseline"]["optimizer"]["schedule"]["total_steps"] == 3000


@pytest.mark.parametrize("change, message", [
    ({"settings": {"augmentations": [{"name": "random_teleport"}]}}, "unknown augmentation 'random_teleport'"),
    ({"settings": {"augmentations": [{"name": "random_horizontal_flip", "prob": 0.5}]}}, "unknown parameter 'prob'"),
    ({"settings": {"optimizer": {"schedule": {"warmup_steps": 99999}}}}, "total_steps"),
    ({"settings": {"optimizer": {"type": "rmsprop"}}}, "optimizer"),
    ({"settings": {"model": {"arch": "yolo"}}}, "unknown model.arch 'yolo'"),
    ({"settings": {"model": {"image_size": 300}}}, "multiple of 32"),
    ({"settings": {"train": {"steps": 0}}}, "train.steps"),
    ({"settings": {"parent": "nope"}}, "parent experiment 'nope' is not defined"),
    ({"experiments": ["nope"]}, "unknown experiment"),
    ({"experiments": []}, "selects no experiment"),
])
def test_bad_configs_fail_with_a_clear_error(change, message):
    params = {**train_params(), "experiments": ["baseline"], **change}
    with pytest.raises(ConfigError, match=message):
        resolve_experiments(params)


def test_deep_merge_and_flatten():
    base = {"a": {"b": 1, "c": [1, 2]}, "opt": {"type": "momentum", "momentum": 0.9}}
    merged = deep_merge(base, {"a": {"c": [3]}, "opt": {"type": "adam"}})
    assert merged == {"a": {"b": 1, "c": [3]}, "opt": {"type": "adam"}}
    assert base["a"]["c"] == [1, 2]
    assert flatten({"a": {"b": 1, "c": [3]}, "d": None}) == {"a.b": 1, "a.c": "[3]", "d": None}


def test_cycles_are_rejected():
    with pytest.raises(ConfigError, match="cycle"):
        experiment_order({"x": {"parent": "y"}, "y": {"parent": "x"}})
