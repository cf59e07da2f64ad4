"""Export, COCO evaluation on val/test and the comparison report, one namespace per experiment."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
