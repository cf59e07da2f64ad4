"""The predict pipeline's media: the user's source (read) and the annotated copy (written).

``MediaSourceDataset`` names the user's images folder, video or Waymo segment/v2 folder
(``predict.source`` on the command line, through the ``runtime_params`` resolver in
``catalog_predict.yml``) and loads a :class:`MediaSource`: what it is and how many files it
holds. Frames are read while predicting (:mod:`urban_detection.detection.media`), never all
at once. It is never written.

``AnnotatedMediaDataset`` is a folder written whole (swapped in atomically, only over the
project's own files): one annotated image per input image (same name), or one H.264 MP4
per video or segment (``<name>.mp4``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from urban_detection.datasets.base import PathDataset
from urban_detection import files


@dataclass
class MediaSource:
    """A user's media: ``path``, its ``kind`` (images, video, waymo_v1, waymo_v2) and its files."""

    path: str
    kind: str
    files: list[str]

    def __repr__(self) -> str:
        return f"MediaSource({self.kind}: {len(self.files)} file(s) in {self.path})"


@dataclass
class AnnotatedMedia:
    """Drawn frames by output name: ``images`` (name -> one frame) or ``videos`` (name -> frames)."""

    images: dict[str, np.ndarray] = field(default_factory=dict)
    videos: dict[str, list[np.ndarray]] = field(default_factory=dict)
    fps: float = 10.0


class MediaSourceDataset(AbstractDataset[None, MediaSource]):
    def __init__(self, path: str | None = None, metadata: dict[str, Any] | None = None):
        self._path = str(path) if path not in (None, "", "None", "null") else None
        self.metadata = metadata

    def load(self) -> MediaSource:
        from urban_detection.detection.media import media_kind, media_sources

        if self._path is None:
            raise DatasetError("no media to predict on: give it on the command line, e.g. "
                               "kedro run --pipeline=predict --params \"predict.source=<images folder | video | "
                               "Waymo segment or v2 folder>\"")
        try:
            kind = media_kind(self._path)
            sources = media_sources(self._path)
        except (FileNotFoundError, ValueError) as exc:
            raise DatasetError(str(exc)) from exc
        return MediaSource(path=self._path, kind=kind, files=[str(p) for p in sources])

    def save(self, data: None) -> None:
        raise DatasetError("the predict source is the user's media: it is read, never written")

    def _exists(self) -> bool:
        return self._path is not None and Path(self._path).exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}


class AnnotatedMediaDataset(PathDataset[AnnotatedMedia, list[str]]):

    def load(self) -> list[str]:
        """The annotated files' paths (images and videos), sorted."""
        if not self._path.is_dir():
            raise DatasetError(f"no annotated media in {self._path}: run `kedro run --pipeline=predict` first")
        return sorted(str(p) for p in self._path.iterdir() if p.is_file() and not p.name.startswith("."))

    def save(self, data: AnnotatedMedia) -> None:
        from PIL import Image

        from urban_detection.detection.video import write_video

        with files.atomic_dir(self._path) as tmp:
            for name, image in data.images.items():
                Image.fromarray(image).save(Path(tmp) / Path(name).name, quality=90)
            for name, frames in data.videos.items():
                write_video(frames, Path(tmp) / f"{Path(name).stem}.mp4", fps=data.fps)

    def _exists(self) -> bool:
        return self._path.is_dir()
