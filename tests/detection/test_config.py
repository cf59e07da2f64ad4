from pathlib import Path

import copy
import re

import pytest
import yaml

from urban_detection.detection.config import (
    CONFIG_SCHEMA,
    OPTIMIZER_KEYS,
    SCHEDULE_KEYS,
    ConfigError,
    deep_merge,
    experiment_order,
    flatten,
    resolve_experiments,
)

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
    assert base["model"]["arch"] == "retinanet_resnet50_fpn_coco" and base["model"]["image_size"] == 640
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


@pytest.mark.parametrize("name", sorted(train_params()["catalog"]))
def test_each_shipped_experiment_resolves_alone(name):
    params = {**train_params(), "experiments": [name]}
    cfg = resolve_experiments(params)[name]
    assert cfg["name"] == name and cfg["train"]["steps"] >= 1


# (settings given with --params, path in the error, the suggestion)
TYPOS = [
    ({"parnet": None}, "parnet", "parent"),
    ({"model": {"imagesize": 320}}, "model.imagesize", "model.image_size"),
    ({"model": {"wieghts": None}}, "model.wieghts", "model.weights"),
    ({"train": {"step": 10}}, "train.step", "train.steps"),
    ({"train": {"checkpoint_evry": 10}}, "train.checkpoint_evry", "train.checkpoint_every"),
    ({"train": {"val_coco_frame": 10}}, "train.val_coco_frame", "train.val_coco_frames"),
    ({"train": {"image_size": 320}}, "train.image_size", "model.image_size"),  # right key, wrong section
    ({"optimizer": {"momentun": 0.8}}, "optimizer.momentun", "optimizer.momentum"),
    ({"optimizer": {"schedule": {"warmup_step": 10}}}, "optimizer.schedule.warmup_step",
     "optimizer.schedule.warmup_steps"),
    ({"optimizer": {"type": "adam", "beta1": 0.8, "learning_rate": 0.001}}, "optimizer.beta1", "optimizer.beta_1"),
    ({"optimizer": {"type": "sgd", "global_clip_norm": 1.0, "learning_rate": 0.01}}, "optimizer.global_clip_norm",
     "optimizer.global_clipnorm"),
    ({"optimizer": {"type": "adam", "schedule": {"type": "manual_step", "initial_lr": 0.001, "step": [[5, 1e-4]]}}},
     "optimizer.schedule.step", "optimizer.schedule.steps"),
    ({"optimizer": {"type": "adam", "schedule": {"type": "constant", "learning_rat": 0.001}}},
     "optimizer.schedule.learning_rat", "optimizer.schedule.learning_rate"),
    ({"model": {"overrides": {"head_conv": 1}}}, "model.overrides.head_conv", "model.overrides.head_convs"),
    ({"model": {"overrides": {"encoder": {"block_typ": "basic_block"}}}}, "model.overrides.encoder.block_typ",
     "model.overrides.encoder.block_type"),
    ({"augmentations": [{"name": "random_horizontal_flip"}, {"name": "random_rgb_to_gray", "prob": 0.5}]},
     "augmentations[1].prob", "probability"),
    ({"augmentations": [{"name": "random_horizntal_flip"}]}, "augmentations[0].name", "random_horizontal_flip"),
]


@pytest.mark.parametrize("settings, path, suggestion", TYPOS, ids=[t[1] for t in TYPOS])
def test_a_typo_at_any_level_names_its_path_and_the_nearest_key(settings, path, suggestion):
    params = {**train_params(), "experiments": ["baseline"], "settings": settings}
    with pytest.raises(ConfigError) as err:
        resolve_experiments(params)
    message = str(err.value)
    assert message.startswith("experiment 'baseline': ")
    assert (f"`{path}`" in message) or message.split(": ", 1)[1].startswith(f"{path}:"), message
    assert f"did you mean `{suggestion}`?" in message, message
    if not path.startswith("augmentations"):
        assert "(set in train.settings)" in message, message


def test_a_key_without_a_near_one_lists_the_valid_keys():
    params = {**train_params(), "experiments": ["fast_cpu"], "settings": {"train": {"zzz": 1}}}
    with pytest.raises(ConfigError, match=r"unknown key `train.zzz` \(valid: batch_size, best_metric, "):
        resolve_experiments(params)
    # an adam optimizer has no momentum: the error says which keys a adam optimizer takes
    params["settings"] = {"optimizer": {"momentum": 0.9}}
    with pytest.raises(ConfigError, match=r"unknown key `optimizer.momentum` for a adam optimizer \(valid: beta_1"):
        resolve_experiments(params)


@pytest.mark.parametrize("where", ["base", "catalog"])
def test_typos_in_the_parameters_file_fail_even_for_unselected_experiments(where):
    params = copy.deepcopy(train_params())
    params["experiments"] = ["fast_cpu"]
    if where == "base":
        params["base"]["train"]["step"] = params["base"]["train"].pop("steps")
        source = "train.base"
    else:  # baseline is not selected: its typo still fails now, not when someone selects it
        params["catalog"]["baseline"] = {"model": {"imagesize": 320}}
        source = "train.catalog.baseline"
    with pytest.raises(ConfigError, match=rf"unknown key `(train.step|model.imagesize)`; did you mean "
                                          rf"`(train.steps|model.image_size)`\? \(set in {source}\)"):
        resolve_experiments(params)


@pytest.mark.parametrize("key, suggestion", [("setings", "train.settings"), ("experiment", "train.experiments"),
                                             ("model", "train.settings.model")])
def test_typos_in_the_train_parameters_themselves(key, suggestion):
    """``--params train.setings.train.steps=5`` or ``train.model.image_size=256`` would otherwise be ignored."""
    params = {**train_params(), key: {}}
    with pytest.raises(ConfigError, match=rf"unknown key `train.{key}`; did you mean `{suggestion}`\?"):
        resolve_experiments(params)


@pytest.mark.parametrize("settings, message", [
    ({"train": {"cache": "yes"}}, "train.cache must be bool, got 'yes'"),
    ({"train": {"log_keras_model": 1}}, "train.log_keras_model must be bool, got 1"),
    ({"train": {"best_metric": 3}}, "train.best_metric must be str, got 3"),
    ({"train": {"val_coco_frames": 0}}, "train.val_coco_frames must be a positive int, got 0"),
    ({"train": {"val_coco_frames": 2.5}}, "train.val_coco_frames must be int or null, got 2.5"),
    ({"train": {"log_checkpoints": "no"}}, "train.log_checkpoints must be bool"),
    ({"train": {"focal_alpha": True}}, "train.focal_alpha must be int or float, got True"),
    ({"train": {"log_every": 0}}, "train.log_every must be a positive int"),
    ({"train": {"strategy": "mirorred"}}, r"unknown train.strategy 'mirorred' .*did you mean `mirrored`\?"),
    ({"model": {"arch": "retinanet_resnet50"}}, r"unknown model.arch .*did you mean `retinanet_resnet50_fpn`\?"),
    ({"train": 5}, "train must be a mapping"),
    ({"train": {"mixed_precision": "bfloat17"}},
     r"unknown train.mixed_precision 'bfloat17' .*did you mean `bfloat16`\?"),
    ({"train": {"mixed_precision": 16}}, "train.mixed_precision must be bool or str, got 16"),
])
def test_values_of_the_wrong_type_are_errors(settings, message):
    params = {**train_params(), "experiments": ["fast_cpu"], "settings": settings}
    with pytest.raises(ConfigError, match=message):
        resolve_experiments(params)


@pytest.mark.parametrize("mixed", [True, False, "float16", "bfloat16", "auto"])
def test_mixed_precision_takes_true_false_or_a_compute_type(mixed):
    params = {**train_params(), "experiments": ["fast_cpu"], "settings": {"train": {"mixed_precision": mixed}}}
    assert resolve_experiments(params)["fast_cpu"]["train"]["mixed_precision"] == mixed


def test_optional_train_keys_and_model_overrides_are_accepted():
    params = {**train_params(), "experiments": ["fast_cpu"], "settings": {
        "train": {"best_metric": "DetectionBoxes_Precision/mAP", "val_coco_frames": None, "log_checkpoints": False,
                  "cache": True, "log_keras_model": False, "focal_alpha": 0.5, "focal_gamma": 2,
                  "smooth_l1_beta": 0.1, "ema_decay": 0.99, "ema_ramp_steps": 60},
        "model": {"overrides": {"head_convs": 1, "fpn_batch_norm": False,
                                "encoder": {"stackwise_num_blocks": [1] * 4}}},
    }}
    cfg = resolve_experiments(params)["fast_cpu"]
    assert cfg["train"]["val_coco_frames"] is None and cfg["train"]["best_metric"] == "DetectionBoxes_Precision/mAP"
    assert cfg["model"]["overrides"]["fpn_batch_norm"] is False


def test_group_norm_heads_of_a_width_32_does_not_divide_are_a_config_error():
    # fast_cpu normalises its heads (GroupNorm, 32 groups): a laptop-sized width of 16 fails before training,
    # naming the key and a width that works; without head_norm the same width is fine
    params = {**train_params(), "experiments": ["fast_cpu"],
              "settings": {"model": {"overrides": {"head_filters": 16}}}}
    with pytest.raises(ConfigError, match=r"experiment 'fast_cpu': model.overrides: head_norm needs head_filters to "
                                          r"be a multiple of 32 .* got 16: set model.overrides.head_filters to 32"):
        resolve_experiments(params)
    params["settings"]["model"]["overrides"]["head_norm"] = False
    assert resolve_experiments(params)["fast_cpu"]["model"]["overrides"]["head_filters"] == 16
    params["settings"]["model"]["overrides"].update(head_norm=True, head_filters=32)
    assert resolve_experiments(params)["fast_cpu"]["model"]["overrides"]["head_filters"] == 32


@pytest.mark.parametrize("ema, message", [({"ema_decay": 1.5}, r"train.ema_decay must be a number in \(0, 1\)"),
                                          ({"ema_decay": 0.9, "ema_ramp_steps": -5}, "train.ema_ramp_steps")])
def test_a_bad_weight_average_is_a_config_error(ema, message):
    params = {**train_params(), "experiments": ["fast_cpu"], "settings": {"train": ema}}
    with pytest.raises(ConfigError, match=f"experiment 'fast_cpu': {message}"):
        resolve_experiments(params)


def test_an_unknown_best_metric_is_a_config_error_listing_the_valid_ones():
    from urban_detection.detection.best_metric import BEST_METRICS

    params = {**train_params(), "experiments": ["fast_cpu"], "settings": {"train": {"best_metric": "mAP50"}}}
    with pytest.raises(ConfigError, match=r"experiment 'fast_cpu': unknown train.best_metric 'mAP50' \(valid: "
                                          r"DetectionBoxes_Precision/mAP, ") as err:
        resolve_experiments(params)
    assert all(name in str(err.value) for name in BEST_METRICS)
    for name in ("loss/total", "DetectionBoxes_Recall/AR@100", "DetectionBoxes_PerformanceByCategory/mAP/cyclist"):
        params["settings"]["train"]["best_metric"] = name
        assert resolve_experiments(params)["fast_cpu"]["train"]["best_metric"] == name


@pytest.mark.parametrize("section, variable", [("train", "tcfg"), ("model", "mcfg")])
def test_every_key_the_code_reads_is_in_the_schema(section, variable):
    """A key the code reads (``tcfg.get("cache")``, ``cfg["model"]["arch"]``, ``tcfg[k] for k in (...)``)
    but the schema lacks would make every config that sets it fail."""
    reader = rf'(?:{variable}|\b(?:cfg|config)\["{section}"\])'
    keys = set()
    for path in (REPO / "src/urban_detection").rglob("*.py"):
        code = path.read_text()
        keys |= set(re.findall(rf'{reader}(?:\.get\(|\[)"(\w+)"', code))
        keys |= {k for group in re.findall(rf'{reader}\[k\] for k in \(([^)]*)\)', code)
                 for k in re.findall(r'"(\w+)"', group)}
    assert {"batch_size", "steps"} <= keys or {"arch", "image_size"} <= keys, f"pattern out of date: {keys}"
    assert keys <= set(CONFIG_SCHEMA[section]), keys - set(CONFIG_SCHEMA[section])
