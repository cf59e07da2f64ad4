"""Detection videos of a test trip with each exported experiment, one namespace per experiment."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
