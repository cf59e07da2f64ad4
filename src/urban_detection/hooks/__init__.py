"""Project hooks (``settings.HOOKS``): experiment selection, ownership of catalog outputs, model artifacts and
the registry in MLflow, the kedro run's MLflow run, the time of each node."""
from .artifacts import ModelArtifactsHooks
from .ownership import OutputOwnershipHooks
from .runs import MlflowRunHooks
from .selection import ExperimentSelectionHooks
from .timing import NodeTimingHooks

__all__ = ["ExperimentSelectionHooks", "MlflowRunHooks", "ModelArtifactsHooks", "NodeTimingHooks", "OutputOwnershipHooks"]
