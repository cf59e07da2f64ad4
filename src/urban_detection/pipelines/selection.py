"""Which experiments a run builds nodes for.

The train, evaluate and render pipelines get one namespace per experiment selected in
``train.experiments``; nothing else appears in a run or in ``kedro viz``. The selection
comes from the session's own parameters (``conf/base``, ``conf/<env>`` and ``--params``):
:class:`urban_detection.hooks.ExperimentSelectionHooks` records them when a session
creates its context, before the pipelines are built. Without a session (e.g. importing a
pipeline in a script, or ``kedro viz`` without ``--include-hooks``) the project's
configuration is read through the same config loader, environment ``KEDRO_ENV`` or the
default run environment.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

from urban_detection.detection.config import selected_names

log = logging.getLogger(__name__)
_train_params: dict | None = None
_reference: str | None = None
_predict: str | None = None


def configure(train_params: Mapping | None, reference: str | None = None, predict: str | None = None) -> None:
    """Record the ``train`` parameters, ``evaluate.reference`` and ``predict.experiment`` of the current session."""
    global _train_params, _reference, _predict
    _train_params = dict(train_params or {})
    _reference = str(reference) if reference else None
    _predict = str(predict) if predict else None


def _from_project_config(section: str = "train") -> dict:
    from pathlib import Path

    from kedro.framework.project import settings

    from urban_detection.project import project_root

    root = Path(project_root())
    if not (root / settings.CONF_SOURCE).is_dir():
        return {}
    loader = settings.CONFIG_LOADER_CLASS(conf_source=str(root / settings.CONF_SOURCE),
                                          env=os.environ.get("KEDRO_ENV"), **settings.CONFIG_LOADER_ARGS)
    try:
        return dict(loader["parameters"].get(section) or {})
    except Exception as exc:  # noqa: BLE001 - no parameters: no experiment branches
        log.warning("could not read the train parameters (%s); no experiment branches", exc)
        return {}


def experiments(train_params: Mapping | None = None) -> dict[str, str | None]:
    """Selected experiment -> its parent (``None`` when it does not fine-tune), in selection order.

    Unknown names are left out here; the ``resolve_experiment_configs`` node rejects them
    with a clear error before any training.
    """
    params: Any = train_params if train_params is not None else _train_params
    if params is None:
        params = _from_project_config()
    catalog = params.get("catalog") or {}
    base_parent = (params.get("base") or {}).get("parent")
    settings_parent = (params.get("settings") or {}).get("parent", "unset")
    chosen = {}
    for name in selected_names(params):
        if name not in catalog:
            continue
        parent = (catalog[name] or {}).get("parent", base_parent)
        chosen[name] = parent if settings_parent == "unset" else settings_parent
    return chosen


def stored_reference(train_params: Mapping | None = None) -> str | None:
    """``evaluate.reference`` when it names an experiment of ``train.catalog`` that this run does not
    train: its stored model is then evaluated from the catalog (``<name>.model``) for the paired
    comparison. ``None`` when unset, already selected, or unknown (the comparison names the error)."""
    params: Any = train_params if train_params is not None else _train_params
    if params is None:
        params = _from_project_config()
        reference = _from_project_config("evaluate").get("reference")
    else:
        reference = _reference
    if not reference or reference in experiments(params) or reference not in (params.get("catalog") or {}):
        return None
    return str(reference)


def predict_experiment(train_params: Mapping | None = None) -> str | None:
    """The experiment whose exported model the predict pipeline runs: ``predict.experiment``, or the
    first experiment ``train.experiments`` selects (``None`` when neither names one)."""
    params: Any = train_params if train_params is not None else _train_params
    if params is None:
        params = _from_project_config()
        chosen = _from_project_config("predict").get("experiment")
    else:
        chosen = _predict
    if chosen:
        return str(chosen)
    return next(iter(experiments(params)), None)
