"""The synthetic-trips node: its generation settings (``synthetic.cameras`` among them) decide when the
segments are written again."""
from __future__ import annotations

from urban_detection.pipelines.ingest.nodes import write_synthetic
from urban_detection.waymo import frame_proto as fp
from urban_detection.waymo.records import iter_records

PARAMS = {"trips": 2, "frames_per_trip": 2, "width": 96, "height": 64, "seed": 1, "workers": 1}


def cameras_in(path) -> set[int]:
    return {int(image.name) for _, data in iter_records(path) for image in fp.parse_frame(data).images}


def test_the_cameras_setting_is_part_of_the_generation_stamp(tmp_path):
    out = tmp_path / "synthetic"
    first = write_synthetic(out, {**PARAMS, "cameras": ["FRONT"]}, str(out))
    assert first["generated"] and first["params"]["cameras"] == ["FRONT"] and len(first["files"]) == 2
    assert cameras_in(out / first["files"][0]) == {1}  # FRONT only
    again = write_synthetic(out, {**PARAMS, "cameras": ["FRONT"]}, str(out))
    assert not again["generated"] and again["files"] == first["files"]
    both = write_synthetic(out, {**PARAMS, "cameras": ["FRONT", "FRONT_LEFT"]}, str(out))
    assert both["generated"] and both["files"] == first["files"]  # the same trips, written again
    assert cameras_in(out / both["files"][0]) == {1, 2}
    default = write_synthetic(out, PARAMS, str(out))  # no setting: the library's two cameras
    assert not default["generated"] and default["params"]["cameras"] == ["FRONT", "FRONT_LEFT"]
