"""Detections on the user's own media with one experiment's exported model."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
