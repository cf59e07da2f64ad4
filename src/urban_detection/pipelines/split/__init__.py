"""Trip-level train/val/test split and its verification."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
