"""Experiment configs and training, one Kedro namespace per experiment."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
