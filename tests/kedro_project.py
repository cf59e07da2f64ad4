"""Helpers for tests that run the Kedro project: a throw-away copy with tiny parameters."""
from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = REPO.parent / "shared" / "data" / "waymo_processed_sample"

# Small enough to run in well under a minute per pipeline on 2 CPU cores.
TINY_PARAMS = {
    "synthetic": {"trips": 6, "frames_per_trip": 16, "width": 240, "height": 160, "seed": 3},
    "ingest": {"image_size": [160, 160], "frame_stride": 4, "workers": 1},
    "train": {
        "settings": {
            "model": {"arch": "retinanet_resnet18_fpn_small", "image_size": 64, "weights": None},
            "train": {"steps": 4, "batch_size": 2, "checkpoint_every": 2, "log_every": 1, "val_batches": 1,
                      "shuffle_buffer": 8},
            "optimizer": {"schedule": {"warmup_steps": 1}},
        },
    },
}


def make_project(dest: Path) -> Path:
    """Copy conf/, pyproject.toml and .telemetry of the repo into ``dest`` with empty data folders."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "src").mkdir()  # kedro wants the source dir; the package itself is installed
    shutil.copytree(REPO / "conf", dest / "conf", ignore=shutil.ignore_patterns("local"))
    (dest / "conf" / "local").mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(REPO / name, dest / name)
    for sub in ("01_raw", "02_intermediate", "03_primary", "05_model_input", "06_models", "07_model_output",
                "08_reporting"):
        (dest / "data" / sub).mkdir(parents=True)
    return dest


def run_kedro(project: Path, pipelines: list[str], params: dict | None = None) -> dict:
    """Run pipelines of the project copy through a real KedroSession (kedro-mlflow hooks included)."""
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    configure_project("urban_detection")
    import mlflow

    try:
        with KedroSession.create(project_path=project, runtime_params=params or {}) as session:
            return session.run(pipeline_names=pipelines)
    finally:  # a failed run leaves kedro-mlflow's run open; the next test must not log into it
        while mlflow.active_run() is not None:
            mlflow.end_run("FAILED")
