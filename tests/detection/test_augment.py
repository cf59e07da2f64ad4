"""Tests of the box-aware augmentations on tiny synthetic frames.

Each test image is a dark background with pixel-aligned bright rectangles, one per box, each
in its own colour channel, so box geometry can be checked exactly against the pixels.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import tensorflow as tf
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from urban_detection.detection import augment as A

H, W = 32, 48
BACKGROUND = 40
BRIGHT = 250
# Pixel rectangles (y0, x0, y1, x1), end-exclusive; rectangle k is bright in channel k.
RECTS = [(8, 12, 16, 24), (20, 30, 30, 44)]
LABELS = [1, 2]


def make_frame(rects=RECTS, labels=LABELS, h=H, w=W):
    image = np.full((h, w, 3), BACKGROUND, np.uint8)
    for channel, (y0, x0, y1, x1) in enumerate(rects):
        image[y0:y1, x0:x1, channel] = BRIGHT
    boxes = np.array([[y0 / h, x0 / w, y1 / h, x1 / w] for y0, x0, y1, x1 in rects],
                     np.float32).reshape(-1, 4)
    return image, boxes, np.array(labels, np.int32)


def bright_extent(image, channel):
    """(y0, x0, y1, x1) end-exclusive pixel extent of the bright pixels of a channel."""
    ys, xs = np.nonzero(np.asarray(image)[..., channel] > 200)
    if ys.size == 0:
        return None
    return (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)


def box_in_pixels(box, image):
    h, w = np.asarray(image).shape[:2]
    return tuple(np.asarray(box, np.float64) * [h, w, h, w])


def assert_boxes_cover_bright_pixels(image, boxes, labels):
    """Every kept box covers exactly the bright pixels of its rectangle's channel."""
    image, boxes, labels = np.asarray(image), np.asarray(boxes), np.asarray(labels)
    assert boxes.shape == (len(labels), 4)
    for box, label in zip(boxes, labels, strict=True):
        channel = LABELS.index(int(label))
        extent = bright_extent(image, channel)
        assert extent is not None, f"label {label} kept but its pixels are gone"
        np.testing.assert_allclose(box_in_pixels(box, image), extent, atol=1e-3)


def run(op, frame, **kwargs):
    image, boxes, labels = op(*frame, **kwargs)
    return image.numpy(), boxes.numpy(), labels.numpy()


# ----------------------------------------------------------------------------- geometry


def test_horizontal_flip_maps_boxes_and_pixels():
    frame = make_frame()
    image, boxes, labels = run(A.random_horizontal_flip, frame, seed=[1, 2], probability=1.0)
    ymin, xmin, ymax, xmax = frame[1].T
    np.testing.assert_allclose(boxes[:, 0], ymin)
    np.testing.assert_allclose(boxes[:, 2], ymax)
    np.testing.assert_allclose(boxes[:, 1], 1.0 - xmax)
    np.testing.assert_allclose(boxes[:, 3], 1.0 - xmin)
    np.testing.assert_array_equal(image, frame[0][:, ::-1].astype(np.float32))
    assert_boxes_cover_bright_pixels(image, boxes, labels)

    image, boxes, _ = run(A.random_horizontal_flip, frame, seed=[1, 2], probability=0.0)
    np.testing.assert_array_equal(boxes, frame[1])
    np.testing.assert_array_equal(image, frame[0])


def test_horizontal_flip_default_probability_flips_about_half():
    frame = make_frame()
    flips = [run(A.random_horizontal_flip, frame, seed=[s, 0])[1][0, 1] != frame[1][0, 1]
             for s in range(40)]
    assert 8 <= sum(flips) <= 32
    # without a seed each dataset element draws its own randomness
    ds = tf.data.Dataset.from_tensors(frame).repeat(40).map(A.random_horizontal_flip)
    unseeded = [float(b[0, 1]) != float(frame[1][0, 1]) for _, b, _ in ds]
    assert 8 <= sum(unseeded) <= 32


def test_random_crop_keeps_pixels_and_boxes_aligned():
    frame = make_frame(rects=RECTS[:1], labels=LABELS[:1])
    shapes = set()
    for s in range(12):
        image, boxes, labels = run(A.random_crop_image, frame, seed=[s, 7])
        shapes.add(image.shape)
        # min_object_covered=1.0: the only box is entirely inside the crop
        np.testing.assert_array_equal(labels, [1])
        assert_boxes_cover_bright_pixels(image, boxes, labels)
        assert image.shape[0] * image.shape[1] >= 0.1 * H * W - 1
    assert len(shapes) > 1, "the crop should vary with the seed"


def test_random_crop_clips_and_drops_by_overlap_thresh():
    frame = make_frame()
    rect_area = [(y1 - y0) * (x1 - x0) for y0, x0, y1, x1 in RECTS]
    dropped = clipped = 0
    for s in range(30):
        image, boxes, labels = run(
            A.random_crop_image, frame, seed=[s, 3], area_range=(0.3, 0.7)
        )
        assert len(boxes) == len(labels)
        assert np.all((boxes >= 0.0) & (boxes <= 1.0))
        assert_boxes_cover_bright_pixels(image, boxes, labels)
        for k, label in enumerate(LABELS):
            visible = int((image[..., k] > 200).sum()) / rect_area[k]
            if abs(visible - 0.3) < 1e-3:
                continue
            assert (label in labels) == (visible >= 0.3), (s, label, visible)
            dropped += label not in labels
            clipped += label in labels and visible < 1.0
    assert dropped > 0 and clipped > 0, "both the drop and the clip path should be exercised"


def test_random_crop_random_coef_one_keeps_input():
    frame = make_frame()
    image, boxes, labels = run(A.random_crop_image, frame, seed=[0, 0], random_coef=1.0)
    np.testing.assert_array_equal(image, frame[0])
    np.testing.assert_array_equal(boxes, frame[1])
    np.testing.assert_array_equal(labels, frame[2])


def test_random_crop_without_boxes_keeps_whole_image():
    frame = make_frame(rects=[], labels=[])
    image, boxes, labels = run(A.random_crop_image, frame, seed=[4, 4])
    assert image.shape == (H, W, 3)  # min_object_covered=1 of the whole-image box
    assert boxes.shape == (0, 4) and labels.shape == (0,)


def test_random_pad_image_moves_boxes_with_pixels_and_uses_mean_colour():
    frame = make_frame()
    mean = frame[0].reshape(-1, 3).mean(axis=0)
    sizes = set()
    for s in range(8):
        image, boxes, labels = run(A.random_pad_image, frame, seed=[s, 1])
        assert H <= image.shape[0] < 2 * H and W <= image.shape[1] < 2 * W
        sizes.add(image.shape)
        assert_boxes_cover_bright_pixels(image, boxes, labels)
        np.testing.assert_array_equal(labels, frame[2])
        # the image is pasted intact; everything else is the mean colour
        y0, x0 = (np.asarray(box_in_pixels(boxes[0], image)[:2]) - RECTS[0][:2]).round().astype(int)
        np.testing.assert_array_equal(image[y0:y0 + H, x0:x0 + W], frame[0])
        outside = np.ones(image.shape[:2], bool)
        outside[y0:y0 + H, x0:x0 + W] = False
        if outside.any():
            np.testing.assert_allclose(image[outside], np.broadcast_to(mean, image[outside].shape),
                                       rtol=1e-5)
    assert len(sizes) > 1


def test_random_pad_image_fixed_canvas_and_centre():
    frame = make_frame()
    image, boxes, labels = run(A.random_pad_image, frame, seed=[0, 0],
                               min_image_size=[40, 64], max_image_size=[40, 64],
                               pad_color=[0, 0, 0], center_pad=True)
    assert image.shape == (40, 64, 3)
    np.testing.assert_array_equal(image[4:36, 8:56], frame[0])
    assert image[:4].max() == 0 and image[:, :8].max() == 0
    assert_boxes_cover_bright_pixels(image, boxes, labels)


def test_random_zoom_out_preserves_aspect_ratio_and_alignment():
    frame = make_frame()
    scales = []
    for s in range(8):
        image, boxes, labels = run(A.random_zoom_out, frame, seed=[s, 5], probability=1.0,
                                   scale_range=(1.2, 2.5))
        hc, wc = image.shape[:2]
        scale_h, scale_w = hc / H, wc / W
        assert 1.2 - 1 / H <= scale_h <= 2.5 + 1 / H
        assert abs(scale_h - scale_w) <= 1.0 / H + 1e-6  # same scale up to pixel rounding
        scales.append(scale_h)
        assert_boxes_cover_bright_pixels(image, boxes, labels)
        # box shapes (aspect of each object) are preserved up to pixel rounding
        widths = (boxes[:, 3] - boxes[:, 1]) * wc
        heights = (boxes[:, 2] - boxes[:, 0]) * hc
        np.testing.assert_allclose(widths / heights,
                                   [(x1 - x0) / (y1 - y0) for y0, x0, y1, x1 in RECTS], atol=1e-4)
    assert max(scales) - min(scales) > 0.1
    image, boxes, _ = run(A.random_zoom_out, frame, seed=[0, 0], probability=0.0)
    assert image.shape == (H, W, 3)
    np.testing.assert_array_equal(boxes, frame[1])


def test_ssd_crop_pad_fixed_aspect_ratio_square_and_aligned():
    frame = make_frame()
    shapes = set()
    for s in range(20):
        image, boxes, labels = run(A.ssd_random_crop_pad_fixed_aspect_ratio, frame, seed=[s, 9])
        assert image.shape[0] == image.shape[1], image.shape  # aspect_ratio=1.0
        assert len(boxes) == len(labels)
        assert np.all((boxes >= 0.0) & (boxes <= 1.0))
        assert_boxes_cover_bright_pixels(image, boxes, labels)
        shapes.add(image.shape)
    assert len(shapes) > 3


def test_ssd_crop_pad_other_aspect_and_single_case():
    frame = make_frame()
    image, boxes, labels = run(
        A.ssd_random_crop_pad_fixed_aspect_ratio, frame, seed=[1, 1], aspect_ratio=2.0,
        min_object_covered=1.0, overlap_thresh=0.3, random_coef=1.0,
        aspect_ratio_range=(0.5, 2.0), area_range=(0.1, 1.0),
        min_padded_size_ratio=(1.0, 1.0), max_padded_size_ratio=(1.0, 1.0),
    )
    # random_coef=1 keeps the 32x48 frame; padding to w/h=2 with the least padding: 32x64
    assert image.shape == (32, 64, 3)
    np.testing.assert_array_equal(image[:, :W], frame[0])
    assert image[:, W:].max() == 0
    assert_boxes_cover_bright_pixels(image, boxes, labels)


def test_jitter_boxes_bounded_and_image_untouched():
    frame = make_frame()
    image, boxes, labels = run(A.random_jitter_boxes, frame, seed=[3, 3], ratio=0.05)
    np.testing.assert_array_equal(image, frame[0])
    np.testing.assert_array_equal(labels, frame[2])
    orig = frame[1]
    heights, widths = orig[:, 2] - orig[:, 0], orig[:, 3] - orig[:, 1]
    sizes = np.stack([heights, widths, heights, widths], axis=1)
    assert np.all(np.abs(boxes - orig) <= 0.05 * sizes + 1e-6)
    assert not np.allclose(boxes, orig)
    _, grown, _ = run(A.random_jitter_boxes, frame, seed=[3, 3], jitter_mode="expand")
    assert np.all(grown[:, :2] <= orig[:, :2] + 1e-7)
    assert np.all(grown[:, 2:] >= orig[:, 2:] - 1e-7)
    _, shrunk, _ = run(A.random_jitter_boxes, frame, seed=[3, 3], jitter_mode="shrink")
    assert np.all(shrunk[:, :2] >= orig[:, :2] - 1e-7)
    assert np.all(shrunk[:, 2:] <= orig[:, 2:] + 1e-7)


def test_boxes_outside_are_clipped_or_dropped_with_labels():
    image = np.zeros((H, W, 3), np.uint8)
    boxes = np.array([
        [0.9, 0.9, 1.2, 1.3],    # partly outside: clipped
        [0.2, 0.3, 0.4, 0.3],    # zero width: dropped
        [1.1, 0.1, 1.4, 0.3],    # entirely below the image: dropped
        [0.1, 0.1, 0.3, 0.3],    # inside: kept
    ], np.float32)
    labels = np.array([1, 2, 4, 2], np.int32)
    _, out_boxes, out_labels = run(A.random_jitter_boxes, (image, boxes, labels),
                                   seed=[0, 1], ratio=0.0)
    assert len(out_boxes) == len(out_labels) == 2
    np.testing.assert_array_equal(out_labels, [1, 2])
    np.testing.assert_allclose(out_boxes, [[0.9, 0.9, 1.0, 1.0], [0.1, 0.1, 0.3, 0.3]])


# ----------------------------------------------------------------------------- photometric

PHOTOMETRIC = {
    "random_rgb_to_gray": {"probability": 1.0},
    "random_adjust_brightness": {},
    "random_adjust_contrast": {},
    "random_adjust_saturation": {},
    "random_adjust_hue": {},
    "random_black_patches": {"probability": 1.0},
    "random_rain_blur": {"probability": 1.0, "density": 0.05},
}


def colourful_frame():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
    return image, make_frame()[1], make_frame()[2]


@pytest.mark.parametrize("name", sorted(PHOTOMETRIC))
def test_photometric_ops_keep_boxes_and_value_range(name):
    frame = colourful_frame()
    image, boxes, labels = run(A.AUGMENTATIONS[name], frame, seed=[5, 6], **PHOTOMETRIC[name])
    assert image.dtype == np.float32 and image.shape == (H, W, 3)
    assert image.min() >= 0.0 and image.max() <= 255.0
    np.testing.assert_array_equal(boxes, frame[1])
    np.testing.assert_array_equal(labels, frame[2])
    assert not np.allclose(image, frame[0]), f"{name} should change the image"


def test_brightness_shift_is_uniform_and_bounded():
    image = np.full((H, W, 3), 128, np.uint8)
    boxes, labels = np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)
    deltas = []
    for s in range(10):
        out, _, _ = run(A.random_adjust_brightness, (image, boxes, labels), seed=[s, 0])
        delta = out - 128.0
        assert np.ptp(delta) < 1e-3  # one delta for the whole image
        deltas.append(delta.flat[0])
    assert max(np.abs(deltas)) <= 0.2 * 255 + 1e-3
    assert min(deltas) < 0 < max(deltas)


def test_contrast_factor_within_default_range():
    image = np.zeros((H, W, 3), np.uint8)
    image[:, : W // 2] = 100
    image[:, W // 2:] = 140  # per-channel mean 120, deviation +-20
    boxes, labels = np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)
    for s in range(10):
        out, _, _ = run(A.random_adjust_contrast, (image, boxes, labels), seed=[s, 0])
        factor = (out[0, -1, 0] - out[0, 0, 0]) / 40.0
        assert 0.8 - 1e-4 <= factor <= 1.25 + 1e-4


def test_rgb_to_gray_gives_equal_channels_and_probability_zero_keeps():
    frame = colourful_frame()
    image, _, _ = run(A.random_rgb_to_gray, frame, seed=[0, 0], probability=1.0)
    np.testing.assert_allclose(image[..., 0], image[..., 1])
    np.testing.assert_allclose(image[..., 1], image[..., 2])
    image, _, _ = run(A.random_rgb_to_gray, frame, seed=[0, 0], probability=0.0)
    np.testing.assert_array_equal(image, frame[0])


def test_black_patches_are_black_squares_of_the_requested_size():
    image = np.full((40, 60, 3), 200, np.uint8)
    frame = (image, np.zeros((0, 4), np.float32), np.zeros((0,), np.int32))
    out, _, _ = run(A.random_black_patches, frame, seed=[2, 2], max_black_patches=1,
                    probability=1.0, size_to_image_ratio=0.1)
    ys, xs = np.nonzero(out[..., 0] == 0)
    assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (4, 4)  # 0.1 * min(40, 60)
    assert len(ys) == 16 and np.all(out[ys, xs] == 0)
    out, _, _ = run(A.random_black_patches, frame, seed=[2, 2], probability=0.0)
    np.testing.assert_array_equal(out, image)


def laplacian_variance(image):
    """Sharpness: variance of the 4-neighbour Laplacian of the grey image."""
    g = np.asarray(image, np.float32).mean(axis=2)
    return (4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]).var()


def test_rain_blur_lowers_sharpness():
    """Rain streaks add a few edges, but the blur must leave the frame clearly softer than it was."""
    rng = np.random.default_rng(0)
    image = np.full((96, 128, 3), 90.0)
    image[20:60, 10:50] = (200, 60, 60)
    image[40:90, 70:110] = (50, 180, 70)
    image = np.clip(image + rng.normal(0, 12, (96, 128, 1)), 0, 255).astype(np.uint8)  # road-like texture
    frame = (image, np.zeros((0, 4), np.float32), np.zeros((0,), np.int32))
    before = laplacian_variance(image)
    for s in range(4):
        out, _, _ = run(A.random_rain_blur, frame, seed=[s, 1], probability=1.0)
        assert laplacian_variance(out) < 0.5 * before, s
        assert np.abs(out - image).mean() > 1.0  # streaks and blur changed the image
    out, _, _ = run(A.random_rain_blur, frame, seed=[0, 1], probability=0.0)
    np.testing.assert_array_equal(out, image)


# ----------------------------------------------------------------------------- tf.data


def _frames():
    yield make_frame()
    yield make_frame(rects=RECTS[:1], labels=LABELS[:1])
    yield make_frame(rects=[], labels=[])


def _dataset():
    signature = (
        tf.TensorSpec([H, W, 3], tf.uint8),
        tf.TensorSpec([None, 4], tf.float32),
        tf.TensorSpec([None], tf.int32),
    )
    return tf.data.Dataset.from_generator(_frames, output_signature=signature)


@pytest.mark.parametrize("name", list(A.AUGMENTATIONS))
def test_every_op_runs_in_dataset_map_graph_mode(name):
    eager_flags = []
    params = {"probability": 1.0} if "probability" in A.op_parameters(name) else {}

    def fn(image, boxes, labels):
        eager_flags.append(tf.executing_eagerly())
        return A.AUGMENTATIONS[name](image, boxes, labels, **params)

    ds = _dataset().map(fn)
    assert eager_flags == [False]
    image_spec, boxes_spec, labels_spec = ds.element_spec
    assert image_spec.dtype == tf.float32 and image_spec.shape.rank == 3
    assert image_spec.shape[-1] == 3 and boxes_spec.shape[-1] == 4
    counts = []
    for image, boxes, labels in ds:
        assert boxes.shape[0] == labels.shape[0]
        assert image.dtype == tf.float32
        counts.append(int(labels.shape[0]))
    assert len(counts) == 3 and counts[-1] == 0


def test_built_augmenter_chains_all_ops_in_dataset_and_is_deterministic_with_seed():
    specs = [{"name": name, **({"probability": 1.0} if "probability" in A.op_parameters(name)
                               else {})} for name in A.AUGMENTATIONS]
    augment = A.build_augmenter(specs)
    ds = _dataset().enumerate().map(
        lambda i, f: augment(*f, seed=tf.stack([i, tf.constant(7, tf.int64)]))
    )
    first = [tuple(t.numpy() for t in el) for el in ds]
    second = [tuple(t.numpy() for t in el) for el in ds]
    for a, b in zip(first, second, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
        assert len(a[1]) == len(a[2])
    unseeded = list(_dataset().map(augment))
    assert all(len(b) == len(lab) for _, b, lab in unseeded)


def test_build_augmenter_applies_specs_in_order():
    frame = make_frame()
    augment = A.build_augmenter([{"name": "random_horizontal_flip", "probability": 1.0},
                                 {"name": "random_horizontal_flip", "probability": 1.0}])
    image, boxes, labels = (t.numpy() for t in augment(*frame, seed=[1, 1]))
    np.testing.assert_allclose(boxes, frame[1], atol=1e-7)
    np.testing.assert_array_equal(image, frame[0])
    assert image.dtype == np.float32
    identity = A.build_augmenter([])
    np.testing.assert_array_equal(identity(*frame)[0].numpy(), frame[0])


# ----------------------------------------------------------------------------- specs


SEED_EXPERIMENT_SPECS = [
    [{"name": "random_horizontal_flip"}, {"name": "random_crop_image"}],
    [{"name": "random_horizontal_flip"}, {"name": "random_rgb_to_gray", "probability": 0.2},
     {"name": "ssd_random_crop_pad_fixed_aspect_ratio"}, {"name": "random_jitter_boxes"},
     {"name": "random_adjust_saturation"}, {"name": "random_adjust_brightness"},
     {"name": "random_adjust_hue"}, {"name": "random_crop_image"}],
    [{"name": "random_horizontal_flip"}, {"name": "random_black_patches", "probability": 0.1},
     {"name": "random_rgb_to_gray", "probability": 0.1},
     {"name": "random_pad_image", "max_image_size": [64, 96]},
     {"name": "random_adjust_saturation"}, {"name": "random_adjust_brightness"},
     {"name": "random_adjust_contrast"}, {"name": "random_crop_image"}],
]


@pytest.mark.parametrize("specs", SEED_EXPERIMENT_SPECS)
def test_seed_experiment_specs_validate_and_run(specs):
    assert A.validate_augmentations(specs) is None
    image, boxes, labels = A.build_augmenter(specs)(*make_frame(), seed=[0, 1])
    assert boxes.shape[0] == labels.shape[0] and image.shape[-1] == 3


def test_unknown_name_and_parameter_errors():
    known = r"unknown augmentation 'foo' \(known: random_horizontal_flip, random_crop_image"
    with pytest.raises(ValueError, match=known):
        A.build_augmenter([{"name": "foo"}])
    with pytest.raises(ValueError, match=r"unknown augmentation 'foo'"):
        A.validate_augmentations([{"name": "random_horizontal_flip"}, {"name": "foo"}])
    with pytest.raises(ValueError, match=r"unknown parameter 'max_delta' for augmentation "
                                         r"'random_crop_image' \(known: min_object_covered"):
        A.validate_augmentations([{"name": "random_crop_image", "max_delta": 0.1}])
    with pytest.raises(ValueError, match="unknown parameter 'ratio'"):
        A.build_augmenter([{"name": "random_adjust_hue", "ratio": 0.1}])
    with pytest.raises(ValueError, match="probability must be in"):
        A.validate_augmentations([{"name": "random_rgb_to_gray", "probability": 2}])
    with pytest.raises(ValueError, match="no 'name'"):
        A.validate_augmentations([{"probability": 0.5}])
    with pytest.raises(ValueError, match="same number of cases"):
        A.validate_augmentations([{"name": "ssd_random_crop_pad_fixed_aspect_ratio",
                                   "min_object_covered": [0.1, 0.5],
                                   "overlap_thresh": [0.1, 0.3, 0.5]}])


def test_registry_defaults_match_object_detection_api():
    p = A.op_parameters
    assert p("random_crop_image") == {
        "min_object_covered": 1.0, "aspect_ratio_range": (0.75, 1.33),
        "area_range": (0.1, 1.0), "overlap_thresh": 0.3, "clip_boxes": True,
        "random_coef": 0.0,
    }
    assert p("random_black_patches") == {
        "max_black_patches": 10, "probability": 0.5, "size_to_image_ratio": 0.1}
    assert p("random_rgb_to_gray")["probability"] == 0.1
    assert p("random_adjust_brightness")["max_delta"] == 0.2
    assert (p("random_adjust_contrast")["min_delta"], p("random_adjust_contrast")["max_delta"]) \
        == (0.8, 1.25)
    assert (p("random_adjust_saturation")["min_delta"],
            p("random_adjust_saturation")["max_delta"]) == (0.8, 1.25)
    assert p("random_adjust_hue")["max_delta"] == 0.02
    assert p("random_jitter_boxes")["ratio"] == 0.05
    assert p("random_horizontal_flip")["probability"] == 0.5
    ssd = p("ssd_random_crop_pad_fixed_aspect_ratio")
    assert ssd["min_object_covered"] == (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
    assert ssd["random_coef"] == (0.15,) * 7 and ssd["aspect_ratio"] == 1.0


# ----------------------------------------------------------------------------- preview


def test_augmentation_preview_returns_figure_with_n_axes():
    matplotlib.use("Agg")
    frame = make_frame()
    augment = A.build_augmenter([{"name": "random_horizontal_flip"}])
    fig = A.augmentation_preview([frame[0]], [frame[1]], [frame[2]], augment, n=5, seed=3)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 5
    for ax in fig.axes:
        colours = [patch.get_edgecolor() for patch in ax.patches]
        assert colours == [to_rgba("red"), to_rgba("green")]  # label 1 vehicle, 2 pedestrian
        assert ax.images[0].get_array().shape == (H, W, 3)
