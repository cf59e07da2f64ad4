"""Detector builders, the per-class NMS decoder, label mapping and initial weights."""
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from urban_detection.detection import model as M
from urban_detection.detection.model import (
    INDEX_TO_LABEL,
    LABEL_TO_INDEX,
    MultiClassNMS,
    build_detector,
    build_image_encoder,
    arch_config,
    indices_to_label_ids,
    label_ids_to_indices,
    load_initial_weights,
    postprocess_detections,
)

SMALL = "retinanet_resnet18_fpn_small"
# An even smaller variant so tests stay fast on a shared CPU.
TINY = dict(encoder=dict(stackwise_num_filters=[64, 32, 32, 32]), fpn_filters=16, head_filters=16, head_convs=1)


def _kernel(model, suffix="conv1_conv/kernel"):
    (var,) = [v for v in model.backbone.image_encoder.weights if v.path == suffix]
    return var.numpy()


def test_label_mapping_roundtrip():
    assert LABEL_TO_INDEX == {1: 0, 2: 1, 4: 2}
    assert INDEX_TO_LABEL == {0: 1, 1: 2, 2: 4}
    ids = np.array([1, 2, 4, 3, 0, 7])
    np.testing.assert_array_equal(label_ids_to_indices(ids), [0, 1, 2, -1, -1, -1])
    np.testing.assert_array_equal(label_ids_to_indices(tf.constant(ids)).numpy(), [0, 1, 2, -1, -1, -1])
    np.testing.assert_array_equal(indices_to_label_ids(np.array([0, 1, 2, -1])), [1, 2, 4, -1])
    np.testing.assert_array_equal(indices_to_label_ids(tf.constant([2, 0, -1, 5])).numpy(), [4, 1, -1, -1])


def test_small_detector_outputs_and_prior():
    model = build_detector(SMALL, 128)
    assert isinstance(model, keras_hub.models.RetinaNetObjectDetector)
    cfg = arch_config(SMALL)
    x = np.random.default_rng(0).uniform(0, 255, (2, 128, 128, 3)).astype("float32")
    out = model(x)
    anchors_per_loc = cfg["num_scales"] * len(cfg["aspect_ratios"])
    cells = sum((128 // 2**lvl) ** 2 for lvl in range(cfg["min_level"], cfg["max_level"] + 1))
    assert out["cls_logits"].shape == (2, cells * anchors_per_loc, 3)
    assert out["bbox_regression"].shape == (2, cells * anchors_per_loc, 4)
    # the focal-loss prior sits on the class logits (KerasHub puts it on the box head): sigmoid(b) = 0.01
    cls_bias = model.classification_head.prediction_layer.bias.numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-cls_bias)), 0.01, rtol=1e-4)
    assert np.all(model.box_head.prediction_layer.bias.numpy() == 0)
    # so the initial class scores are ~0.01 everywhere
    assert abs(float(tf.reduce_mean(tf.sigmoid(out["cls_logits"]))) - 0.01) < 0.01
    assert model.head_filters == cfg["head_filters"]
    assert model.backbone.feature_pyramid.num_filters == cfg["fpn_filters"]


def test_resnet50_matches_the_od_api_config():
    model = build_detector("retinanet_resnet50_fpn", 128)
    enc = model.backbone.image_encoder
    assert enc.stackwise_num_blocks == [3, 4, 6, 3] and enc.block_type == "bottleneck_block"
    assert (model.backbone.min_level, model.backbone.max_level) == (3, 7)
    assert model.backbone.feature_pyramid.num_filters == 256 and model.head_filters == 256
    assert model.pre_logits_num_conv_layers == 4
    ag = model.anchor_generator
    assert (ag.anchor_size, ag.num_scales, sorted(ag.aspect_ratios)) == (4.0, 2, [0.5, 1.0, 2.0])
    nms = model.prediction_decoder
    assert (nms.iou_threshold, nms.confidence_threshold, nms.max_detections) == (0.6, 1e-8, 100)
    assert model.label_encoder.positive_threshold == 0.5 and model.label_encoder.negative_threshold == 0.5
    assert 30e6 < M.count_params(model) < 40e6
    regularized = [v for v in model.trainable_weights if v.regularizer is not None]
    assert regularized and all(v.path.endswith("kernel") for v in regularized)
    assert float(model.classification_head_prior_probability) == 0.01


def test_resnet50_coco_matches_the_keras_hub_preset_layout():
    model = build_detector("retinanet_resnet50_fpn_coco", 128)
    bb = model.backbone
    assert bb.image_encoder.stackwise_num_blocks == [3, 4, 6, 3] and bb.image_encoder.block_type == "bottleneck_block"
    assert (bb.min_level, bb.max_level, bb.use_p5, bb.use_fpn_batch_norm) == (3, 7, False, False)
    fpn = bb.feature_pyramid
    assert fpn.num_filters == 256 and not fpn.lateral_batch_norm_layers and not fpn.output_batch_norms
    # P6 from the FPN's 256-channel P5 output (not from the backbone's 2048-channel C5)
    assert tuple(fpn.output_conv_layers["P6"].kernel.shape) == (3, 3, 256, 256)
    for head in (model.box_head, model.classification_head):
        assert head.num_filters == 256 and head.num_conv_layers == 4 and not head.group_norm_layers
    ag = model.anchor_generator
    assert (ag.anchor_size, ag.num_scales, sorted(ag.aspect_ratios)) == (4.0, 3, [0.5, 1.0, 2.0])
    assert model.label_encoder.encoding_format == "center_xywh" and model.label_encoder.box_variance == [1.0] * 4
    # the preset's 34,121,239 parameters with a 3-class instead of a 91-class last layer
    assert model.count_params() == 34_121_239 - 9 * (91 - 3) * (3 * 3 * 256 + 1)
    # random init is reported too
    report = model.init_report
    assert report["source"] is None and report["loaded"] == 0 and report["initialised"] == len(model.weights)


def test_default_and_free_image_size():
    assert build_detector(SMALL, **TINY).input_shape[1:3] == (320, 320)
    free = build_detector(SMALL, 0, **TINY)
    assert free.input_shape[1:3] == (None, None)
    assert free(np.zeros((1, 64, 96, 3), np.float32))["cls_logits"].shape[0] == 1


def test_overrides_and_errors():
    model = build_detector(SMALL, 64, head_convs=0, max_level=5, **{k: v for k, v in TINY.items() if k != "head_convs"})
    assert model.backbone.max_level == 5 and model.pre_logits_num_conv_layers == 0
    with pytest.raises(ValueError, match="unknown detector arch"):
        build_detector("yolo", 64)
    with pytest.raises(ValueError, match="unknown override"):
        build_detector(SMALL, 64, head_width=3)


def test_predict_and_postprocess():
    model = build_detector(SMALL, 64, **TINY)
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    preds = model.predict_on_batch(images)
    assert preds["boxes"].shape == (2, 100, 4) and preds["num_detections"].shape == (2,)
    results = postprocess_detections(preds, 64)
    assert len(results) == 2
    for r, n in zip(results, preds["num_detections"]):
        assert len(r["boxes"]) == len(r["scores"]) == len(r["labels"]) == n > 0
        assert r["boxes"].min() >= 0 and r["boxes"].max() <= 1
        assert set(np.unique(r["labels"])) <= {1, 2, 4}
        assert np.all(np.diff(r["scores"]) <= 0)
    detected = M.detect(model, images.astype(np.uint8))
    assert len(detected) == 2


def test_multiclass_nms_is_per_class():
    nms = MultiClassNMS(iou_threshold=0.6, confidence_threshold=0.05, max_detections=5, from_logits=False)
    boxes = tf.constant([[[0, 0, 10, 10], [0, 0, 10, 9.5], [0, 0, 10, 10], [20, 20, 30, 30]]], tf.float32)
    scores = tf.constant([[[0.9, 0.0, 0.0],   # vehicle
                           [0.8, 0.0, 0.0],   # vehicle, IoU 0.95 with the first: suppressed
                           [0.0, 0.7, 0.0],   # pedestrian on the same spot: kept (other class)
                           [0.0, 0.0, 0.01]]], tf.float32)  # below the score threshold
    out = nms(boxes, scores, images=tf.zeros([1, 40, 40, 3]))
    assert int(out["num_detections"][0]) == 2
    np.testing.assert_array_equal(out["labels"][0, :2].numpy(), [0, 1])
    np.testing.assert_allclose(out["confidence"][0, :2].numpy(), [0.9, 0.7])
    np.testing.assert_allclose(out["boxes"][0, 0].numpy(), [0, 0, 10, 10], atol=1e-5)  # back in pixels
    assert (out["labels"][0, 2:].numpy() == -1).all() and (out["boxes"][0, 2:].numpy() == -1).all()
    clone = MultiClassNMS.from_config(nms.get_config())
    assert clone.iou_threshold == 0.6 and clone.max_detections == 5


def test_local_preset_weights_are_loaded(tmp_path):
    cfg = arch_config(SMALL, **TINY)
    source = build_image_encoder(cfg)
    source.save_to_preset(str(tmp_path / "preset"))
    model = build_detector(SMALL, 64, weights=str(tmp_path / "preset"), **TINY)
    np.testing.assert_array_equal(_kernel(model), source.get_layer("conv1_conv").kernel.numpy())
    np.testing.assert_array_equal(_kernel(model, "stack3_block0_2_conv/kernel"),
                                  source.get_layer("stack3_block0_2_conv").kernel.numpy())
    fresh = build_detector(SMALL, 64, **TINY)
    assert not np.allclose(_kernel(fresh), _kernel(model))  # not a coincidence of initialisers
    report = model.init_report
    assert report["loaded"] == len(source.weights) == report["by_component"]["image_encoder"]["loaded"]
    assert report["initialised"] == len(model.weights) - len(source.weights)
    from urban_detection.detection.precision import precision

    with precision("bfloat16"):  # presets follow the precision policy like random init
        mixed = build_detector(SMALL, 64, weights=str(tmp_path / "preset"), **TINY)
    assert mixed.backbone.image_encoder.compute_dtype == "bfloat16"
    np.testing.assert_array_equal(_kernel(mixed), _kernel(model))


def test_preset_of_another_shape_is_rejected(tmp_path):
    other = build_image_encoder(arch_config(SMALL))  # full small widths, not TINY
    other.save_to_preset(str(tmp_path / "preset"))
    with pytest.raises(ValueError, match="does not match the image encoder"):
        build_detector(SMALL, 64, weights=str(tmp_path / "preset"), **TINY)


def test_remote_preset_offline_gives_clear_error(monkeypatch, tmp_path):
    # really offline, whatever the machine: the hub's HTTP calls go to a closed local port, its cache is empty
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="offline") as err:
        build_detector("retinanet_resnet50_fpn", 64, weights="resnet_50_imagenet")
    assert "save_to_preset" in str(err.value) and "local" in str(err.value)


def test_initial_weights_from_weights_file_and_checkpoint(tmp_path):
    source = build_detector(SMALL, 64, **TINY)
    weights_file = tmp_path / "source.weights.h5"
    source.save_weights(weights_file)
    ckpt_dir = tmp_path / "ckpts"
    tf.train.CheckpointManager(tf.train.Checkpoint(weights=M.checkpoint_weights(source)), str(ckpt_dir), 1).save(
        checkpoint_number=7)

    head = lambda m: m.classification_head.prediction_layer.kernel.numpy()  # noqa: E731
    for path in (weights_file, ckpt_dir):
        target = build_detector(SMALL, 64, **TINY)
        assert not np.allclose(head(target), head(source))
        loaded = load_initial_weights(target, path)
        assert str(loaded).endswith(("source.weights.h5", "ckpt-7"))
        report = target.init_report
        assert report["source"] == str(loaded) and report["initialised"] == 0
        assert report["loaded"] == len(target.weights) and report["loaded_params"] == target.count_params()
        for got, want in zip(target.weights, source.weights):  # every weight, FPN and BN statistics included
            np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=got.path)
    via_build = build_detector(SMALL, 64, weights=str(ckpt_dir), **TINY)
    np.testing.assert_array_equal(head(via_build), head(source))


def test_initial_weights_of_another_arch_are_rejected(tmp_path):
    source = build_detector(SMALL, 64, **TINY)
    tf.train.CheckpointManager(tf.train.Checkpoint(weights=M.checkpoint_weights(source)), str(tmp_path), 1).save()
    source.save_weights(tmp_path / "w.weights.h5")
    other = build_detector(SMALL, 64, **{**TINY, "head_filters": 8})
    with pytest.raises(ValueError, match="does not fit .* of another shape"):
        load_initial_weights(other, tmp_path)
    with pytest.raises(ValueError, match="do not fit"):
        load_initial_weights(other, tmp_path / "w.weights.h5")
    with pytest.raises(FileNotFoundError):
        load_initial_weights(other, tmp_path / "missing")


def test_detectors_built_by_threads_at_once_are_whole():
    # Kedro's ThreadRunner loads several models at once; Keras rewrites class
    # bases while building one. Fast thread switching and frequent collections
    # made 1-3 of these 9 builds fail before the builds took turns.
    import gc
    import sys
    import threading

    errors, built = [], []

    def build():
        for _ in range(3):
            try:
                built.append(M.build_detector("retinanet_resnet18_fpn_small", image_size=64))
            except Exception as exc:  # noqa: BLE001 - the failure is what the test looks for
                errors.append(repr(exc))

    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(10, 2, 2)
    try:
        threads = [threading.Thread(target=build) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
    assert errors == []
    assert len(built) == 9
    assert all(isinstance(model, M.RetinaNetDetector) for model in built)
