"""The minimal Frame schema: field numbers, round trip, and a cross-check with the official package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from urban_detection.waymo import frame_proto as fp

# Field numbers as in waymo_open_dataset/dataset.proto and label.proto (v1).
EXPECTED_FIELDS = {
    fp.Frame: {
        "context": 1,
        "timestamp_micros": 2,
        "pose": 3,
        "images": 4,
        "laser_labels": 6,
        "camera_labels": 8,
        "projected_lidar_labels": 9,
    },
    fp.Context: {"name": 1, "camera_calibrations": 2, "stats": 4},
    fp.Context.Stats: {
        "laser_object_counts": 1,
        "time_of_day": 2,
        "location": 3,
        "weather": 4,
        "camera_object_counts": 5,
    },
    fp.Context.Stats.ObjectCount: {"type": 1, "count": 2},
    fp.CameraImage: {
        "name": 1,
        "image": 2,
        "pose": 3,
        "pose_timestamp": 5,
        "shutter": 6,
        "camera_trigger_time": 7,
        "camera_readout_done_time": 8,
    },
    fp.CameraLabels: {"name": 1, "labels": 2},
    fp.CameraCalibration: {"name": 1, "intrinsic": 2, "extrinsic": 3, "width": 4, "height": 5},
    fp.Label: {
        "box": 1,
        "metadata": 2,
        "type": 3,
        "id": 4,
        "detection_difficulty_level": 5,
        "tracking_difficulty_level": 6,
        "num_lidar_points_in_box": 7,
        "most_visible_camera_name": 11,
        "camera_synced_box": 12,
        "num_top_lidar_points_in_box": 13,
    },
    fp.Label.Box: {"center_x": 1, "center_y": 2, "center_z": 3, "width": 4, "length": 5, "height": 6, "heading": 7},
}


def test_field_numbers_and_types_match_the_official_protos():
    for cls, expected in EXPECTED_FIELDS.items():
        assert fp.field_numbers(cls) == expected, cls.DESCRIPTOR.full_name
    f = fp.Frame.DESCRIPTOR.fields_by_name
    assert f["timestamp_micros"].type == FieldDescriptor.TYPE_INT64
    repeated = getattr(f["images"], "is_repeated", None)
    assert repeated if repeated is not None else f["images"].label == FieldDescriptor.LABEL_REPEATED
    box = fp.Label.Box.DESCRIPTOR.fields_by_name
    assert all(box[k].type == FieldDescriptor.TYPE_DOUBLE for k in ("center_x", "center_y", "length", "width"))
    assert fp.CameraImage.DESCRIPTOR.fields_by_name["image"].type == FieldDescriptor.TYPE_BYTES
    assert fp.Frame.DESCRIPTOR.full_name == "waymo.open_dataset.Frame"


def test_enums():
    names = {
        v.name: v.number for v in fp.DESCRIPTOR_POOL.FindEnumTypeByName("waymo.open_dataset.CameraName.Name").values
    }
    assert {k: names[k] for k in ("UNKNOWN", "FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT")} == {
        "UNKNOWN": 0,
        "FRONT": 1,
        "FRONT_LEFT": 2,
        "FRONT_RIGHT": 3,
        "SIDE_LEFT": 4,
        "SIDE_RIGHT": 5,
    }
    types = {v.name: v.number for v in fp.Label.DESCRIPTOR.enum_types_by_name["Type"].values}
    assert types == {"TYPE_UNKNOWN": 0, "TYPE_VEHICLE": 1, "TYPE_PEDESTRIAN": 2, "TYPE_SIGN": 3, "TYPE_CYCLIST": 4}
    assert [
        int(t)
        for t in (
            fp.LabelType.UNKNOWN,
            fp.LabelType.VEHICLE,
            fp.LabelType.PEDESTRIAN,
            fp.LabelType.SIGN,
            fp.LabelType.CYCLIST,
        )
    ] == [0, 1, 2, 3, 4]
    assert fp.camera_id("front_left") == 2 and fp.camera_id(1) == 1
    with pytest.raises(ValueError):
        fp.camera_id("ROOF")


def test_round_trip_and_helpers(wf):
    data = wf.frame(labels=[(50.5, 40.25, 40.0, 20.0, 1), (10, 10, 4, 8, 4)], cameras=("FRONT", "FRONT_LEFT"))
    frame = fp.parse_frame(data)
    assert frame.SerializeToString() == data
    assert frame.timestamp_micros == 1_000_000 and frame.context.stats.weather == "sunny"
    assert fp.find_image(frame, "FRONT")[:2] == b"\xff\xd8"
    assert fp.find_image(frame, "SIDE_LEFT") is None
    labels = fp.find_labels(frame, "FRONT")
    assert [(lab.box.center_x, lab.box.center_y, lab.box.length, lab.box.width, lab.type) for lab in labels] == [
        (50.5, 40.25, 40.0, 20.0, 1),
        (10, 10, 4, 8, 4),
    ]
    assert fp.find_labels(frame, "FRONT_LEFT") is None


def test_unknown_fields_survive(wf):
    """A real segment carries lidar data this schema does not declare: it must be kept."""
    frame = fp.parse_frame(wf.frame())
    data = frame.SerializeToString() + b"\x2a\x03\x0a\x01\x01"  # field 5 (lasers), length-delimited
    again = fp.parse_frame(data)
    assert again.SerializeToString() == data


# ------------------------------------------------ cross-check with the official package
OFFICIAL = "waymo-open-dataset-tf-2-12-0==1.6.7"
CACHE = Path(tempfile.gettempdir()) / "urban_detection_waymo_official_1.6.7"

_CHILD = r"""
import json, sys
from waymo_open_dataset import dataset_pb2, label_pb2
mine_path, out_path = sys.argv[1], sys.argv[2]
f = dataset_pb2.Frame.FromString(open(mine_path, "rb").read())
lab = [l for cl in f.camera_labels if cl.name == dataset_pb2.CameraName.FRONT for l in cl.labels]
img = [i for i in f.images if i.name == dataset_pb2.CameraName.FRONT][0]
summary = {
    "labels": [[l.box.center_x, l.box.center_y, l.box.length, l.box.width, l.type, l.id] for l in lab],
    "camera_names": [i.name for i in f.images],
    "image_len": len(img.image), "image_head": img.image[:4].hex(),
    "stats": [f.context.stats.time_of_day, f.context.stats.weather, f.context.stats.location],
    "counts": [[c.type, c.count] for c in f.context.stats.camera_object_counts],
    "timestamp": f.timestamp_micros, "name": f.context.name,
    "sign_type": label_pb2.Label.TYPE_SIGN, "cyclist_type": label_pb2.Label.TYPE_CYCLIST,
}
o = dataset_pb2.Frame(timestamp_micros=123456789)
o.context.name = "official"
o.context.stats.time_of_day, o.context.stats.weather, o.context.stats.location = "Night", "rain", "location_phx"
o.images.add(name=dataset_pb2.CameraName.FRONT_LEFT, image=b"\xff\xd8left")
o.images.add(name=dataset_pb2.CameraName.FRONT, image=b"\xff\xd8front")
cl = o.camera_labels.add(name=dataset_pb2.CameraName.FRONT)
l = cl.labels.add(type=label_pb2.Label.TYPE_PEDESTRIAN, id="p1")
l.box.center_x, l.box.center_y, l.box.length, l.box.width = 101.5, 202.25, 11.0, 33.0
l.num_lidar_points_in_box = 7
o.laser_labels.add(type=label_pb2.Label.TYPE_VEHICLE, id="lidar-only")
open(out_path + ".bin", "wb").write(o.SerializeToString())
json.dump(summary, open(out_path, "w"))
"""


def _official_package() -> Path:
    if (CACHE / "waymo_open_dataset" / "dataset_pb2.py").is_file():
        return CACHE
    tmp = Path(tempfile.mkdtemp(prefix="wod_official_", dir=tempfile.gettempdir()))
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
                str(tmp),
                OFFICIAL,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"could not install {OFFICIAL}: {e}")
    if proc.returncode != 0 or not (tmp / "waymo_open_dataset" / "dataset_pb2.py").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"could not install {OFFICIAL}: {proc.stderr.strip()[-500:]}")
    try:
        tmp.rename(CACHE)
    except OSError:  # another run cached it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return CACHE


def test_cross_check_with_official_waymo_package(tmp_path, wf):
    pkg = _official_package()
    labels = [
        (320.5, 200.25, 64.0, 48.0, 1),
        (100.0, 300.0, 20.0, 60.0, 2),
        (500.0, 250.0, 70.0, 66.0, 4),
        (600.0, 100.0, 10.0, 10.0, 3),
    ]
    frame = fp.parse_frame(
        wf.frame(
            labels=labels,
            width=64,
            height=48,
            cameras=("FRONT_LEFT", "FRONT"),
            timestamp=42,
            stats=("Dawn", "rain", "location_other"),
            name="mine",
        )
    )
    frame.context.stats.camera_object_counts.add(type=4, count=1)
    mine = tmp_path / "mine.bin"
    mine.write_bytes(frame.SerializeToString())
    out = tmp_path / "official.json"
    env = dict(os.environ, PYTHONPATH=str(pkg))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(mine), str(out)], capture_output=True, text=True, env=env, timeout=300
    )
    if proc.returncode != 0:
        pytest.skip(f"official package does not import with this protobuf: {proc.stderr.strip()[-500:]}")
    got = json.loads(out.read_text())
    # official parses ours
    assert got["labels"] == [[cx, cy, ln, wd, t, f"obj{k}"] for k, (cx, cy, ln, wd, t) in enumerate(labels)]
    assert got["camera_names"] == [2, 1]
    front = fp.find_image(frame, "FRONT")
    assert got["image_len"] == len(front) and got["image_head"] == front[:4].hex()
    assert got["stats"] == ["Dawn", "rain", "location_other"]
    assert got["counts"] == [[4, 1]] and got["timestamp"] == 42 and got["name"] == "mine"
    assert got["sign_type"] == fp.LabelType.SIGN and got["cyclist_type"] == fp.LabelType.CYCLIST
    # ours parses official
    theirs = fp.parse_frame((tmp_path / "official.json.bin").read_bytes())
    assert theirs.timestamp_micros == 123456789 and theirs.context.name == "official"
    assert [theirs.context.stats.time_of_day, theirs.context.stats.weather, theirs.context.stats.location] == [
        "Night",
        "rain",
        "location_phx",
    ]
    assert fp.find_image(theirs, "FRONT") == b"\xff\xd8front" and fp.find_image(theirs, "FRONT_LEFT") == b"\xff\xd8left"
    (lab,) = fp.find_labels(theirs, "FRONT")
    assert (lab.box.center_x, lab.box.center_y, lab.box.length, lab.box.width) == (101.5, 202.25, 11.0, 33.0)
    assert lab.type == fp.LabelType.PEDESTRIAN and lab.id == "p1" and lab.num_lidar_points_in_box == 7
    assert theirs.laser_labels[0].id == "lidar-only"
