"""Project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""
import atexit
import gc
import os
import warnings

from kedro.config import OmegaConfigLoader

from urban_detection.hooks import (ClusterTrackingHooks, ExperimentSelectionHooks, MlflowRunHooks, ModelArtifactsHooks,
                                   NodeTimingHooks, OutputOwnershipHooks, WorkerPoolHooks)
from urban_detection.project import project_root

# Library deprecation chatter that says nothing about this project's runs.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)
warnings.filterwarnings("ignore", message=r".*contain '.' characters.*")  # "<experiment>.model" is namespaced
# A process that imported TensorFlow spends about 1.4 s of its exit in Python's last garbage collections,
# over the millions of objects TensorFlow, Keras and MLflow made. Everything the run writes is closed
# by then (datasets, MLflow's own exit handlers, logging), so those objects are left to the exit:
# registered before MLflow and TensorFlow are imported, this runs after their exit handlers.
atexit.register(gc.freeze)
# No network at run time: MLflow 3 would otherwise fetch a telemetry config from the internet and send
# usage records (only DO_NOT_TRACK=true, not 1, or MLFLOW_DISABLE_TELEMETRY turns it off). Set before
# MLflow is imported; decided again below in case something imported it before these settings.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# kedro-mlflow's CLI plugin (loaded by every `kedro` command, after these settings) defines a pyfunc
# model whose `predict` has no type hints, and MLflow warns about it once, under a warning filter of
# its own that an "ignore" filter cannot override. Defining it here, with the warning caught, is that once.
with warnings.catch_warnings(record=True):
    import kedro_mlflow.mlflow  # noqa: F401
try:
    from mlflow.telemetry.client import set_telemetry_client
except ImportError:  # pragma: no cover - an MLflow without telemetry
    pass
else:
    set_telemetry_client()


HOOKS = (ExperimentSelectionHooks(), OutputOwnershipHooks(), ModelArtifactsHooks(), MlflowRunHooks(), NodeTimingHooks(),
         ClusterTrackingHooks(), WorkerPoolHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
    # conf/local (or --env) parameters change only the keys they name, e.g. `train.settings`
    "merge_strategy": {"parameters": "soft"},
    "custom_resolvers": {"project_root": project_root},
}
