"""Custom Kedro datasets for artifacts kedro-datasets has no type for.

* :class:`SourceFolderDataset`: the user's input folder (``ingest_source``), read only.
* :class:`FolderDataset`: a folder a node fills with many files (the synthetic segments), saved from a
  :class:`FolderWrite` (see :mod:`urban_detection.datasets.folders`).
* :class:`TripsDataset`: ingested trip TFRecords, their frame index and ingest report (also saved from a
  :class:`FolderWrite`).
* :class:`CheckpointsDataset`: the folder training writes checkpoints into (one subfolder per fingerprint).
* :class:`DetectorDataset`: a trained detector with its config and provenance.
* :class:`ExportDataset`: the ``.keras`` file and the SavedModel of an experiment.
* :class:`VideoDataset`: an H.264 MP4 of rendered frames.
* :class:`FiguresDataset`: a folder of matplotlib figures (a dict of them), previewed in ``kedro viz``.

Each has a ``preview()`` for ``kedro viz``: a table, an image or a JSON document.
"""
from .detector import CheckpointsDataset, DetectorDataset, ExportDataset
from .figures import FiguresDataset
from .folders import FolderDataset, FolderWrite, SourceFolderDataset
from .trips import TripsDataset
from .video import VideoDataset

__all__ = ["CheckpointsDataset", "DetectorDataset", "ExportDataset", "FiguresDataset", "FolderDataset",
           "FolderWrite", "SourceFolderDataset", "TripsDataset", "VideoDataset"]
