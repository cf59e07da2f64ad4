"""Edge export: TFLite float16 and int8 models of each selected experiment, checked on the test frames."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
