"""Project hooks (``settings.HOOKS``): experiment selection, ownership of catalog outputs, model artifacts in MLflow."""
from .artifacts import ModelArtifactsHooks
from .ownership import OutputOwnershipHooks
from .selection import ExperimentSelectionHooks

__all__ = ["ExperimentSelectionHooks", "ModelArtifactsHooks", "OutputOwnershipHooks"]
