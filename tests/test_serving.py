"""The served model (``urban_detection.serving``): logged into the experiment's child run, loaded
with ``mlflow.pyfunc``, served by a real ``mlflow models serve`` process on 127.0.0.1, and loadable
without this project. A small detector with random weights (score threshold 1e-8, so every image
gets detections); a throwaway SQLite MLflow store in a temp folder. The model is logged with a
default ``min_score`` (in a kedro run: ``render.score_threshold``) of the median score on the
first image, so the default keeps some detections and drops others."""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from PIL import Image, ImageDraw
from server_helpers import free_port, group_members, http, stop_server

from urban_detection import serving
from urban_detection.datasets import ExportDataset
from urban_detection.detection.model import build_detector, split_detections
from urban_detection.detection.trained import TrainedDetector
from urban_detection.detection.export import ExportedDetector
from urban_detection.tracking import experiment_run

ARCH, SIZE, NAME = "retinanet_resnet18_fpn_small", 64, "tiny"
SERVER_START_DEADLINE = 150  # s: the server imports TensorFlow and loads the model on a busy 2-core machine


def picture(seed: int, height: int, width: int) -> np.ndarray:
    """A grey street-ish frame with a red 'car' and a green 'pedestrian'."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(80, 140, (height, width, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    draw.rectangle([width * 0.1, height * 0.5, width * 0.5, height * 0.8], fill=(210, 30, 30))
    draw.rectangle([width * 0.7, height * 0.3, width * 0.8, height * 0.9], fill=(30, 200, 30))
    return np.asarray(img)


def encoded(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def reference(detector: ExportedDetector, data: bytes, min_score: float = 0.0) -> dict:
    """What the exported detector finds on the PIL-decoded image, as per-image records."""
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    out = detector(image[None])
    rec = split_detections(out["detection_boxes"], out["detection_scores"], out["detection_classes"],
                           out["num_detections"])[0]
    keep = rec["scores"] >= min_score
    return {k: v[keep] for k, v in rec.items()}


def assert_same(row, ref: dict) -> None:
    assert row["num_detections"] == len(ref["scores"]) == len(row["scores"]) == len(row["labels"]) > 0
    np.testing.assert_allclose(np.asarray(row["boxes"], np.float32).reshape(-1, 4), ref["boxes"], atol=1e-5)
    np.testing.assert_allclose(np.asarray(row["scores"], np.float32), ref["scores"], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(row["labels"]), ref["labels"])
    assert set(row["labels"]) <= {1, 2, 4}


@pytest.fixture(scope="module")
def logged(tmp_path_factory, images):
    """As in a kedro run: parent run open, the experiment's child run holds the model's params,
    ``<experiment>.export`` is saved, then the served model is logged into the child run."""
    root = tmp_path_factory.mktemp("serving")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = mlflow.create_experiment("serving", artifact_location=(root / "mlruns").as_uri())
    mlflow.set_experiment(experiment_id=experiment_id)
    model = build_detector(ARCH, image_size=SIZE)
    config = {"name": NAME, "model": {"arch": ARCH, "image_size": SIZE}}
    try:
        with mlflow.start_run(run_name="kedro run") as parent:
            with experiment_run(NAME, config=config, provenance={"fingerprint": "f" * 40}) as child:
                child_id = child.info.run_id
            export = ExportDataset(str(root / "export"))
            export.save(TrainedDetector(model, config, {"fingerprint": "f" * 40}, step=0, run_id=child_id))
            detector = ExportedDetector(export.path / "saved_model")
            threshold = float(np.median(reference(detector, images[0])["scores"]))
            started = time.monotonic()
            uri = serving.log_served_model(export.path, export.info()["run_id"], NAME, min_score=threshold)
            log_seconds = time.monotonic() - started
            still_active = mlflow.active_run().info.run_id
        yield {"uri": uri, "run_id": child_id, "parent_id": parent.info.run_id, "still_active": still_active,
               "export": export.path, "tracking_uri": tracking_uri, "experiment_id": experiment_id,
               "root": root, "log_seconds": log_seconds, "threshold": threshold, "detector": detector}
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def images():
    """A JPEG and a PNG of different sizes (the SavedModel resizes to its input size)."""
    return [encoded(picture(1, SIZE, SIZE), "JPEG"), encoded(picture(2, 80, 120), "PNG")]


def test_model_is_logged_into_the_experiments_child_run(logged):
    assert logged["still_active"] == logged["parent_id"]  # the kedro run's parent run stays open
    model_id = logged["uri"].removeprefix("models:/")
    assert mlflow.get_logged_model(model_id).source_run_id == logged["run_id"]
    models = mlflow.search_logged_models(experiment_ids=[logged["experiment_id"]], output_format="list")
    assert [m.source_run_id for m in models] == [logged["run_id"]]  # none in the parent run
    info = mlflow.models.get_model_info(f"runs:/{logged['run_id']}/{serving.SERVED_MODEL}")
    assert info.model_uuid == model_id
    assert info.metadata["experiment"] == NAME and info.metadata["fingerprint"] == "f" * 40
    assert info.signature.inputs.input_names() == ["image"]
    param = info.signature.params.to_dict()[0]
    assert param["name"] == "min_score" and param["default"] == pytest.approx(logged["threshold"])
    assert info.metadata["min_score"] == pytest.approx(logged["threshold"])
    local = Path(mlflow.artifacts.download_artifacts(logged["uri"]))
    requirements = (local / "requirements.txt").read_text().split()
    assert sorted(r.split("==")[0] for r in requirements) == ["mlflow", "numpy", "pandas", "pillow", "tensorflow"]
    assert (local / "artifacts" / "saved_model" / "saved_model.pb").is_file()
    assert json.loads((local / "artifacts" / "export_info.json").read_text())["run_id"] == logged["run_id"]
    # the export is the served model's artifact: no other copy of the model in the run, no internal files
    assert [a.path for a in mlflow.artifacts.list_artifacts(run_id=logged["run_id"])] == ["config.yml"]
    assert not [p for p in local.rglob("*") if p.name.startswith(".urban_detection")]
    assert any(logged["export"].rglob(".urban_detection_written.jsonl"))  # (they are in the export folder)
    assert json.loads((local / "serving_input_example.json").read_text())["dataframe_split"]["columns"] == ["image"]


def test_logging_the_same_export_again_reuses_the_served_model(logged):
    again = serving.log_served_model(logged["export"], logged["run_id"], NAME, min_score=logged["threshold"])
    assert again == logged["uri"]
    models = mlflow.search_logged_models(experiment_ids=[logged["experiment_id"]], output_format="list")
    assert len(models) == 1


def test_pyfunc_gives_the_exported_detectors_detections(logged, images):
    model = mlflow.pyfunc.load_model(logged["uri"])
    # bytes as in Python, base64 text as in JSON: both are accepted
    frame = pd.DataFrame({"image": [images[0], base64.b64encode(images[1]).decode()]})
    out = model.predict(frame, params={"min_score": 0.0})
    assert list(out.columns) == ["boxes", "labels", "scores", "num_detections"] and len(out) == 2
    for (_, row), data in zip(out.iterrows(), images):
        assert_same(row, reference(logged["detector"], data))
        assert np.all(np.diff(row["scores"]) <= 0)  # best first
        boxes = np.asarray(row["boxes"])
        assert boxes.min() >= 0 and boxes.max() <= 1 and np.all(boxes[:, 2:] >= boxes[:, :2])  # yxyx in [0, 1]

    threshold = float(np.quantile(out.iloc[0]["scores"], 0.75))
    strict = model.predict(frame.iloc[:1], params={"min_score": threshold}).iloc[0]
    assert_same(strict, reference(logged["detector"], images[0], threshold))
    assert strict["num_detections"] < out.iloc[0]["num_detections"]
    # without min_score: the threshold the model was logged with (in a kedro run, the render threshold)
    default = model.predict(frame.iloc[:1]).iloc[0]
    assert_same(default, reference(logged["detector"], images[0], logged["threshold"]))
    assert 0 < default["num_detections"] < out.iloc[0]["num_detections"]

    with pytest.raises(MlflowException, match="image 1: not a readable JPEG or PNG"):
        model.predict(pd.DataFrame({"image": [images[0], b"not an image"]}))


# ------------------------------------------------------------------ a real `mlflow models serve`
@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_same_detections(logged, images):
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": logged["tracking_uri"],
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(Path(sys.executable).parent / "mlflow"), "models", "serve",
           "-m", f"runs:/{logged['run_id']}/{serving.SERVED_MODEL}", "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    log_path = logged["root"] / "server.log"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, never a proxy
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, env=env, cwd=logged["root"], stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        started = time.monotonic()
        while True:
            assert proc.poll() is None, f"the server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}"
            try:
                if http(opener, f"{base}/ping", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() - started < SERVER_START_DEADLINE, \
                f"no answer on {base}/ping after {SERVER_START_DEADLINE} s:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        ready_seconds = time.monotonic() - started
        assert any("uvicorn" in " ".join(p.cmdline()) for p in group_members(proc.pid))  # the stop covers it

        body = {"dataframe_split": {"columns": ["image"],
                                    "data": [[base64.b64encode(data).decode()] for data in images]},
                "params": {"min_score": 0.0}}
        status, answer = http(opener, f"{base}/invocations", body)
        assert status == 200, answer[:2000]
        predictions = json.loads(answer)["predictions"]
        assert len(predictions) == 2
        for row, data in zip(predictions, images):
            assert_same(row, reference(logged["detector"], data))

        threshold = float(np.median(predictions[0]["scores"]))
        status, answer = http(opener, f"{base}/invocations", {**body, "params": {"min_score": threshold}})
        assert status == 200, answer[:2000]
        assert_same(json.loads(answer)["predictions"][0], reference(logged["detector"], images[0], threshold))

        bad = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(b"not an image").decode()]]}}
        status, answer = http(opener, f"{base}/invocations", bad)
        assert status == 400 and b"image 0: not a readable JPEG or PNG" in answer, (status, answer[:2000])
        print(f"server ready after {ready_seconds:.1f} s")
    finally:
        stop_server(proc)
    assert proc.returncode is not None and not group_members(proc.pid), "server processes left running"


@pytest.mark.slow
def test_served_model_needs_no_project_code(logged, images, tmp_path):
    """In a fresh interpreter where ``urban_detection`` cannot be imported, the logged model loads
    (its code is the logged ``serving.py``) and gives the same detections."""
    local = mlflow.artifacts.download_artifacts(logged["uri"], dst_path=str(tmp_path / "model"))
    (tmp_path / "image.png").write_bytes(images[1])
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["urban_detection"] = None  # any import of the project now fails
        import mlflow, pandas as pd
        model = mlflow.pyfunc.load_model({local!r})
        out = model.predict(pd.DataFrame({{"image": [open({str(tmp_path / "image.png")!r}, "rb").read()]}}),
                            params={{"min_score": 0.0}})
        print("RESULT" + json.dumps(out.iloc[0].to_dict()))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MLFLOW_TRACKING_URI": logged["tracking_uri"]})
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))[6:])
    assert_same(row, reference(logged["detector"], images[1]))
