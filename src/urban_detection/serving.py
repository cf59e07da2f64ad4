"""A trained detector as an MLflow model: images in, boxes, labels and scores out.

:func:`log_served_model` logs an experiment's export (``<experiment>.export``: the TF
SavedModel and ``export_info.json``) as an MLflow pyfunc model named ``served_model`` into
the MLflow run the model was trained in. The export *is* the served model's artifact: it is
the one copy of the model in the run (no separate ``export/`` artifacts, no Keras logged
model; ``model.keras`` stays in ``data/06_models/<experiment>/export``). Then

    mlflow models serve -m runs:/<run_id>/served_model --env-manager local

answers ``POST /invocations`` requests. Input: a DataFrame with one column ``image``
holding JPEG or PNG bytes (in JSON, base64 text:
``{"dataframe_split": {"columns": ["image"], "data": [["<base64>"]]}}``; in Python,
``bytes`` or base64 ``str``). Images may have any size (the SavedModel resizes). Output:
one row per image with ``boxes`` (normalised ``[ymin, xmin, ymax, xmax]``), ``labels``
(1 vehicle, 2 pedestrian, 4 cyclist), ``scores`` (best first) and ``num_detections``.
The parameter ``min_score`` drops weaker detections; its default is the threshold the
model was logged with: the render pipeline's ``render.score_threshold`` (0.3), so the
served model returns what the videos draw. ``min_score=0`` returns all 100 boxes.

Logging the same export again (the evaluate pipeline re-run on an unchanged model) reuses
the run's served model instead of storing another copy.

Why a small pyfunc and not kedro-mlflow's ``pipeline_ml_factory``:

- ``pipeline_ml_factory`` logs one model per ``kedro run``, in the ``after_pipeline_run``
  hook, into the run active then: the kedro run's parent run. Here each experiment's
  model lives in its own child run (:mod:`urban_detection.tracking`), and one run may
  train several experiments, so a model would land in the wrong run and all but one
  experiment would have none.
- A ``PipelineML`` stays one only while run alone: summed with other pipelines (``kedro
  run`` runs ``__default__``, ``--pipelines=train,evaluate``) it is demoted to a plain
  pipeline and nothing is logged.
- ``KedroPipelineModel`` points the inference pipeline's datasets at the logged
  artifacts by setting ``dataset._filepath``, which folder datasets such as
  ``ExportDataset`` (``_path``, a SavedModel folder) do not use: the served model would
  silently read the project's ``data/06_models`` instead of its own artifact.

So each model is logged by :func:`log_served_model` (the project's
``ModelArtifactsHooks`` calls it once ``<experiment>.export`` is saved, then registers it,
see :mod:`urban_detection.registry`), as a pyfunc over the same SavedModel the evaluate and
render pipelines use. It is logged as MLflow
"models from code": this file is copied into the model and run on its own when the model
loads (hence the ``set_model`` at the end and only numpy, pandas and mlflow imported at
the top), so serving needs tensorflow, pillow, pandas and numpy, not this project.
Images are run one at a time, so an image's detections do not depend on the other
images of a request.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

log = logging.getLogger(__name__)

SERVED_MODEL = "served_model"  # the model's name in its run: runs:/<run_id>/served_model
IMAGE_COLUMN = "image"
OUTPUT_COLUMNS = ("boxes", "labels", "scores", "num_detections")
RENDER_SCORE_THRESHOLD = 0.3  # conf/base/parameters_render.yml render.score_threshold (the hook passes the session's)


def decode_image(value, row: int = 0) -> np.ndarray:
    """JPEG/PNG ``bytes`` (or base64 text of them) to a uint8 ``[H, W, 3]`` RGB array."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, str):
        try:
            value = base64.b64decode(value)  # line breaks (as in MLflow's base64) are skipped
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"image {row}: text that is not base64 ({err})") from None
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ValueError(f"image {row}: expected JPEG or PNG bytes or base64 text, got {type(value).__name__}")
    try:
        with Image.open(io.BytesIO(bytes(value))) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"image {row}: not a readable JPEG or PNG image ({err})") from None


def detections_row(outputs: dict, min_score: float = 0.0) -> dict:
    """The SavedModel's padded outputs for one image (batch of 1) to one output row."""
    n = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
    scores = np.asarray(outputs["detection_scores"], np.float32)[0, :n]
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] >= min_score]
    boxes = np.clip(np.asarray(outputs["detection_boxes"], np.float32)[0, :n][order], 0.0, 1.0)
    labels = np.asarray(outputs["detection_classes"])[0, :n][order].astype(np.int64)
    return {"boxes": boxes.tolist(), "labels": labels.tolist(), "scores": scores[order].tolist(),
            "num_detections": int(len(order))}


class DetectorModel(PythonModel):
    """MLflow pyfunc over an exported detector (artifact ``saved_model``)."""

    def load_context(self, context) -> None:
        import tensorflow as tf

        self._module = tf.saved_model.load(context.artifacts["saved_model"])
        self._serve = self._module.signatures["serving_default"]
        self._min_score = float((context.model_config or {}).get("min_score", 0.0))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """``model_input``: a DataFrame with column ``image`` (or a list of images); a DataFrame out."""
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        images = model_input[IMAGE_COLUMN] if isinstance(model_input, pd.DataFrame) else model_input
        if isinstance(images, (bytes, str)):
            images = [images]
        given = (params or {}).get("min_score")
        min_score = float(self._min_score if given is None else given)
        rows = []
        for i, value in enumerate(list(images)):
            try:
                image = decode_image(value, i)
            except ValueError as err:
                raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
            outputs = {k: v.numpy() for k, v in self._serve(images=image[None]).items()}
            rows.append(detections_row(outputs, min_score))
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def _example_image() -> bytes:
    """A small JPEG for the model's input example (and the request example in the MLflow UI)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def model_signature(min_score: float = 0.0):
    """Input: binary column ``image``; output: detections per image; parameter ``min_score`` (default ``min_score``)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import Array

    return ModelSignature(
        inputs=Schema([ColSpec(DataType.binary, IMAGE_COLUMN)]),
        outputs=Schema([
            ColSpec(Array(Array(DataType.double)), "boxes"),
            ColSpec(Array(DataType.long), "labels"),
            ColSpec(Array(DataType.double), "scores"),
            ColSpec(DataType.long, "num_detections"),
        ]),
        params=ParamSchema([ParamSpec("min_score", DataType.double, float(min_score))]),
    )


def pip_requirements() -> list[str]:
    """What serving needs, pinned to the versions the model was exported and tested with."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "tensorflow", "pillow", "pandas", "numpy")]


def _code_version() -> str:
    """Hash of this file: a served model logged by other serving code is not reused."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def served_model_tags(info: dict, min_score: float) -> dict[str, str]:
    """Tags of a served model that say which export it serves and how (equal tags: the same served model)."""
    return {"fingerprint": str(info.get("fingerprint", "")), "step": str(info.get("step", "")),
            "min_score": f"{float(min_score):g}", "serving_code": _code_version()}


def find_served_model(run_id: str, tags: dict[str, str]):
    """The run's ready ``served_model`` with exactly these tags (the same export, threshold and code), else None."""
    import mlflow

    run = mlflow.get_run(run_id)
    found = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list",
        filter_string=f"source_run_id = '{run_id}' AND name = '{SERVED_MODEL}'")
    return next((m for m in found if str(m.status).endswith("READY")
                 and all(m.tags.get(k) == v for k, v in tags.items())), None)


def _staged_export(saved_model: Path, tmp: Path) -> Path:
    """A copy of the SavedModel folder without the project's ownership manifests (not model files)."""
    from urban_detection.files.manifest import MANIFEST_NAME

    staged = tmp / "saved_model"
    shutil.copytree(saved_model, staged, ignore=shutil.ignore_patterns(MANIFEST_NAME))
    return staged


def log_served_model(export_dir: Path, run_id: str, experiment: str,
                     min_score: float = RENDER_SCORE_THRESHOLD) -> str:
    """Log the export in ``export_dir`` (``saved_model/``, ``export_info.json``) as the pyfunc model
    ``served_model`` into the MLflow run ``run_id``, its default ``min_score`` the render threshold;
    returns the model URI (``models:/<model id>``; ``runs:/<run_id>/served_model`` names the same
    model). The run's served model of the same export, threshold and code is reused, not logged again."""
    import mlflow

    from urban_detection.tracking import experiment_run

    export_dir = Path(export_dir)
    saved_model = export_dir / "saved_model"
    if not (saved_model / "saved_model.pb").is_file():
        raise FileNotFoundError(f"no SavedModel in {saved_model}: export the model first")
    mlflow.get_run(run_id)  # an unknown run raises here, not after a new run was opened
    info_path = export_dir / "export_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    tags = served_model_tags(info, min_score)
    existing = find_served_model(run_id, tags)
    if existing is not None:
        log.info("%s: the run %s already serves this export (%s): not stored again", experiment, run_id,
                 existing.model_id)
        return f"models:/{existing.model_id}"
    metadata = {"experiment": experiment, "min_score": float(min_score),
                **{k: v for k, v in info.items() if v is not None}}
    artifacts = {"export_info": str(info_path)} if info_path.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="served_model-") as tmp, experiment_run(experiment, run_id=run_id):
        model_info = mlflow.pyfunc.log_model(
            name=SERVED_MODEL,
            python_model=Path(__file__),  # models from code: this file, run by MLflow on its own
            artifacts={"saved_model": str(_staged_export(saved_model, Path(tmp))), **artifacts},
            model_config={"min_score": float(min_score)},
            pip_requirements=pip_requirements(),
            signature=model_signature(min_score),
            input_example=pd.DataFrame({IMAGE_COLUMN: [_example_image()]}),
            metadata=metadata,
            tags=tags,
        )
    log.info("%s: served model logged to MLflow run %s (%s); serve it with "
             "`mlflow models serve -m runs:/%s/%s --env-manager local`",
             experiment, run_id, model_info.model_uri, run_id, SERVED_MODEL)
    return model_info.model_uri


if __name__ != "urban_detection.serving":  # run from its file by MLflow (logging or loading the model)
    import mlflow.models

    mlflow.models.set_model(DetectorModel())
