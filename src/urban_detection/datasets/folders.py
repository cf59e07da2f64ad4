"""Folders: the user's input folder, and folders a node fills with many files.

A node whose result is many files (the synthetic generator's segments, ingest's trip
TFRecords written by parallel or Ray workers) cannot pass them through memory, and it
cannot know where the catalog keeps them: Kedro hands a node its inputs only, and forbids
one dataset to be both an input and an output of a node. So such a node returns a
:class:`FolderWrite`, *what* to write; the folder dataset it is saved to calls it with
*where*, its own folder (the way kedro-datasets' ``PartitionedDataset`` saves callables,
"lazy saving"). The folder is then an output of the node that fills it, in the pipeline and
in ``kedro viz``, and its path lives in the catalog only.

* :class:`SourceFolderDataset` (load only): the user's raw data, ``ingest_source``, read and never written;
* :class:`FolderDataset`: a folder filled by saving a :class:`FolderWrite` (``synthetic_store``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kedro.io import DatasetError
from kedro_datasets._typing import TablePreview

from urban_detection.datasets.base import PathDataset

log = logging.getLogger(__name__)
PREVIEW_ROWS = 10


@dataclass(frozen=True)
class FolderWrite:
    """What a node writes into a folder it does not know: ``write(folder)`` writes the files and
    returns the result the folder's dataset records (a manifest, the trips and their index)."""

    write: Callable[[Path], Any]
    what: str = "files"

    def __call__(self, folder: Path) -> Any:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        log.debug("writing %s into %s", self.what, folder)
        return self.write(folder.resolve())


def listing(folder: Path, rows: int = PREVIEW_ROWS) -> TablePreview:
    """A kedro-viz table of the first ``rows`` files of ``folder`` (name, MB), with the total count."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith("."))
    data = [[str(p.relative_to(folder)), round(p.stat().st_size / 1e6, 3)] for p in files[:rows]]
    if len(files) > rows:
        data.append([f"... {len(files) - rows} more ({len(files)} files)", None])
    return TablePreview({"index": list(range(len(data))), "columns": ["file", "MB"], "data": data})


class SourceFolderDataset(PathDataset[None, Path]):
    """Load only: the user's input folder (``ingest_source``). Loading returns its path as given
    (it may not exist yet: the synthetic generator creates the default one); nothing is ever saved."""

    def load(self) -> Path:
        return self._path

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._path} is the user's input: the project never writes it")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def preview(self, rows: int = PREVIEW_ROWS) -> TablePreview:
        """The sources an ingest would read (Waymo v1 segments, processed files or v2 segments)."""
        from urban_detection.waymo.sources import find_sources

        if not self._path.is_dir():
            return TablePreview({"index": [0], "columns": ["source", "MB"],
                                 "data": [[f"{self._path}: no folder yet", None]]})
        sources = find_sources(self._path)
        data = [[str(p.relative_to(self._path)), round(p.stat().st_size / 1e6, 3)] for p in sources[:rows]]
        if len(sources) > rows:
            data.append([f"... {len(sources) - rows} more ({len(sources)} sources)", None])
        return TablePreview({"index": list(range(len(data))), "columns": ["source", "MB"], "data": data})


def source_params(source: Path, params: dict) -> dict:
    """``params`` (the ``ingest`` section) with ``source_dir`` set to the ``ingest_source`` folder.

    ``--params ingest.source_dir=...`` sets both that folder (the catalog reads it) and the
    parameter; a ``source_dir`` set only in a parameters file would silently be ignored, so it
    must name the same folder."""
    given = params.get("source_dir")
    if given is not None and Path(str(given)).resolve() != Path(source).resolve():
        raise ValueError(f"ingest.source_dir {str(given)!r} is set in the parameters, but the catalog's "
                         f"ingest_source reads {str(source)!r}: give the folder on the command line "
                         f"(--params \"ingest.source_dir=...\"), or set ingest_source's path in "
                         f"conf/<env>/catalog.yml")
    return {**params, "source_dir": str(source)}


class FolderDataset(PathDataset[Any, Path]):
    """A folder a node fills: saving a :class:`FolderWrite` runs it on the folder. Loading returns
    the folder's path (created when missing)."""

    def load(self) -> Path:
        self._path.mkdir(parents=True, exist_ok=True)
        return self._path.resolve()

    def save(self, data: FolderWrite) -> None:
        if not isinstance(data, FolderWrite):
            raise DatasetError(f"{self._path} is filled by a node returning a FolderWrite, got {type(data).__name__}")
        data(self._path)

    def _exists(self) -> bool:
        return self._path.is_dir()

    def preview(self, rows: int = PREVIEW_ROWS) -> TablePreview:
        """The folder's first files and their sizes."""
        if not self._path.is_dir():
            return TablePreview({"index": [0], "columns": ["file", "MB"],
                                 "data": [[f"{self._path}: not written yet", None]]})
        return listing(self._path, rows)
