"""The project removes or overwrites only files it wrote (issue: a user's segment beside generated ones).

A foreign file (a real-looking Waymo segment under a user's name) goes into every folder
the project writes to; the default pipeline then runs with changed settings and a
training is interrupted and resumed; every foreign file must come out byte-identical.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kedro_project import TINY_PARAMS, run_kedro

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent

# Folders the project writes whole (a SavedModel, the model's weights + metadata) are swapped in
# as a unit; a foreign file inside them stops the run instead (see the last test).
SWAPPED = ("model", "export", "saved_model", "variables", "assets")


def tiny(**changes) -> dict:
    params = json.loads(json.dumps(TINY_PARAMS))
    params["train"]["experiments"] = ["fast_cpu"]
    for key, value in changes.items():
        node = params
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return params


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plant_foreign_files(data: Path, segment: bytes) -> dict[Path, str]:
    planted = {}
    for folder in sorted(p for p in data.rglob("*") if p.is_dir()):
        if any(part in SWAPPED for part in folder.relative_to(data).parts):
            continue
        path = folder / "segment-1111111111111111111_0_000_20_000_with_camera_labels.tfrecord.user"
        path.write_bytes(segment)
        planted[path] = sha(path)
    return planted


def interrupted_training(project: Path, params: dict, checkpoint_root: Path) -> None:
    """Start training in a child process and stop it with Ctrl-C (SIGINT) after its first checkpoint."""
    # Python's own Ctrl-C handler: a child of a background job starts with SIGINT ignored (POSIX), which
    # Python keeps, and the training would then run to its end instead of being interrupted
    script = (f"import json, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
              f"sys.path.insert(0, {str(TESTS)!r}); from kedro_project import run_kedro; "
              f"run_kedro(__import__('pathlib').Path({str(project)!r}), ['train'], json.loads(sys.argv[1]))")
    before = set(checkpoint_root.glob("*/ckpt-2.index"))  # earlier models' checkpoints
    log_path = project.parent / "interrupted_training.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(params)], cwd=project,
                                stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    reached = False
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            reached = reached or bool(set(checkpoint_root.glob("*/ckpt-2.index")) - before)
            if reached:
                # again until it stops: a Ctrl-C landing in a finalizer ("Exception ignored in ...") is lost
                proc.send_signal(signal.SIGINT)
            time.sleep(0.1 if reached else 0.2)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert reached, (
        f"training never reached its first checkpoint (exit {proc.returncode}):\n{log_path.read_text()[-4000:]}")


def test_foreign_files_survive_changed_settings_and_an_interrupted_training(tiny_project: Path, tmp_path):
    from urban_detection.waymo.synthetic import write_synthetic_trips

    run_kedro(tiny_project, ["__default__"], tiny())
    segment = write_synthetic_trips(tmp_path / "real", n_trips=1, frames_per_trip=4, width=160, height=96,
                                    seed=11, cameras=("FRONT",))[0].read_bytes()
    data = tiny_project / "data"
    planted = plant_foreign_files(data, segment)
    assert len(planted) >= 12  # raw, trips, primary, configs, checkpoints, reports, videos, ...
    # a user's real segment in the synthetic folder, under a segment name: it is ingested too, never deleted
    user_segment = data / "01_raw/synthetic/segment-9999999999999999999_0_000_20_000_with_camera_labels.tfrecord"
    user_segment.write_bytes(segment)
    planted[user_segment] = sha(user_segment)

    changed = tiny(**{"synthetic.trips": 7, "train.settings.model.image_size": 96})
    run_kedro(tiny_project, ["__default__"], changed)
    trips = json.loads((data / "08_reporting/ingest_report.json").read_text())
    assert trips["trips"] == 8  # 7 regenerated synthetic trips and the user's

    longer = tiny(**{"synthetic.trips": 7, "train.settings.model.image_size": 96, "train.settings.train.steps": 8})
    interrupted_training(tiny_project, longer, data / "06_models/fast_cpu/checkpoints")
    run_kedro(tiny_project, ["train"], longer)  # resumes
    from urban_detection.detection.trained import load_trained

    model = load_trained(data / "06_models/fast_cpu/model")
    assert model.summary["last_step"] == 8 and model.summary["start_step"] >= 2

    changed_files = [str(p) for p, digest in planted.items() if not p.is_file() or sha(p) != digest]
    assert changed_files == []


def test_an_output_on_an_input_stops_before_anything_is_written(tiny_project: Path):
    data = tiny_project / "data"
    trips = data / "02_intermediate/trips"
    trips.mkdir(parents=True, exist_ok=True)
    (trips / "mine.tfrecord").write_bytes(b"user data")
    with pytest.raises(Exception, match="Refusing to write outputs onto inputs"):
        run_kedro(tiny_project, ["ingest"], tiny(**{"ingest.source_dir": str(trips)}))
    assert sorted(p.name for p in trips.iterdir()) == ["mine.tfrecord"]
    assert (trips / "mine.tfrecord").read_bytes() == b"user data"


def test_a_foreign_file_inside_a_model_folder_stops_the_run_and_stays(tiny_project: Path):
    run_kedro(tiny_project, ["train"], tiny())
    note = tiny_project / "data/06_models/fast_cpu/model/notes.txt"
    note.write_text("my notes")
    with pytest.raises(Exception, match="did not write"):
        run_kedro(tiny_project, ["train"], tiny(**{"train.settings.model.image_size": 96}))
    assert note.read_text() == "my notes"


def test_a_foreign_file_at_a_catalog_output_path_stops_the_run_and_stays(tiny_project: Path):
    run_kedro(tiny_project, ["ingest", "split"], tiny())
    data = tiny_project / "data"
    report = data / "08_reporting/split_report.json"  # the project's own output, replaced by a user's file
    report.write_text('{"mine": true}')
    counts = data / "08_reporting/eda/class_counts.csv"  # an output path the project has not written yet
    counts.parent.mkdir(parents=True, exist_ok=True)
    counts.write_text("my,counts\n")
    with pytest.raises(Exception, match=r"split_report\.json: refusing to overwrite it.*'split_report'"):
        run_kedro(tiny_project, ["split"], tiny())
    with pytest.raises(Exception, match=r"class_counts\.csv: refusing to overwrite it.*'eda_class_counts'"):
        run_kedro(tiny_project, ["eda"], tiny())
    assert report.read_text() == '{"mine": true}' and counts.read_text() == "my,counts\n"
    report.unlink()  # moved away by the user: the run goes on and the new report is the project's
    run_kedro(tiny_project, ["split"], tiny())
    assert json.loads(report.read_text())["splits"]
