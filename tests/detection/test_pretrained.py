"""Fine-tuning from KerasHub presets: a COCO detector (detection fine-tune) and an ImageNet backbone.

The presets are KerasHub's own classes with the published architectures and random
weights, written with ``save_to_preset`` (no hub download), then loaded through the
project's ``build_detector(arch, weights=<dir>)`` as training does.
"""
import math

import keras
import keras_hub
import numpy as np
import pytest
from keras_hub.src.models.retinanet.retinanet_presets import backbone_presets

from urban_detection.detection import pretrained
from urban_detection.detection.model import IMAGENET_MEAN, IMAGENET_STD, build_detector

ARCH = "retinanet_resnet50_fpn_coco"
SIZE = 128
# config.json of KerasHub's resnet_50_imagenet (the image_encoder of retinanet_resnet50_fpn_coco)
RESNET_50 = dict(
    input_conv_filters=[64],
    input_conv_kernel_sizes=[7],
    stackwise_num_filters=[64, 128, 256, 512],
    stackwise_num_blocks=[3, 4, 6, 3],
    stackwise_num_strides=[1, 2, 2, 2],
    block_type="bottleneck_block",
    use_pre_activation=False,
)
PRIOR_BIAS = -math.log((1 - 0.01) / 0.01)


def _values(variables):
    return {"/".join(v.path.split("/")[-2:]): v.numpy() for v in variables}


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """KerasHub's COCO RetinaNet built as its conversion script does (91 classes), saved as a preset."""
    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=keras_hub.models.ResNetBackbone(**RESNET_50),
        min_level=3,
        max_level=7,
        use_p5=False,
        image_shape=(SIZE, SIZE, 3),
    )
    source = keras_hub.models.RetinaNetObjectDetector(backbone=backbone, num_classes=91)
    # the published size of the preset: same architecture, so the real weights load the same way
    assert source.count_params() == backbone_presets[ARCH]["metadata"]["params"]
    path = tmp_path_factory.mktemp("presets") / "retinanet_coco"
    source.save_to_preset(str(path))
    return path, source


def test_coco_detector_preset_loads_like_a_detection_fine_tune(coco):
    path, source = coco
    model = build_detector(ARCH, SIZE, weights=str(path))

    parts = {
        "image_encoder": (source.backbone.image_encoder.weights, model.backbone.image_encoder.weights),
        "fpn": (source.backbone.feature_pyramid.weights, model.backbone.feature_pyramid.weights),
        "box_head": (source.box_head.weights, model.box_head.weights),
        "class_tower": ([v for layer in source.classification_head.conv_layers for v in layer.weights],
                        [v for layer in model.classification_head.conv_layers for v in layer.weights]),
    }
    for component, (src, dst) in parts.items():
        want, got = _values(src), _values(dst)
        assert set(got) == set(want) and len(got) == len(dst), component
        for name, value in want.items():  # every weight, BatchNorm statistics included, exactly
            np.testing.assert_array_equal(got[name], value, err_msg=f"{component} {name}")

    # a new 3-class last layer: 9 anchors x 3 classes, kernel N(0, 0.01), the focal prior as bias
    logits = model.classification_head.prediction_layer
    assert tuple(logits.kernel.shape) == (3, 3, 256, 9 * 3)
    assert tuple(source.classification_head.prediction_layer.kernel.shape) == (3, 3, 256, 9 * 91)
    np.testing.assert_allclose(logits.bias.numpy(), PRIOR_BIAS, rtol=1e-6)
    assert 0.008 < float(np.std(logits.kernel.numpy())) < 0.012

    report = model.init_report
    n = {c: len(v) for c, v in pretrained.model_components(model).items()}
    assert n == {"image_encoder": 265, "fpn": 16, "box_head": 10, "class_tower": 8, "class_logits": 2}
    assert report["source"] == str(path) and report["source_type"] == "RetinaNetObjectDetector"
    assert (report["loaded"], report["initialised"]) == (299, 2) and 299 + 2 == len(model.weights)
    for component, counts in report["by_component"].items():
        new = component == "class_logits"
        assert (counts["loaded"], counts["initialised"]) == ((0, n[component]) if new else (n[component], 0))
    assert report["initialised_params"] == 9 * 3 * (3 * 3 * 256 + 1)
    assert report["loaded_params"] + report["initialised_params"] == model.count_params()
    assert (report["num_classes"], report["source_num_classes"]) == (3, 91)

    # the same network: on the same image the box head predicts what KerasHub's model predicts
    # (KerasHub normalises in its preprocessor, the project's backbone does it inside)
    images = np.random.default_rng(0).uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
    normalised = (images / 255.0 - np.asarray(IMAGENET_MEAN, "float32")) / np.asarray(IMAGENET_STD, "float32")
    want = source(normalised)["bbox_regression"].numpy()
    got = model(images)["bbox_regression"].numpy()
    assert got.shape == want.shape == (1, 9 * sum((SIZE // 2**lvl) ** 2 for lvl in range(3, 8)), 4)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


def test_a_preset_of_another_layout_is_an_error_naming_the_variables(coco):
    path, source = coco  # the object build_detector would read from ``path``
    # BatchNorm in the FPN (the OD API layout): its norms are not in the COCO preset
    with pytest.raises(ValueError, match=r"does not match the FPN .* missing from the preset .*lateral_norm_P3"):
        pretrained.transfer(build_detector(ARCH, SIZE, fpn_batch_norm=True), source, str(path))
    # 2 anchor scales per octave: the box head would not fit (and would mean other boxes)
    with pytest.raises(ValueError, match=r"encodes boxes differently .*num_scales"):
        pretrained.transfer(build_detector(ARCH, SIZE, num_scales=2), source, str(path))


def test_imagenet_backbone_preset_loads_the_image_encoder(tmp_path):
    keras.utils.set_random_seed(2)
    source = keras_hub.models.ResNetBackbone(**RESNET_50)
    source.save_to_preset(str(tmp_path / "resnet_50"))
    model = build_detector(ARCH, SIZE, weights=str(tmp_path / "resnet_50"))

    want, got = _values(source.weights), _values(model.backbone.image_encoder.weights)
    assert set(got) == set(want) and len(want) == 265
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)

    report = model.init_report
    assert report["source_type"] == "ResNetBackbone"
    assert (report["loaded"], report["initialised"]) == (265, 36)
    assert {c: (v["loaded"], v["initialised"]) for c, v in report["by_component"].items()} == {
        "image_encoder": (265, 0), "fpn": (0, 16), "box_head": (0, 10), "class_tower": (0, 8), "class_logits": (0, 2)}
    assert report["loaded_params"] == source.count_params()
    np.testing.assert_allclose(model.classification_head.prediction_layer.bias.numpy(), PRIOR_BIAS, rtol=1e-6)


def test_a_preset_name_offline_is_a_clear_error(tmp_path, monkeypatch):
    # really offline, whatever the machine: the hub's HTTP calls go to a closed local port
    # and its cache is empty, so nothing can be downloaded
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "hub_cache"))
    with pytest.raises(RuntimeError, match="offline") as err:
        build_detector(ARCH, SIZE, weights=ARCH)
    message = str(err.value)
    assert "save_to_preset" in message and "local directory" in message and repr(ARCH) in message
    with pytest.raises(FileNotFoundError, match="not found"):
        build_detector(ARCH, SIZE, weights=str(tmp_path / "no_such_preset_dir"))
