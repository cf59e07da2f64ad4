"""Project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""
import warnings
from pathlib import Path

from kedro.config import OmegaConfigLoader

from urban_detection.hooks import ExperimentSelectionHooks, ModelArtifactsHooks

# Library deprecation chatter that says nothing about this project's runs.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method", category=UserWarning)
warnings.filterwarnings("ignore", message=r".*contain '.' characters.*")  # "<experiment>.model" is namespaced


def _project_root() -> str:
    """The nearest folder at or above the working directory holding the Kedro pyproject.toml.

    ``kedro jupyter`` runs in ``notebooks/``; the MLflow store must still be the
    project root's ``mlflow.db``.
    """
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        toml = folder / "pyproject.toml"
        if toml.is_file() and "[tool.kedro]" in toml.read_text(errors="ignore"):
            return folder.as_posix()
    return here.as_posix()


HOOKS = (ExperimentSelectionHooks(), ModelArtifactsHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
    "custom_resolvers": {"project_root": _project_root},
}
