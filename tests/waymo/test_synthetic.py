"""Synthetic trips: determinism, labels, class shares, motion, streaming, files."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from urban_detection.waymo import frame_proto as fp
from urban_detection.waymo import synthetic as syn
from urban_detection.waymo.synthetic import shading, sprites


@pytest.fixture(scope="module")
def trips():
    """Six short FRONT-only trips at 480x320."""
    return [syn.render_trip(i, 60, width=480, height=320, seed=3, cameras=("FRONT",)) for i in range(6)]


def test_render_is_deterministic():
    a = syn.render_trip(1, 4, width=240, height=160, seed=5)
    b = syn.render_trip(1, 4, width=240, height=160, seed=5)
    c = syn.render_trip(1, 4, width=240, height=160, seed=6)
    assert a.name == b.name and a.stats == b.stats
    for fa, fb in zip(a.frames, b.frames):
        assert fa.timestamp_micros == fb.timestamp_micros
        for cam in fa.cameras:
            assert np.array_equal(fa.cameras[cam].image, fb.cameras[cam].image)
            assert np.array_equal(fa.cameras[cam].boxes, fb.cameras[cam].boxes)
            assert fa.cameras[cam].ids == fb.cameras[cam].ids
    assert a.name != c.name
    assert not np.array_equal(a.frames[0].image, c.frames[0].image)


def test_frames_cameras_timestamps_and_stats():
    trip = syn.render_trip(0, 5, width=240, height=160, seed=0)
    assert len(trip.frames) == 5
    assert trip.segment_name.startswith("segment-") and trip.segment_name.endswith("_with_camera_labels")
    assert np.diff([f.timestamp_micros for f in trip.frames]).tolist() == [100_000] * 4
    f = trip.frames[0]
    assert f.image.shape == (160, 240, 3) and f.image.dtype == np.uint8
    assert f.cameras["FRONT_LEFT"].image.shape == (80, 120, 3)
    assert trip.stats["time_of_day"] in syn.TIMES_OF_DAY and trip.stats["weather"] in syn.WEATHERS
    assert trip.stats["location"] in syn.LOCATIONS
    stats = [syn.trip_conditions(i, seed=0) for i in range(60)]
    assert {s["time_of_day"] for s in stats} == set(syn.TIMES_OF_DAY)
    assert {s["weather"] for s in stats} == {"sunny", "rain"}
    assert {s["location"] for s in stats} == set(syn.LOCATIONS)


def test_boxes_inside_image_and_pixel_aligned(trips):
    for trip in trips:
        for f in trip.frames:
            b = f.boxes
            if not len(b):
                continue
            x0, x1 = b[:, 0] - b[:, 2] / 2, b[:, 0] + b[:, 2] / 2
            y0, y1 = b[:, 1] - b[:, 3] / 2, b[:, 1] + b[:, 3] / 2
            assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 480).all() and (y1 <= 320).all()
            assert (b[:, 2] >= 3).all() and (b[:, 3] >= 3).all()
            assert np.allclose(x0, np.round(x0)) and np.allclose(y1, np.round(y1))
            assert set(np.unique(f.types)) <= {1, 2, 3, 4}


@pytest.mark.parametrize("kind", ["vehicle", "van", "front", "pedestrian", "walker", "cyclist", "sign"])
def test_sprites_fill_their_box(kind):
    """Boxes are the sprite extents: every sprite touches all four edges of its canvas."""
    sh = shading.Shader("Day", "sunny")
    person = {"skin": (200, 150, 120), "shirt": (200, 0, 0), "pants": (0, 0, 90), "hair": (20, 20, 20), "bag": None}
    for w, h in (
        ((9, 7), (40, 30), (200, 160)) if kind in ("vehicle", "van", "front") else ((5, 16), (30, 90), (60, 180))
    ):
        if kind in ("vehicle", "van", "front"):
            st = {
                "paint": (200, 30, 30),
                "variant": "van" if kind == "van" else "sedan",
                "facing": "front" if kind == "front" else "rear",
            }
            img = sprites.draw_vehicle(w, h, st, sh)
        elif kind == "pedestrian":
            img = sprites.draw_pedestrian(w, h, dict(person, view="front", facing="toward", direction=1), sh, 0.7)
        elif kind == "walker":
            img = sprites.draw_pedestrian(w * 2, h, dict(person, view="side", direction=-1), sh, 1.2)
        elif kind == "cyclist":
            st = dict(person, bike=(0, 200, 0), helmet=(250, 250, 0), direction=1)
            img = sprites.draw_cyclist(h, h, st, sh, 0.3)
        else:
            img = sprites.draw_sign(h, h, {"shape": "octagon"}, sh)
        assert img.getchannel("A").getbbox() == (0, 0) + img.size, (kind, w, h)


def test_class_shares_sizes_and_a_cyclist_in_every_trip(trips):
    counts = Counter()
    sizes = Counter()
    for trip in trips:
        # the first frame (kept by any ingest stride) has a cyclist
        assert fp.LabelType.CYCLIST in trip.frames[0].types.tolist(), trip.name
        for f in trip.frames:
            counts.update(f.types.tolist())
            for (_, _, ln, wd), t in zip(f.boxes, f.types):
                if t != fp.LabelType.SIGN:
                    area = (ln * 640 / 480) * (wd * 640 / 320)  # as resized to 640x640
                    sizes["small" if area < 32**2 else "medium" if area < 96**2 else "large"] += 1
    objects = counts[1] + counts[2] + counts[4]
    assert objects > 1500
    assert 0.6 <= counts[1] / objects <= 0.8, counts
    assert 0.15 <= counts[2] / objects <= 0.35, counts
    assert 0.015 <= counts[4] / objects <= 0.09, counts
    assert counts[3] > 0  # some signs, which ingest drops
    assert sizes["small"] > 0.05 * objects and sizes["large"] > 0.05 * objects
    assert sizes["medium"] + sizes["large"] > 0.5 * objects


def test_objects_move_smoothly_and_enter_and_leave(trips):
    steps, appeared, left = [], 0, 0
    for trip in trips:
        for a, b in zip(trip.frames, trip.frames[1:]):
            pa = {i: box for i, box in zip(a.ids, a.boxes)}
            pb = {i: box for i, box in zip(b.ids, b.boxes)}
            appeared += len(set(pb) - set(pa))
            left += len(set(pa) - set(pb))
            for i in set(pa) & set(pb):
                if pa[i][2] < 150 and pb[i][2] < 150:  # skip objects clipped by the frame edge growing
                    steps.append(np.abs(pa[i][:2] - pb[i][:2]).max())
    steps = np.asarray(steps)
    assert len(steps) > 1000
    assert np.median(steps) <= 3.0 and np.percentile(steps, 99) <= 25.0
    assert appeared > 20 and left > 20


def test_night_is_darker_than_day_and_rain_is_blurred():
    day = syn.render_trip(
        0, 1, 320, 214, seed=0, cameras=("FRONT",), conditions={"time_of_day": "Day", "weather": "sunny"}
    )
    night = syn.render_trip(
        0, 1, 320, 214, seed=0, cameras=("FRONT",), conditions={"time_of_day": "Night", "weather": "sunny"}
    )
    rain = syn.render_trip(
        0, 1, 320, 214, seed=0, cameras=("FRONT",), conditions={"time_of_day": "Day", "weather": "rain"}
    )
    assert night.frames[0].image.mean() < 0.6 * day.frames[0].image.mean()

    def sharpness(img):
        """Variance of the grey image's Laplacian over its variance."""
        g = img.astype(np.float32).mean(axis=2)
        laplacian = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
        return laplacian.var() / g.var()

    # compare the lower half (road; rain streaks add edges in the sky). Rain also dims and desaturates
    # the scene, so sharpness is high-frequency energy relative to the contrast: unblurred rain scores
    # about 1.2x the sunny frame, the blurred one about 0.4x.
    assert sharpness(rain.frames[0].image[120:, :]) < 0.6 * sharpness(day.frames[0].image[120:, :])
    assert day.stats["time_of_day"] == "Day" and night.stats["time_of_day"] == "Night"


def test_iter_trip_streams_full_size_frames_like_render_trip():
    """Frames come one at a time at 960x640, equal to render_trip's. (Render speed is a figure
    of benchmarks/ingest_throughput.py, not an assertion: it depends on the machine's load.)"""
    conditions = {"time_of_day": "Day", "weather": "sunny"}
    trip, frames = syn.iter_trip(2, 12, width=960, height=640, seed=0, cameras=("FRONT",), conditions=conditions)
    assert iter(frames) is frames  # a lazy iterator, not a list
    streamed = list(frames)
    whole = syn.render_trip(2, 12, width=960, height=640, seed=0, cameras=("FRONT",), conditions=conditions)
    assert trip.name == whole.name and len(streamed) == len(whole.frames) == 12
    for (frame, images), ref in zip(streamed, whole.frames):
        assert frame.image.shape == (640, 960, 3) and images["FRONT"].size == (960, 640)
        assert np.array_equal(frame.image, ref.image) and np.array_equal(frame.boxes, ref.boxes)


def test_written_segments_are_deterministic_waymo_files(tmp_path):
    a = syn.write_synthetic_trips(tmp_path / "a", 2, 3, width=192, height=128, seed=4)
    b = syn.write_synthetic_trips(tmp_path / "b", 2, 3, width=192, height=128, seed=4)
    c = syn.write_synthetic_trips(tmp_path / "c", 1, 3, width=192, height=128, seed=5)
    assert [p.name for p in a] == [p.name for p in b]
    assert all(pa.read_bytes() == pb.read_bytes() for pa, pb in zip(a, b))
    assert c[0].name not in {p.name for p in a}
    for p in a:
        assert p.name.startswith("segment-") and p.name.endswith("_with_camera_labels.tfrecord")
    import tensorflow as tf

    records = [r.numpy() for r in tf.data.TFRecordDataset(str(a[0]))]
    assert len(records) == 3
    frames = [fp.parse_frame(r) for r in records]
    trip = syn.render_trip(0, 3, width=192, height=128, seed=4)
    for frame, ref in zip(frames, trip.frames):
        assert frame.context.name == trip.name
        assert frame.timestamp_micros == ref.timestamp_micros
        assert frame.context.stats.time_of_day == trip.stats["time_of_day"]
        assert {i.name for i in frame.images} == {1, 2}
        labels = fp.find_labels(frame, "FRONT")
        got = np.asarray([[lab.box.center_x, lab.box.center_y, lab.box.length, lab.box.width] for lab in labels])
        assert np.array_equal(got.reshape(-1, 4), ref.boxes)
        assert [lab.type for lab in labels] == ref.types.tolist()
        assert len(fp.find_labels(frame, "FRONT_LEFT")) == len(ref.cameras["FRONT_LEFT"].ids)
    counts = {c.type: c.count for c in frames[0].context.stats.camera_object_counts}
    assert counts.get(4, 0) >= 1


def test_the_front_camera_is_the_same_whichever_other_cameras_are_drawn():
    """synthetic.cameras: [FRONT] (the default run's) leaves out FRONT_LEFT without changing a FRONT frame."""
    both = syn.render_trip(3, 6, width=192, height=128, seed=2, cameras=("FRONT", "FRONT_LEFT"))
    front = syn.render_trip(3, 6, width=192, height=128, seed=2, cameras=("FRONT",))
    assert both.name == front.name and both.stats == front.stats
    for a, b in zip(both.frames, front.frames):
        assert set(b.cameras) == {"FRONT"} and a.timestamp_micros == b.timestamp_micros
        assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes) and a.ids == b.ids
