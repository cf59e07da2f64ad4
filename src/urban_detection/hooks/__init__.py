"""Project hooks (``settings.HOOKS``): experiment selection, ownership of catalog outputs, model artifacts and
the registry in MLflow, the kedro run's MLflow run."""
from .artifacts import ModelArtifactsHooks
from .ownership import OutputOwnershipHooks
from .runs import MlflowRunHooks
from .selection import ExperimentSelectionHooks

__all__ = ["ExperimentSelectionHooks", "MlflowRunHooks", "ModelArtifactsHooks", "OutputOwnershipHooks"]
