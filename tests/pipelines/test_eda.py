"""EDA pipeline: node functions on a tiny synthetic project, the Kedro run with MLflow, real-sample totals."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kedro_project import REAL_SAMPLE, make_project, run_kedro
from urban_detection.waymo.example import DetectionExample, encode_example
EDA_PARAMS = {
    "seed": 5,
    "sample_frames": 200,
    "original_study": {"frames": 1000, "vehicle": 173418, "pedestrian": 49672, "cyclist": 1284},
    "train_resolution": 320,
    "coco_area_thresholds": [32, 96],
    "gallery": {"frames": 10, "ncols": 5, "tile_px": 200},
    "brightness": {"frames_per_trip": 2, "jpeg_ratio": 1},
}
# The tiny data set: 6 trips x 4 frames of 96x128 JPEGs. Objects are flat-coloured
# rectangles on a road-grey (day) or near-black (night) background; their boxes are exact.
TRIPS = [f"trip{t:02d}" for t in range(6)]
SPLIT_OF = {"trip00": "train", "trip01": "train", "trip02": "train", "trip03": "train",
            "trip04": "val", "trip05": "test"}
TIME_OF = {t: ("Night" if i % 3 == 2 else "Day") for i, t in enumerate(TRIPS)}
WEATHER_OF = {t: ("rain" if i % 2 else "sunny") for i, t in enumerate(TRIPS)}
H, W, FRAMES = 96, 128, 4
FILL = {1: (250, 220, 40), 2: (230, 230, 230), 4: (40, 220, 230)}  # vehicle, pedestrian, cyclist


def frame_objects(t: int, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Known boxes (normalised) and labels of frame f of trip t: non-overlapping slots."""
    labels = [1] * (1 + (t + f) % 3) + [2] * ((t * f) % 3) + ([4] if (t + f) % 4 == 0 else [])
    boxes = []
    for k, label in enumerate(labels):
        x0 = 4 + 20 * k
        w, h = {1: (18, 12), 2: (8, 20), 4: (10, 16)}[label]
        y0 = 70 - h - (k % 2) * 30
        boxes.append([y0 / H, x0 / W, (y0 + h) / H, (x0 + w) / W])
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int32)


def frame_jpeg(t: int, f: int, boxes: np.ndarray, labels: np.ndarray) -> bytes:
    night = TIME_OF[TRIPS[t]] == "Night"
    img = np.full((H, W, 3), 20 if night else 120, np.uint8)
    img[: H // 3] = (10, 10, 30) if night else (150, 190, 235)  # sky
    for (y0, x0, y1, x1), label in zip(boxes, labels):
        img[round(y0 * H): round(y1 * H), round(x0 * W): round(x1 * W)] = FILL[int(label)]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def write_tiny_project(root: Path) -> Path:
    """A project copy (tests/kedro_project.py) holding a tiny ingested and split data set."""
    make_project(root)
    trips_dir = root / "data" / "02_intermediate" / "trips"
    trips_dir.mkdir(parents=True)
    rows = []
    import tensorflow as tf

    for t, trip in enumerate(TRIPS):
        rel = f"{trip}.tfrecord"  # the trips dataset stores names relative to its folder
        with tf.io.TFRecordWriter(str(trips_dir / rel)) as writer:
            for f in range(FRAMES):
                boxes, labels = frame_objects(t, f)
                jpeg = frame_jpeg(t, f, boxes, labels)
                frame = f * 10
                writer.write(encode_example(DetectionExample(
                    image=jpeg, height=H, width=W, filename=f"{trip}_{frame}.jpg",
                    source_id=f"{trip}/{frame}", boxes=boxes, labels=labels)))
                n = {c: int(np.sum(labels == i)) for c, i in (("vehicle", 1), ("pedestrian", 2), ("cyclist", 4))}
                rows.append(dict(trip=trip, frame=frame, timestamp_micros=1_000_000 * t + 100_000 * frame,
                                 time_of_day=TIME_OF[trip], weather=WEATHER_OF[trip], location="location_sf",
                                 n_vehicle=n["vehicle"], n_pedestrian=n["pedestrian"], n_cyclist=n["cyclist"],
                                 n_objects=sum(n.values()), image_hash=f"{trip}-{frame}", path=rel))
    pd.DataFrame(rows).to_parquet(trips_dir / "frame_index.parquet", index=False)
    pd.DataFrame([dict(trip=t, split=SPLIT_OF[t], time_of_day=TIME_OF[t], weather=WEATHER_OF[t]) for t in TRIPS]
                 ).to_parquet(root / "data" / "03_primary" / "split_manifest.parquet", index=False)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_project(tmp_path_factory.mktemp("eda") / "project")


@pytest.fixture(scope="module")
def frames(tiny):
    from urban_detection.datasets import TripsDataset
    from urban_detection.pipelines.eda.nodes import frames_with_splits

    trips = TripsDataset(str(tiny / "data/02_intermediate/trips")).load()
    return frames_with_splits(trips, pd.read_parquet(tiny / "data/03_primary/split_manifest.parquet"))


def expected_totals(split=None):
    tot = dict.fromkeys(("vehicle", "pedestrian", "cyclist"), 0)
    for t, trip in enumerate(TRIPS):
        if split and SPLIT_OF[trip] != split:
            continue
        for f in range(FRAMES):
            _, labels = frame_objects(t, f)
            for c, i in (("vehicle", 1), ("pedestrian", 2), ("cyclist", 4)):
                tot[c] += int(np.sum(labels == i))
    return tot


# ---------------------------------------------------------------- nodes


def test_class_counts_per_split_match_the_known_objects(frames):
    from urban_detection.pipelines.eda.nodes import class_counts

    cc = class_counts(frames)
    assert list(cc.columns) == ["split", "class", "count", "share"]
    assert list(cc["split"].unique()) == ["train", "val", "test"]
    assert list(cc["class"][:3]) == ["vehicle", "pedestrian", "cyclist"]
    for split in ("train", "val", "test"):
        part = cc[cc.split == split].set_index("class")
        assert part["count"].to_dict() == expected_totals(split)
        assert part["share"].sum() == pytest.approx(1.0, abs=1e-5)
    assert cc.groupby("class")["count"].sum().to_dict() == expected_totals()


def test_condition_and_trip_tables(frames):
    from urban_detection.pipelines.eda.nodes import class_counts_by_condition, class_counts_per_trip

    cond = class_counts_by_condition(frames)
    night = cond[(cond.condition == "time_of_day") & (cond.value == "Night") & (cond.split == "all")].iloc[0]
    night_trips = [t for t in TRIPS if TIME_OF[t] == "Night"]
    assert night.trips == len(night_trips) and night.frames == len(night_trips) * FRAMES
    exp = sum(len(frame_objects(TRIPS.index(t), f)[1]) for t in night_trips for f in range(FRAMES))
    assert night.objects == exp and night.objects_per_frame == pytest.approx(exp / night.frames, abs=1e-3)
    # per condition, the "all" rows add up to everything and the split rows to the "all" rows
    for condition in ("time_of_day", "weather"):
        c = cond[cond.condition == condition]
        assert c[c.split == "all"][["vehicle", "pedestrian", "cyclist"]].sum().to_dict() == expected_totals()
        assert c[c.split != "all"]["frames"].sum() == len(frames)

    per_trip = class_counts_per_trip(frames)
    assert list(per_trip.trip) == ["trip00", "trip01", "trip02", "trip03", "trip04", "trip05"]
    assert list(per_trip.split) == ["train"] * 4 + ["val", "test"]
    assert (per_trip.frames == FRAMES).all()
    assert per_trip[["vehicle", "pedestrian", "cyclist"]].sum().to_dict() == expected_totals()


def test_sampled_counts_draw_with_replacement_and_sit_beside_the_original_study(frames):
    from urban_detection.pipelines.eda.nodes import sampled_class_counts

    table = sampled_class_counts(frames, EDA_PARAMS)
    sample = table[table.source == "sample"].set_index("class")
    study = table[table.source == "original_study"].set_index("class")
    assert (sample.frames == 200).all()  # 200 draws from 24 frames: only possible with replacement
    per_frame_mean = frames[["n_vehicle", "n_pedestrian", "n_cyclist"]].mean().to_numpy()
    assert sample["count"].sum() > 0
    assert sample["per_frame"].to_numpy() == pytest.approx(per_frame_mean, rel=0.5)
    assert study.loc["vehicle", "count"] == 173418 and study.loc["cyclist", "count"] == 1284
    assert study["share"].sum() == pytest.approx(1.0, abs=1e-5)
    pd.testing.assert_frame_equal(table, sampled_class_counts(frames, EDA_PARAMS))  # fixed seed
    other = sampled_class_counts(frames, {**EDA_PARAMS, "seed": 6})
    assert not table["count"].equals(other["count"])


def test_boxes_are_read_without_images_and_sized_at_training_resolution(frames):
    from urban_detection.pipelines.eda.nodes import box_size_table, read_boxes

    boxes = read_boxes(frames)
    assert boxes["class"].value_counts().to_dict() == {k: v for k, v in expected_totals().items() if v}
    t, f = 1, 2
    b, lab = frame_objects(t, f)
    mine = boxes[(boxes.trip == "trip01") & (boxes.frame == 20)]
    np.testing.assert_allclose(mine[["ymin", "xmin", "ymax", "xmax"]].to_numpy(), b, atol=1e-6)
    assert list(mine.label) == list(lab) and set(mine.split) == {"train"}

    sizes = box_size_table(boxes, EDA_PARAMS)
    veh = sizes[(sizes.split == "all") & (sizes["class"] == "vehicle")].iloc[0]
    # vehicle 18x12 px of 128x96 -> 45x40 px at 320x320: area 1800 -> medium
    assert veh.median_width_px == pytest.approx(18 / 128 * 320) and veh.median_height_px == pytest.approx(40)
    assert (veh.small, veh.medium, veh.large) == (0, veh.boxes, 0)
    ped = sizes[(sizes.split == "all") & (sizes["class"] == "pedestrian")].iloc[0]
    # pedestrian 8x20 px -> 20x66.7 at 320 (area 1333 -> medium); at 128 it is 8x26.7 (213 -> small)
    assert ped.medium == ped.boxes and ped.median_aspect == pytest.approx((8 / 128) / (20 / 96), rel=1e-4)
    small = box_size_table(boxes, {**EDA_PARAMS, "train_resolution": 128})
    assert small[(small.split == "all") & (small["class"] == "pedestrian")].iloc[0].small_share == 1.0
    # per-split rows add up to "all"
    assert sizes[sizes.split != "all"].boxes.sum() == sizes[sizes.split == "all"].boxes.sum() == len(boxes)


def test_brightness_separates_night_from_day_trips(frames):
    from urban_detection.pipelines.eda.nodes import trip_brightness

    table = trip_brightness(frames, EDA_PARAMS)
    assert len(table) == len(TRIPS) and (table.frames_sampled == 2).all()
    assert table.mean_brightness.is_monotonic_increasing
    night = table[table.time_of_day == "Night"].mean_brightness
    day = table[table.time_of_day == "Day"].mean_brightness
    assert night.max() < 40 < 100 < day.min()


def test_figures_are_matplotlib_figures_with_the_class_colours(frames):
    from matplotlib.figure import Figure

    from urban_detection.pipelines.eda import nodes

    fig = nodes.gallery_figure(frames, EDA_PARAMS)
    assert isinstance(fig, Figure)
    tiles = [ax for ax in fig.axes if ax.images]
    assert len(tiles) == 10
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["vehicle", "pedestrian", "cyclist"]
    colours = [tuple(np.round(h.get_facecolor()[:3], 3)) for h in legend.legend_handles]
    assert colours == [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    # a drawn tile has red box pixels where the vehicle's box edge is
    title = tiles[0].get_title()
    trip, frame = title.split(" #")[0], int(title.split(" #")[1].split(" ")[0])
    boxes, labels = frame_objects(TRIPS.index(trip), frame // 10)
    arr = tiles[0].images[0].get_array()
    y0, x0 = round(boxes[0][0] * H), round(boxes[0][1] * W)
    assert tuple(arr[y0 + 3, x0]) == (255, 0, 0)  # left edge of the first (vehicle) box

    cc = nodes.class_counts(frames)
    for make in (lambda: nodes.class_counts_figure(cc, nodes.sampled_class_counts(frames, EDA_PARAMS)),
                 lambda: nodes.conditions_figure(nodes.class_counts_by_condition(frames)),
                 lambda: nodes.objects_per_frame_figure(frames)):
        assert isinstance(make(), Figure)


# ---------------------------------------------------------------- the Kedro run


@pytest.mark.slow
def test_eda_pipeline_run_writes_reports_and_mlflow_artifacts(tmp_path, monkeypatch):
    import mlflow

    root = write_tiny_project(tmp_path / "project")
    monkeypatch.chdir(root)  # catalog paths, frame paths and mlflow.db are relative to the project
    run_kedro(root, ["eda"], {"eda": {"gallery": {"tile_px": 200}, "sample_frames": 300}})

    out = root / "data" / "08_reporting" / "eda"
    expected = {"class_counts.csv", "class_counts_by_condition.csv", "class_counts_per_trip.csv",
                "sampled_class_counts.csv", "box_sizes.csv", "trip_brightness.csv",
                "class_counts.png", "class_counts_by_condition.png", "objects_per_frame.png",
                "box_sizes.png", "aspect_ratios.png", "trip_brightness.png", "gallery.png"}
    assert {p.name for p in out.iterdir()} == expected | {".urban_detection_written.jsonl"}  # recorded as the project's
    from urban_detection import files

    assert all(files.is_owned(out / name) for name in expected)
    cc = pd.read_csv(out / "class_counts.csv")
    assert cc.groupby("class")["count"].sum().to_dict() == expected_totals()
    sampled = pd.read_csv(out / "sampled_class_counts.csv")
    assert (sampled[sampled.source == "sample"].frames == 300).all()
    for png in (p for p in out.iterdir() if p.suffix == ".png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out / "gallery.png") as im:
        assert im.width >= 5 * 200

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("urban_detection")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    logged = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "eda")}
    assert logged == expected
    assert run.data.params.get("eda.sample_frames") == "300"


@pytest.mark.real_data
@pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason=f"{REAL_SAMPLE} is absent")
def test_real_sample_class_totals(tmp_path):
    """The 32 processed trips (640 frames) of the shared sample: totals over splits."""
    from urban_detection.pipelines.eda.nodes import class_counts, frames_with_splits
    from urban_detection.pipelines.ingest.nodes import ingest_trips
    from urban_detection.pipelines.split.nodes import assign_splits

    params = {"source_dir": str(REAL_SAMPLE), "image_size": [640, 640],
              "camera": "FRONT", "frame_stride": 10, "workers": 2, "force": False}
    store = tmp_path / "trips"
    store.mkdir()
    trips, _ = ingest_trips({"generated": False}, store, params)
    manifest = assign_splits(trips, {"ratios": {"train": 0.75, "val": 0.15, "test": 0.10}, "seed": 42,
                                     "stratify_by": ["time_of_day", "weather"], "min_trips_to_stratify": 10})
    cc = class_counts(frames_with_splits(trips, manifest))
    assert len(trips) == 640
    assert cc.groupby("class")["count"].sum().to_dict() == {"vehicle": 12349, "pedestrian": 4337, "cyclist": 87}


def test_read_boxes_table_keeps_good_records_and_reports_bad_ones(tmp_path, caplog):
    import tensorflow as tf

    from urban_detection.waymo.read import read_boxes_table, read_frames

    boxes, labels = frame_objects(0, 0)
    good = encode_example(DetectionExample(image=frame_jpeg(0, 0, boxes, labels), height=H, width=W,
                                           filename="a.jpg", source_id="tripA/0", boxes=boxes, labels=labels))
    bad_lists = tf.train.Example.FromString(good)
    bad_lists.features.feature["image/object/bbox/xmin"].float_list.value.append(0.5)
    mixed = tmp_path / "tripA.tfrecord"
    with tf.io.TFRecordWriter(str(mixed)) as w:
        w.write(good)
        w.write(b"\x01\x02 not a tf.Example")
        w.write(bad_lists.SerializeToString())
        w.write(good.replace(b"tripA/0", b"tripA/9"))
    truncated = tmp_path / "tripB.tfrecord"
    with tf.io.TFRecordWriter(str(truncated)) as w:
        w.write(good.replace(b"tripA/0", b"tripB/0"))
        w.write(good.replace(b"tripA/0", b"tripB/1"))
    truncated.write_bytes(truncated.read_bytes()[:-50])

    report: dict = {}
    with caplog.at_level("WARNING"):
        table = read_boxes_table([mixed, truncated, tmp_path / "missing.tfrecord"], report=report)
    assert sorted(set(zip(table.trip, table.frame))) == [("tripA", 0), ("tripA", 9), ("tripB", 0)]
    assert list(table[table.frame == 9]["record"].unique()) == [3]
    assert len(table) == 3 * len(labels)
    assert report["skipped"] == {"unparsable_record": 1, "inconsistent_boxes": 1, "unreadable_file": 2}
    assert "tripA.tfrecord record 1" in caplog.text and "tripA.tfrecord record 2" in caplog.text
    assert "missing.tfrecord" in caplog.text

    frames = read_frames([(str(mixed), "tripA/9"), (str(mixed), "tripA/404")], report=report)
    assert [f.source_id for f in frames] == ["tripA/9"] and frames[0].image.shape == (H, W, 3)
    np.testing.assert_allclose(frames[0].boxes, boxes)
    assert report["skipped"]["frame_not_found"] == 1 and report["skipped"]["unparsable_record"] == 2
