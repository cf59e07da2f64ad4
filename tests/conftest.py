"""Shared fixtures."""
from __future__ import annotations

import os

import pytest

from kedro_project import make_project

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")


@pytest.fixture
def tiny_project(tmp_path, monkeypatch):
    """A project copy in tmp_path, cwd set to it (catalog paths and mlflow.db are relative)."""
    project = make_project(tmp_path / "project")
    monkeypatch.chdir(project)
    return project




# The longest test files (minutes on 2 cores), started first so that the parallel workers
# (pytest-xdist, one file per worker) finish together instead of waiting for one long file at the end.
LONGEST_FIRST = (
    "test_readme_commands.py",
    "test_readme_experiments.py",
    "test_cluster_training.py",
    "test_no_data_loss.py",
    "detection/test_train.py",
    "waymo/test_ray_ingest.py",
    "test_project_run.py",
    "detection/test_multiworker.py",
    "test_mlflow_ui.py",
    "test_real_data.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.path.as_posix()
        return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith("/tests/" + name)),
                    len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the order inside a file and among the others is kept
