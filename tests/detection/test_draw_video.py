"""Drawing boxes, writing videos, IoU tracking and the flicker measure."""

import imageio.v2 as imageio
import numpy as np
from drawing_helpers import outline_mask
import pytest
from matplotlib.figure import Figure

from urban_detection.detection.draw import (
    CLASS_COLOURS,
    draw_detections,
    frames_grid_figure,
    side_by_side_figure,
)
from urban_detection.detection.video import (
    IoUTracker,
    box_iou,
    persistence_rate,
    track_sequence,
    write_video,
)


def grey(h=100, w=100):
    return np.full((h, w, 3), 128, np.uint8)


# --------------------------------------------------------------------------- drawing


@pytest.mark.parametrize("label, name", [(1, "vehicle"), (2, "pedestrian"), (4, "cyclist")])
def test_box_border_has_class_colour(label, name):
    image = grey()
    out = draw_detections(image, [[0.2, 0.3, 0.6, 0.8]], [label], show_labels=False, line_width=2)
    colour = CLASS_COLOURS[name]
    # Pixels 20..59 (rows) x 30..79 (columns); the outline is 2 px inside the box.
    for y, x in [(20, 50), (21, 50), (59, 50), (40, 30), (40, 31), (40, 79)]:
        assert tuple(out[y, x]) == colour, (y, x)
    assert tuple(out[40, 55]) == (128, 128, 128)  # inside untouched
    assert tuple(out[10, 10]) == (128, 128, 128)  # outside untouched
    assert np.all(image == 128)  # input not modified
    assert out.dtype == np.uint8 and out.shape == image.shape


def test_colours_and_threshold_and_caption():
    assert CLASS_COLOURS == {"vehicle": (255, 0, 0), "pedestrian": (0, 255, 0), "cyclist": (0, 0, 255)}
    image = grey(120, 160)
    boxes = [[0.5, 0.1, 0.9, 0.4], [0.5, 0.6, 0.9, 0.9]]
    out = draw_detections(image, boxes, [1, 2], scores=[0.9, 0.2], score_threshold=0.5)
    assert tuple(out[108 - 1, 30]) == CLASS_COLOURS["vehicle"]  # bottom edge of box 1
    assert tuple(out[107, 120]) == (128, 128, 128)  # box 2 below threshold: not drawn
    # The caption band sits just above box 1, in the class colour with text pixels.
    band = out[45:60, 16:64].reshape(-1, 3)
    red = np.all(band == CLASS_COLOURS["vehicle"], axis=1).mean()
    assert red > 0.3
    assert np.any(band.min(axis=1) > 200)  # (anti-aliased) white text on red
    no_caption = draw_detections(image, boxes, [1, 2], [0.9, 0.2], 0.5, show_labels=False)
    assert not np.array_equal(out, no_caption)


def test_draw_handles_empty_and_accepts_lists():
    out = draw_detections(grey().tolist(), np.zeros((0, 4)), [])
    assert out.dtype == np.uint8 and np.all(out == 128)


def test_frames_grid_figure_has_tiles_and_legend():
    images = [grey() for _ in range(7)]
    boxes = [[[0.1, 0.1, 0.5, 0.5]]] * 7
    labels = [[1]] * 7
    fig = frames_grid_figure(images, boxes, labels, titles=[f"f{i}" for i in range(7)], ncols=4)
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 8  # 2 rows x 4 columns
    assert sum(1 for ax in axes if ax.images) == 7
    assert axes[6].get_title() == "f6"
    shown = axes[0].images[0].get_array()
    assert tuple(np.asarray(shown)[10, 30]) == CLASS_COLOURS["vehicle"]
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["vehicle", "pedestrian", "cyclist"]
    assert len(frames_grid_figure([], [], []).axes) == 1


def test_side_by_side_figure():
    fig = side_by_side_figure(
        grey(), [[0.1, 0.1, 0.5, 0.5]], [2],
        [[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [2, 1], [0.9, 0.1], score_threshold=0.5,
    )
    left, right = fig.axes
    assert "ground truth (1" in left.get_title()
    assert "(1 boxes)" in right.get_title()
    gt_img = np.asarray(left.images[0].get_array())
    pred_img = np.asarray(right.images[0].get_array())
    assert tuple(gt_img[30, 10]) == CLASS_COLOURS["pedestrian"]
    assert tuple(pred_img[89, 75]) == (128, 128, 128)  # low-score vehicle hidden


# --------------------------------------------------------------------------- video


def moving_frames(n, h, w):
    frames = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, : (i + 1) * w // n] = (200, 50, 50)
        frames.append(f)
    return frames


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_write_video_round_trip(tmp_path, suffix):
    path = tmp_path / "sub" / f"clip{suffix}"
    n = write_video((f for f in moving_frames(6, 48, 64)), path, fps=5)
    assert n == 6 and path.stat().st_size > 0
    frames = [f for f in imageio.get_reader(path)]  # list() trips on len() == inf
    assert len(frames) == 6
    assert frames[0].shape[:2] == (48, 64)
    # Content survives encoding: the last frame is mostly red.
    last = np.asarray(frames[-1])[..., :3].astype(int)
    assert last[..., 0].mean() > 150 and last[..., 1].mean() < 100


def test_detections_in_an_h264_video_keep_their_class_colours(tmp_path):
    """Boxes drawn as render does (default width, captions) and encoded to H.264 decode with their
    class colour on the outline: red vehicle, green pedestrian, blue cyclist, each nearest its own."""
    import imageio_ffmpeg

    h, w = 120, 192
    rng = np.random.default_rng(0)
    background = np.clip(110 + rng.integers(-20, 20, (h, w, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    boxes = [[0.3, 0.05, 0.8, 0.3], [0.25, 0.4, 0.85, 0.6], [0.35, 0.7, 0.75, 0.95]]
    labels = {1: "vehicle", 2: "pedestrian", 4: "cyclist"}
    drawn = [draw_detections(background, boxes, list(labels), scores=[0.9, 0.8, 0.7]) for _ in range(4)]
    write_video(drawn, tmp_path / "v.mp4", fps=5)
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "v.mp4"))
    size = next(reader)["size"]
    decoded = [np.frombuffer(f, np.uint8).reshape(size[1], size[0], 3).astype(int) for f in reader]
    assert len(decoded) == 4
    palette = {name: np.array(c) for name, c in CLASS_COLOURS.items()}
    measured = {}
    for box, name in zip(boxes, labels.values()):
        channel = int(np.argmax(palette[name]))  # the class colour's one saturated channel
        for frame in decoded:
            outline = frame[outline_mask(box, h, w)]
            colour = np.median(outline, axis=0)
            # H.264 with 4:2:0 chroma halves the colour resolution: a 2 px line keeps its hue and
            # most of its saturation (green, which carries most of the luma, loses the most)
            assert colour[channel] >= 190 and np.delete(colour, channel).max() <= 90, (name, colour)
            nearest = min(palette, key=lambda n: np.abs(palette[n] - colour).sum())
            assert nearest == name, (name, colour)
            assert (outline.argmax(axis=1) == channel).mean() >= 0.9, name
        measured[name] = colour
    # the colour differs per class
    names = list(measured)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(measured[a] - measured[b]).max() >= 150, (a, b, measured)


def test_write_video_odd_size_is_padded_to_even(tmp_path):
    path = tmp_path / "odd.mp4"
    write_video(moving_frames(3, 33, 45), path, fps=10)
    frames = [f for f in imageio.get_reader(path)]  # list() trips on len() == inf
    assert len(frames) == 3 and frames[0].shape[:2] == (34, 46)


def test_write_video_rejects_no_frames_and_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="extension"):
        write_video(moving_frames(1, 8, 8), tmp_path / "x.avi")


# --------------------------------------------------------------------------- tracking


def test_box_iou():
    iou = box_iou([[0, 0, 1, 1], [0, 0, 0.5, 0.5]], [[0, 0, 0.5, 1], [2, 2, 3, 3]])
    np.testing.assert_allclose(iou, [[0.5, 0.0], [0.5, 0.0]])
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def test_tracker_keeps_ids_for_moving_boxes():
    tracker = IoUTracker(iou_threshold=0.3, smoothing=0.5)
    ids_a, ids_b = [], []
    for t in range(10):
        x = 0.05 + 0.03 * t
        boxes = [[0.2, x, 0.4, x + 0.15], [0.6, 0.8 - x, 0.8, 0.95 - x]]  # two cars, opposite ways
        b, labels, scores, ids = tracker.update(boxes, [1, 1], [0.9, 0.8])
        assert len(ids) == 2
        by_row = {round(float(bb[0]), 1): i for bb, i in zip(b, ids)}
        ids_a.append(by_row[0.2])
        ids_b.append(by_row[0.6])
        assert b.dtype == np.float32 and ids.dtype == np.int32
    assert set(ids_a) == {ids_a[0]} and set(ids_b) == {ids_b[0]} and ids_a[0] != ids_b[0]


def test_tracker_smooths_and_separates_classes():
    tracker = IoUTracker(smoothing=0.5, max_age=0)
    tracker.update([[0.2, 0.2, 0.4, 0.4]], [1], [0.9])
    b, _, _, _ = tracker.update([[0.2, 0.24, 0.4, 0.44]], [1], [0.9])
    np.testing.assert_allclose(b[0], [0.2, 0.22, 0.4, 0.42], atol=1e-6)  # halfway
    # Same place but another class: a new track, and the vehicle track expires.
    _, labels, _, ids = tracker.update([[0.2, 0.24, 0.4, 0.44]], [2], [0.9])
    assert list(labels) == [2] and list(ids) == [2]
    raw = IoUTracker(smoothing=0.0)
    raw.update([[0.2, 0.2, 0.4, 0.4]], [1])
    b, _, _, _ = raw.update([[0.2, 0.24, 0.4, 0.44]], [1])
    np.testing.assert_allclose(b[0], [0.2, 0.24, 0.4, 0.44], atol=1e-6)


def test_tracker_fills_short_gaps_only():
    tracker = IoUTracker(max_age=2)
    box = [[0.3, 0.3, 0.5, 0.5]]
    seen = []
    for present in [1, 0, 0, 0, 1]:
        _, _, _, ids = tracker.update(box if present else np.zeros((0, 4)), [1] if present else [])
        seen.append(list(ids))
    assert seen[:3] == [[1], [1], [1]]  # coasts through two missed frames
    assert seen[3] == []  # third miss: gone
    assert seen[4] == [2]  # a new track afterwards


def test_tracker_min_hits_delays_new_tracks():
    tracker = IoUTracker(min_hits=2)
    box = [[0.3, 0.3, 0.5, 0.5]]
    assert len(tracker.update(box, [1])[3]) == 0
    assert list(tracker.update(box, [1])[3]) == [1]


def test_persistence_rate_raised_by_tracker_on_flicker():
    rng = np.random.default_rng(1)
    frames = []
    for t in range(12):
        present = t % 3 != 2  # the pedestrian blinks out every third frame
        jitter = rng.normal(0, 0.005, 4)
        boxes = [np.array([0.1, 0.1, 0.3, 0.2]) + jitter] if present else []
        frames.append({
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "labels": np.array([2] * len(boxes)),
            "scores": np.array([0.9] * len(boxes)),
        })
    raw = persistence_rate(frames)
    tracked = track_sequence(frames, max_age=2)
    smooth = persistence_rate(tracked)
    assert raw == pytest.approx(4 / 8)  # frames 0..10 hold 8 boxes; 4 survive to t+1
    assert smooth == pytest.approx(1.0)
    assert all(list(f["track_ids"]) == [1] for f in tracked)


def test_persistence_rate_counts_class_and_threshold():
    a = {"boxes": [[0.1, 0.1, 0.3, 0.3]], "labels": [1], "scores": [0.9]}
    other_class = {"boxes": [[0.1, 0.1, 0.3, 0.3]], "labels": [2], "scores": [0.9]}
    weak = {"boxes": [[0.1, 0.1, 0.3, 0.3]], "labels": [1], "scores": [0.1]}
    assert persistence_rate([a, a]) == 1.0
    assert persistence_rate([a, other_class]) == 0.0
    assert persistence_rate([a, weak], score_threshold=0.5) == 0.0
    assert np.isnan(persistence_rate([a]))
