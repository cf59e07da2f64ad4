"""``kedro run --pipeline=predict`` through the real command line, on media the test makes: a folder of
images (with a corrupt image and a text file among them), an MP4, a truncated MP4 and a raw Waymo
segment; and its refusal of a stale export and of a missing source. Also the edge pipeline (TFLite
float16 and int8 beside the SavedModel) on the same trained project."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from readme_commands import run_cli, tiny_local_parameters

from kedro_project import make_project

pytestmark = pytest.mark.slow
MODEL = "fast_cpu"
OUT = Path("data/07_model_output") / MODEL / "predict"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny project with a trained and exported fast_cpu model, and the media to predict on."""
    from urban_detection.detection.video import write_video
    from urban_detection.waymo.synthetic import write_synthetic_trips

    root = tmp_path_factory.mktemp("predict")
    project = make_project(root / "project")
    (project / "conf/local/parameters.yml").write_text(yaml.safe_dump(tiny_local_parameters()))
    rng = np.random.default_rng(0)
    photos = project / "media/photos"
    photos.mkdir(parents=True)
    for i, shape in enumerate([(96, 160, 3), (120, 90, 3), (96, 160, 3)]):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(photos / f"street_{i}.{'png' if i else 'jpg'}")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (photos / "notes.txt").write_text("camera notes")
    frames = [rng.integers(0, 256, (96, 160, 3), dtype=np.uint8) for _ in range(12)]
    write_video(frames, project / "media/drive.mp4", fps=5)
    data = (project / "media/drive.mp4").read_bytes()
    (project / "media/cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    write_synthetic_trips(project / "media/segments", n_trips=1, frames_per_trip=6, width=160, height=96, seed=5,
                          cameras=("FRONT",))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        run_cli(project, ["run", "--pipelines=train,evaluate"])
        yield project


def predict(project: Path, params: str) -> dict:
    run_cli(project, ["run", "--pipeline=predict", "--params", params])
    return json.loads((project / "data/08_reporting" / MODEL / "predict_summary.json").read_text())


def outputs(project: Path) -> tuple[list[str], list, pd.DataFrame]:
    annotated = sorted(p.name for p in (project / OUT / "annotated").iterdir() if not p.name.startswith("."))
    coco = json.loads((project / OUT / "detections_coco.json").read_text())
    return annotated, coco, pd.read_csv(project / OUT / "detections.csv")


def test_a_folder_of_images_with_a_corrupt_image_and_a_text_file(project: Path):
    summary = predict(project, f"predict.source=media/photos,predict.experiment={MODEL},predict.score_threshold=0.0")
    assert summary["kind"] == "images" and summary["frames"] == 3
    assert summary["skipped"] == {"unreadable_image": 1, "not_an_image": 1} and summary["skipped_total"] == 2
    assert sorted(Path(i["item"]).name for i in summary["skipped_items"]) == ["broken.jpg", "notes.txt"]
    annotated, coco, table = outputs(project)
    assert annotated == ["street_0.jpg", "street_1.png", "street_2.png"]
    assert Image.open(project / OUT / "annotated/street_1.png").size == (90, 120)  # the frame's own size
    assert summary["detections"] == len(coco) == len(table) > 0  # threshold 0: every kept box
    assert sum(summary["detections_per_class"].values()) == summary["detections"]
    assert set(table["frame"]) <= {"street_0.jpg", "street_1.png", "street_2.png"}
    assert {c["image_id"] for c in coco} <= {1, 2, 3} and {c["category_id"] for c in coco} <= {1, 2, 4}
    first = table.iloc[0]
    match = [c for c in coco if c["image_id"] == first["image_id"] and abs(c["score"] - first["score"]) < 1e-4]
    assert match and abs(match[0]["bbox"][0] - first["xmin"]) < 0.01
    assert summary["fingerprint"] and summary["frames_per_sec"] > 0


def test_a_video_and_a_truncated_video(project: Path):
    import imageio_ffmpeg

    summary = predict(project, "predict.source=media/drive.mp4")  # the first of train.experiments
    assert summary["kind"] == "video" and summary["frames"] == 12 and summary["skipped_total"] == 0
    annotated, _, _ = outputs(project)
    assert annotated == ["drive.mp4"]  # the previous run's images were the project's: replaced
    count, _ = imageio_ffmpeg.count_frames_and_secs(str(project / OUT / "annotated/drive.mp4"))
    assert count == 12
    cut = predict(project, "predict.source=media/cut.mp4")
    assert 0 < cut["frames"] < 12 and cut["skipped"] == {"truncated_video": 1}
    assert "cut.mp4" in cut["skipped_items"][0]["item"]


def test_a_raw_waymo_segment_every_frame(project: Path):
    (segment,) = sorted((project / "media/segments").glob("*.tfrecord"))
    summary = predict(project, f"predict.source=media/segments/{segment.name}")
    assert summary["kind"] == "waymo_v1" and summary["frames"] == 6
    annotated, _, table = outputs(project)
    assert annotated == [f"{segment.stem}.mp4"]
    assert all(name.startswith(f"{segment.name}#") for name in table["frame"])


def test_a_stale_export_and_a_missing_source_are_refused(project: Path):
    from click.testing import CliRunner
    from kedro.framework.cli.cli import KedroCLI

    def failing(params: str) -> str:
        result = CliRunner().invoke(KedroCLI(project_path=project), ["run", "--pipeline=predict", "--params", params])
        while mlflow.active_run() is not None:
            mlflow.end_run("FAILED")
        assert result.exit_code != 0, f"kedro run --params {shlex.quote(params)} should fail"
        return f"{result.output}{result.exception}"

    stale = failing("predict.source=media/photos,train.settings.train.steps=5")
    assert re.search(r"the exported fast_cpu model \(\w{12}, step 4\) does not match the current run: the config "
                     r"changed \(.*train\.steps: 4 -> 5", stale), stale
    missing = failing("predict.source=media/nowhere")
    assert "media/nowhere does not exist" in missing
    (project / OUT / "annotated").mkdir(parents=True, exist_ok=True)
    (project / OUT / "annotated" / "my_notes.txt").write_text("mine")  # a user's file among the outputs
    kept = failing("predict.source=media/photos")
    assert "did not write" in kept and (project / OUT / "annotated/my_notes.txt").read_text() == "mine"


def test_the_edge_pipeline_writes_tflite_models_scored_beside_the_savedmodel(project: Path):
    run_cli(project, ["run", "--pipeline=edge", "--params", "edge.calibration_frames=8,edge.latency_repeats=3"])
    report = json.loads((project / "data/08_reporting" / MODEL / "edge_report.json").read_text())
    rows = report["formats"]
    assert set(rows) == {"saved_model", "float16", "int8"} and report["calibration_frames"] == 8
    assert rows["int8"]["size_mb"] < rows["float16"]["size_mb"] < rows["saved_model"]["size_mb"]
    assert len({row["frames"] for row in rows.values()}) == 1 and rows["saved_model"]["frames"] > 0
    assert rows["saved_model"]["mAP50_drop"] == 0.0 and rows["int8"]["max_drop"] == 0.03
    assert all(row["latency_ms"] > 0 and 0.0 <= row["test_mAP50"] <= 1.0 for row in rows.values())
    assert sorted(p.name for p in (project / "data/06_models" / MODEL / "tflite").glob("*.tflite")) == [
        "float16.tflite", "int8.tflite"]
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    run = client.get_run(json.loads((project / "data/06_models" / MODEL / "export/export_info.json").read_text())["run_id"])
    assert "edge/int8/test_mAP50" in run.data.metrics
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "edge")) == [
        "edge/edge_report.json", "edge/float16.tflite", "edge/int8.tflite"]
