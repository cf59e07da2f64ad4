"""Exploratory data analysis: class balance, conditions, boxes and images per split."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
