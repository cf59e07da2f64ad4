"""Project hooks (``settings.HOOKS``): experiment selection, ownership of catalog outputs, model artifacts and
the registry in MLflow, the kedro run's MLflow run, the time of each node, the tracking server of a run
training on Ray, the worker processes kept between nodes."""
from .artifacts import ModelArtifactsHooks
from .cluster import ClusterTrackingHooks
from .ownership import OutputOwnershipHooks
from .pools import WorkerPoolHooks
from .runs import MlflowRunHooks
from .selection import ExperimentSelectionHooks
from .timing import NodeTimingHooks

__all__ = ["ClusterTrackingHooks", "ExperimentSelectionHooks", "MlflowRunHooks", "ModelArtifactsHooks",
           "NodeTimingHooks", "OutputOwnershipHooks", "WorkerPoolHooks"]
