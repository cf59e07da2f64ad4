"""Where the Kedro project is: the folder holding its ``pyproject.toml`` (Kedro-free, for settings and libraries)."""
from __future__ import annotations

from pathlib import Path


def project_root() -> str:
    """The nearest folder at or above the working directory holding the Kedro pyproject.toml.

    ``kedro jupyter`` runs in ``notebooks/``; the MLflow store must still be the
    project root's ``mlflow.db``.
    """
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        toml = folder / "pyproject.toml"
        if toml.is_file() and "[tool.kedro]" in toml.read_text(errors="ignore"):
            return folder.as_posix()
    return here.as_posix()
