"""Kedro hook: the run's experiment branches built from this session's ``train`` parameters."""
from __future__ import annotations

from kedro.framework.hooks import hook_impl

from urban_detection.hooks.params import session_parameters


class ExperimentSelectionHooks:
    """Builds the pipelines from this session's ``train`` parameters (conf envs and ``--params``)."""

    @hook_impl
    def after_context_created(self, context) -> None:
        from kedro.framework.project import PACKAGE_NAME, pipelines

        from urban_detection.pipelines import selection

        params = session_parameters(context)
        selection.configure(params.get("train"), (params.get("evaluate") or {}).get("reference"),
                            (params.get("predict") or {}).get("experiment"))
        pipelines.configure(f"{PACKAGE_NAME}.pipeline_registry")  # rebuilt with this selection on next access
