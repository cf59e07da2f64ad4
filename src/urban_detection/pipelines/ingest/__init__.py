"""Ingest Waymo trips (raw segments or processed tf.Example files) into one TFRecord per trip."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
