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


