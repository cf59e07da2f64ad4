"""Custom Kedro datasets for artifacts kedro-datasets has no type for.

* :class:`FolderDataset`: a folder a node writes many files into (synthetic segments, trip TFRecords).
* :class:`TripsDataset`: ingested trip TFRecords and their frame index.
* :class:`CheckpointsDataset`: the folder training writes checkpoints into (one subfolder per fingerprint).
* :class:`DetectorDataset`: a trained detector with its config and provenance.
* :class:`ExportDataset`: the ``.keras`` file and the SavedModel of an experiment.
* :class:`VideoDataset`: an H.264 MP4 of rendered frames.
"""
from .detector import CheckpointsDataset, DetectorDataset, ExportDataset
from .trips import FolderDataset, TripsDataset
from .video import VideoDataset

__all__ = ["CheckpointsDataset", "DetectorDataset", "ExportDataset", "FolderDataset", "TripsDataset",
           "VideoDataset"]
