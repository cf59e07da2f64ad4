"""What every project dataset stored at one path (a file or a folder) shares: the catalog's ``path``,
its ``metadata`` (Kedro-Viz's layer) and the description Kedro logs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from kedro.io import AbstractDataset

SavedT = TypeVar("SavedT")
LoadedT = TypeVar("LoadedT")


class PathDataset(AbstractDataset[SavedT, LoadedT]):
    """A dataset at ``path``; subclasses give ``load``, ``save`` and ``_exists``."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    @property
    def path(self) -> Path:
        return self._path

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
