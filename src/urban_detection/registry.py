"""The MLflow Model Registry: every served model a version of ``urban_detection-<experiment>``,
the alias ``champion`` on the version that is best by test mAP@.50IOU. No Kedro here.

:func:`register` makes the run's ``served_model`` (:mod:`urban_detection.serving`) a version
of the experiment's registered model (the same served model again: the same version).
:func:`update_champion` then moves the alias ``champion`` to the new version only when the
paired trip-bootstrap comparison (:func:`~urban_detection.detection.intervals.paired_differences`,
as in the evaluation's comparison report) calls its test mAP@.50IOU *better* than the
champion's: the whole 95% interval of the difference, draw by draw, lies above 0. The
champion's test draws are the ones stored in its own run (``evaluation/metrics.json`` and
:data:`DRAWS_ARTIFACT`, written when its model was last evaluated); they pair with the new
model's only when both were scored on the same test trips, frames and trip draws, else the
alias stays and the reason says so. The first version of a model becomes its champion.
Every decision is written as the tag ``champion_decision`` of the new version and of its run.

    mlflow.pyfunc.load_model("models:/urban_detection-fast_cpu@champion")
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

PREFIX = "urban_detection"
CHAMPION = "champion"
METRIC = "DetectionBoxes_Precision/mAP@.50IOU"
SPLIT = "test"
METRICS_ARTIFACT = "evaluation/metrics.json"  # written by the evaluate node into the model's run
DRAWS_ARTIFACT = "evaluation/bootstrap_draws_test.parquet"  # the test split's whole-split draws
DECISION_TAG = "champion_decision"


def model_name(experiment: str) -> str:
    """The registered model of an experiment: ``urban_detection-<experiment>``."""
    return f"{PREFIX}-{experiment}"


@dataclass(frozen=True)
class TestDraws:
    """A model's test ``METRIC``: its value and its value on every trip-bootstrap draw, with what
    makes two of them pairable (the same trips, frames, seed and number of draws)."""

    trips: tuple[str, ...]
    frames: int
    seed: int
    draws: int
    level: float
    value: float
    values: np.ndarray

    @classmethod
    def from_evaluation(cls, doc: dict, draws: pd.DataFrame | None, metric: str = METRIC,
                        split: str = SPLIT) -> TestDraws | None:
        """From an evaluation's ``metrics.json`` and its bootstrap draws table; None without a bootstrap."""
        split_doc = ((doc or {}).get("splits") or {}).get(split) or {}
        boot = split_doc.get("bootstrap")
        if not boot or draws is None or metric not in draws or split_doc.get("metrics", {}).get(metric) is None:
            return None
        rows = draws[(draws["split"] == split) & (draws["slice"] == "all")].sort_values("draw")
        return cls(trips=tuple(boot["trips"]), frames=int(split_doc.get("frames", 0)), seed=int(boot["seed"]),
                   draws=int(boot["draws"]), level=float(boot["level"]), value=float(split_doc["metrics"][metric]),
                   values=rows[metric].to_numpy(float))

    def unpaired_reason(self, other: TestDraws) -> str | None:
        """Why ``self`` and ``other`` cannot be paired draw by draw (None: they can)."""
        if self.trips != other.trips:
            return f"other test trips ({len(self.trips)} against {len(other.trips)}, "\
                   f"{len(set(self.trips) ^ set(other.trips))} not in both)"
        checks = (("frames", self.frames, other.frames), ("bootstrap seed", self.seed, other.seed),
                  ("bootstrap draws", self.draws, other.draws), ("stored draws", len(self.values), len(other.values)))
        return next((f"other {what} ({a} against {b})" for what, a, b in checks if a != b), None)


@dataclass(frozen=True)
class Decision:
    move: bool
    reason: str
    verdict: str | None = None


def champion_decision(new: TestDraws | None, champion: TestDraws | None, version: str,
                      champion_version: str | None, metric: str = METRIC) -> Decision:
    """Whether version ``version`` (test draws ``new``) takes the alias from ``champion_version``."""
    from urban_detection.detection.intervals import BETTER, format_interval, paired_differences

    short = metric.rsplit("/", 1)[-1]
    if champion_version is None:
        return Decision(True, f"v{version} is the first version: champion")
    if str(champion_version) == str(version):
        return Decision(False, f"v{version} is already the champion")
    kept = f"champion v{champion_version} kept"
    if new is None:
        return Decision(False, f"v{version} has no test bootstrap draws (evaluate.bootstrap.draws 0?): {kept}")
    if champion is None:
        return Decision(False, f"champion v{champion_version} has no stored test bootstrap draws, "
                               f"so it cannot be paired with v{version}: {kept}")
    unpaired = new.unpaired_reason(champion)
    if unpaired:
        return Decision(False, f"v{version} and champion v{champion_version} were scored on {unpaired}: "
                               f"they cannot be paired, {kept}")
    diff = paired_differences({metric: new.values}, {metric: champion.values}, {metric: new.value},
                              {metric: champion.value}, level=new.level)[metric]
    moved = diff["verdict"] == BETTER
    text = (f"test {short} v{version} {new.value:.4f} vs champion v{champion_version} {champion.value:.4f}: "
            f"difference {format_interval(diff['difference'], diff['low'], diff['high'], 4)} "
            f"({100 * new.level:g}% paired trip bootstrap, {new.draws} draws): {diff['verdict']}, "
            + (f"champion moved to v{version}" if moved else kept))
    return Decision(moved, text, diff["verdict"])


# --------------------------------------------------------------------------- MLflow


def register(model_uri: str, experiment: str, run_id: str, tags: dict | None = None):
    """``model_uri`` (``models:/<model id>``) as a version of :func:`model_name`; the existing version
    when this served model is already registered. Returns the ``ModelVersion``."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client, name = MlflowClient(), model_name(experiment)
    model_id = model_uri.removeprefix("models:/")
    for version in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
        if version.source == model_uri or getattr(version, "model_id", None) == model_id:
            return version
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"Exported detectors of the experiment {experiment}; "
                                                         f"alias {CHAMPION}: the best by test {METRIC}")
    version = client.create_model_version(name, model_uri, run_id=run_id, tags={"experiment": experiment,
                                                                                 **(tags or {})},
                                          model_id=model_id)
    log.info("%s: registered as %s version %s", experiment, name, version.version)
    return version


def log_test_draws(run_id: str, draws: pd.DataFrame) -> None:
    """Store the test split's whole-split draws in the model's run (:data:`DRAWS_ARTIFACT`)."""
    from mlflow import MlflowClient

    rows = draws[(draws["split"] == SPLIT) & (draws["slice"] == "all")] if len(draws) else draws
    if not len(rows):
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(DRAWS_ARTIFACT).name
        rows.reset_index(drop=True).to_parquet(path)
        MlflowClient().log_artifact(run_id, str(path), str(Path(DRAWS_ARTIFACT).parent))


def stored_test_draws(run_id: str) -> TestDraws | None:
    """The test draws stored in a model's run, None when it has none."""
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            doc = json.loads(Path(client.download_artifacts(run_id, METRICS_ARTIFACT, tmp)).read_text())
            draws = pd.read_parquet(client.download_artifacts(run_id, DRAWS_ARTIFACT, tmp))
    except Exception as exc:  # noqa: BLE001 - no such artifact (an older run, or no bootstrap)
        log.info("run %s has no stored test draws (%s)", run_id, exc)
        return None
    return TestDraws.from_evaluation(doc, draws)


def update_champion(version, new: TestDraws | None) -> Decision:
    """Move the alias ``champion`` of ``version``'s model to it when :func:`champion_decision` says so;
    the reason goes to the tag ``champion_decision`` of the version and of its run."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client, name = MlflowClient(), version.name
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None
    other = champion is not None and str(champion.version) != str(version.version)
    decision = champion_decision(new, stored_test_draws(champion.run_id) if other else None, version.version,
                                 champion.version if champion is not None else None)
    if decision.move:
        client.set_registered_model_alias(name, CHAMPION, version.version)
    client.set_model_version_tag(name, version.version, DECISION_TAG, decision.reason)
    if version.run_id:
        client.set_tag(version.run_id, DECISION_TAG, decision.reason)
    log.info("%s: %s", name, decision.reason)
    return decision

