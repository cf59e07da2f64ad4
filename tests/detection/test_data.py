"""tf.data input: shapes, padding, box format, label mapping, augmentation hook, bad records."""
import numpy as np
import pytest
import tensorflow as tf

from urban_detection.detection.data import (
    clean_batch_targets,
    make_dataset,
    make_inference_dataset,
    summarize_records,
)
from urban_detection.waymo.example import DetectionExample, encode_example


def _example(i, height, width, boxes, labels, colour=(200, 30, 40)):
    image = np.zeros((height, width, 3), np.uint8)
    image[...] = colour
    png = tf.io.encode_png(image).numpy()  # lossless, so pixel values can be checked
    return encode_example(DetectionExample(png, height, width, f"{i}.png", f"trip/{i}",
                                           np.asarray(boxes, np.float32).reshape(-1, 4),
                                           np.asarray(labels, np.int32), image_format="png"))


@pytest.fixture()
def records(tmp_path):
    """Three frames: all classes + an out-of-range box, no boxes, a sign (unknown) + a degenerate box."""
    path = tmp_path / "trip.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        w.write(_example(0, 40, 80, [[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 0.25], [0.5, 0.5, 1.2, 0.9]], [1, 2, 4]))
        w.write(_example(1, 40, 80, [], []))
        w.write(_example(2, 40, 80, [[0.1, 0.1, 0.3, 0.3], [0.2, 0.2, 0.2, 0.6], [0.4, 0.4, 0.8, 0.8]], [3, 1, 2]))
    return path


def test_eval_dataset_shapes_padding_and_pixel_boxes(records):
    ds = make_dataset([records], image_size=32, batch_size=2, training=False, max_boxes=5)
    batches = list(ds.as_numpy_iterator())
    assert [b[0].shape[0] for b in batches] == [2, 1]  # last partial batch kept when not training
    images, targets = batches[0]
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.float32
    assert targets["boxes"].shape == (2, 5, 4) and targets["boxes"].dtype == np.float32
    assert targets["labels"].shape == (2, 5) and targets["labels"].dtype == np.int32
    np.testing.assert_allclose(images[0, 5, 5], [200, 30, 40], atol=0.5)  # RGB in [0, 255], not normalised
    # frame 0: label ids 1/2/4 -> indices 0/1/2, boxes in pixel yxyx of the 32x32 input, clipped to the image
    np.testing.assert_array_equal(targets["labels"][0], [0, 1, 2, -1, -1])
    np.testing.assert_allclose(targets["boxes"][0, :3], np.array(
        [[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 0.25], [0.5, 0.5, 1.0, 0.9]]) * 32, atol=1e-4)
    assert (targets["boxes"][0, 3:] == -1).all()
    # frame 1 has no boxes: kept, all padding
    assert (targets["labels"][1] == -1).all() and (targets["boxes"][1] == -1).all()
    # frame 2: the sign (label 3) and the zero-height box are dropped, the pedestrian kept
    _, last = batches[1]
    np.testing.assert_array_equal(last["labels"][0], [1, -1, -1, -1, -1])
    np.testing.assert_allclose(last["boxes"][0, 0], np.array([0.4, 0.4, 0.8, 0.8]) * 32, atol=1e-4)


@pytest.mark.parametrize("max_boxes", [5, 2])
def test_batch_targets_of_the_inference_batches_are_the_loss_datasets(records, max_boxes):
    """The evaluation's one-pass losses score the inference batches' ground truth cleaned as make_dataset
    cleans it for the losses: unknown labels and degenerate boxes dropped, the rest first, cut, padded."""
    expected = [t for _, t in make_dataset([records], 32, 3, training=False, max_boxes=max_boxes).as_numpy_iterator()]
    (_, meta), = list(make_inference_dataset([records], 32, 3))
    got = clean_batch_targets(meta["boxes"], meta["labels"], 32, max_boxes=max_boxes)
    np.testing.assert_array_equal(got["labels"].numpy(), expected[0]["labels"])
    np.testing.assert_allclose(got["boxes"].numpy(), expected[0]["boxes"], atol=1e-5)
    assert (got["labels"].numpy()[2] == [1] + [-1] * (max_boxes - 1)).all()  # frame 2: sign and flat box gone


def test_report_surfaces_frames_without_boxes(records, caplog):
    report = {}
    with caplog.at_level("INFO", logger="urban_detection.detection.data"):
        make_dataset(records, image_size=16, batch_size=2, training=True, report=report)
    assert report["frames"] == 3 and report["frames_without_boxes"] == 1
    assert "1 without boxes" in caplog.text


def test_max_boxes_truncates(records):
    ds = make_dataset(records, image_size=16, batch_size=1, training=False, max_boxes=2)
    _, targets = next(iter(ds))
    np.testing.assert_array_equal(targets["labels"][0].numpy(), [0, 1])


def test_training_dataset_repeats_with_static_batches_and_calls_augment(records):
    seen = {}

    def flip(image, boxes, labels):
        seen["image"] = (image.dtype, image.shape.rank)
        seen["labels"] = labels.dtype
        flipped = tf.stack([boxes[:, 0], 1.0 - boxes[:, 3], boxes[:, 2], 1.0 - boxes[:, 1]], axis=1)
        return tf.image.flip_left_right(image), flipped, labels

    ds = make_dataset(records, image_size=32, batch_size=2, training=True, augment_fn=flip, shuffle_buffer=1,
                      max_boxes=4)
    assert ds.element_spec[0].shape.as_list() == [2, 32, 32, 3]  # static batch: partial batches dropped
    batches = list(ds.take(6).as_numpy_iterator())  # 3 frames, 6 batches: the dataset repeats
    assert len(batches) == 6
    assert seen["image"] == (tf.float32, 3)  # augmenter sees a float32 HxWx3 image at original size
    assert seen["labels"] == tf.int32  # ... and label ids (mapped to indices after it)
    # frame 0 (labels 0, 1) anywhere in a batch: the parallel map may order a batch's frames either way
    firsts = [b[1]["boxes"][i, 0] for b in batches for i in range(2)
              if b[1]["labels"][i, 0] == 0 and b[1]["labels"][i, 1] == 1]
    assert firsts, "frame 0 should appear"
    np.testing.assert_allclose(firsts[0], np.array([0.1, 1 - 0.6, 0.5, 1 - 0.2]) * 32, atol=1e-4)


def test_a_size_invariant_augmenter_sees_frames_already_resized(records):
    from urban_detection.detection.augment import build_augmenter

    flip_and_colour = build_augmenter([{"name": "random_horizontal_flip"}, {"name": "random_adjust_brightness"}])
    with_crop = build_augmenter([{"name": "random_horizontal_flip"}, {"name": "random_crop_image"}])
    assert flip_and_colour.size_invariant and not with_crop.size_invariant
    seen = []

    def recording(augment):
        def fn(image, boxes, labels):
            seen.append(image.shape.as_list())
            return augment(image, boxes, labels)
        fn.size_invariant = augment.size_invariant
        return fn

    for augment in (flip_and_colour, with_crop):
        ds = make_dataset(records, image_size=24, batch_size=2, training=True, augment_fn=recording(augment),
                          shuffle_buffer=1, cache=True)
        images, _ = next(iter(ds))
        assert images.shape == (2, 24, 24, 3)
    # traced once each: the flip and colours get the 24x24 frame (cached at that size), the crop the original
    assert seen == [[24, 24, 3], [None, None, 3]]


def test_no_augmentation_when_not_training(records):
    def fail(image, boxes, labels):
        raise AssertionError("augment_fn must not run for evaluation data")

    ds = make_dataset(records, image_size=16, batch_size=3, training=False, augment_fn=fail)
    assert next(iter(ds))[0].shape[0] == 3


def test_cache_gives_same_batches(records):
    plain = list(make_dataset(records, 24, 3, training=False).as_numpy_iterator())
    cached = make_dataset(records, 24, 3, training=False, cache=True)
    for _ in range(2):  # first pass fills the cache, second reads it
        again = list(cached.as_numpy_iterator())
        np.testing.assert_array_equal(plain[0][0], again[0][0])
        np.testing.assert_array_equal(plain[0][1]["boxes"], again[0][1]["boxes"])


def test_inference_dataset_metadata(records):
    batches = list(make_inference_dataset([records], image_size=32, batch_size=2).as_numpy_iterator())
    images, meta = batches[0]
    assert images.shape == (2, 32, 32, 3)
    assert [s.decode() for s in meta["source_id"]] == ["trip/0", "trip/1"]
    np.testing.assert_array_equal(meta["height"], [40, 40])
    np.testing.assert_array_equal(meta["width"], [80, 80])
    np.testing.assert_array_equal(meta["num_boxes"], [3, 0])
    # ground truth stays normalised with label ids, padded with -1 to the batch's largest frame
    np.testing.assert_array_equal(meta["labels"], [[1, 2, 4], [-1, -1, -1]])
    np.testing.assert_allclose(meta["boxes"][0, 2], [0.5, 0.5, 1.0, 0.9], atol=1e-6)
    assert (meta["boxes"][1] == -1).all()
    _, meta2 = batches[1]
    np.testing.assert_array_equal(meta2["labels"][0], [3, 1, 2])  # evaluation decides about unknown labels


def test_inference_batches_span_files_and_name_each_frames_file(records, tmp_path):
    other = tmp_path / "other.tfrecord"
    with tf.io.TFRecordWriter(str(other)) as w:
        w.write(_example(7, 40, 80, [[0.1, 0.1, 0.3, 0.3]], [2]))
    batches = list(make_inference_dataset([records, other], image_size=32, batch_size=2).as_numpy_iterator())
    assert [len(images) for images, _ in batches] == [2, 2]  # frame 2 of the first file and the second's frame
    paths = [p.decode() for _, meta in batches for p in meta["path"]]
    sources = [s.decode() for _, meta in batches for s in meta["source_id"]]
    assert paths == [str(records)] * 3 + [str(other)] and sources == ["trip/0", "trip/1", "trip/2", "trip/7"]


def test_summary_counts_and_bad_records(records, tmp_path, caplog):
    bad = tmp_path / "bad.tfrecord"
    with tf.io.TFRecordWriter(str(bad)) as w:
        w.write(b"not a tf.Example")
        w.write(_example(7, 20, 20, [[0.1, 0.1, 0.9, 0.9]], [4]))
    report = summarize_records([records, bad], max_boxes=2)
    assert report["frames"] == 4
    assert report["frames_without_boxes"] == 1
    assert report["unknown_label_boxes"] == 1
    assert report["degenerate_boxes"] == 1
    assert report["frames_over_max_boxes"] == 1
    assert report["boxes_per_class"] == {1: 1, 2: 2, 4: 2}
    assert report["bad_records"] == 1
    assert report["problems"][0]["file"] == str(bad) and report["problems"][0]["record"] == 0
    assert "bad.tfrecord #0" in caplog.text
    # the training pipeline skips the bad record instead of failing
    ds = make_dataset([bad], image_size=16, batch_size=1, training=False)
    labels = [t["labels"][0, 0] for _, t in ds.as_numpy_iterator()]
    assert labels == [2]


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tfrecord"):
        make_dataset([tmp_path / "nope.tfrecord"], 16, 1, training=False)


def test_detection_datasets_run_without_autotuning(records):
    """An autotuned iterator was sometimes held seconds after its last batch (data.without_autotune)."""
    for ds in (make_dataset([records], 16, 2, training=True), make_dataset([records], 16, 2, training=False),
               make_inference_dataset([records], 16, 2)):
        assert ds.options().autotune.enabled is False
