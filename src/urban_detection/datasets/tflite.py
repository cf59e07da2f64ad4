"""TFLite models of one experiment: a folder of ``<format>.tflite`` files, written whole.

Saving takes ``{format: flatbuffer bytes}`` (``float16``, ``int8``) and swaps the folder in
atomically, only over the project's own files; loading returns ``{format: path}``.
"""
from __future__ import annotations

from pathlib import Path

from kedro.io import DatasetError

from urban_detection.datasets.base import PathDataset
from urban_detection import files


class TFLiteDataset(PathDataset[dict, dict]):

    def load(self) -> dict[str, str]:
        found = sorted(self._path.glob("*.tflite")) if self._path.is_dir() else []
        if not found:
            raise DatasetError(f"no TFLite model in {self._path}: run `kedro run --pipeline=edge` first")
        return {p.stem: str(p) for p in found}

    def save(self, data: dict[str, bytes]) -> None:
        with files.atomic_dir(self._path) as tmp:
            for fmt, content in data.items():
                (Path(tmp) / f"{fmt}.tflite").write_bytes(content)

    def _exists(self) -> bool:
        return self._path.is_dir() and any(self._path.glob("*.tflite"))
