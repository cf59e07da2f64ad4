"""evaluate.reference naming an experiment the run does not train: its stored model is evaluated from the
catalog and the run's experiments are compared with it, through the real CLI (slow)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from kedro_project import make_project
from readme_commands import run_cli, tiny_local_parameters

pytestmark = pytest.mark.slow


def test_a_stored_model_is_the_reference_of_a_run_that_does_not_train_it(tmp_path, monkeypatch):
    project = make_project(tmp_path / "project")
    (project / "conf/local/parameters.yml").write_text(yaml.safe_dump(tiny_local_parameters()))
    monkeypatch.chdir(project)
    run_cli(project, ["run", "--pipeline=train", "--params", "train.experiments=fast_cpu+augmentations_adam"])
    stored = json.loads((project / "data/06_models/fast_cpu/model/model.json").read_text())

    run_cli(project, ["run", "--pipeline=evaluate", "--params",
                      "train.experiments=augmentations_adam,evaluate.reference=fast_cpu"])
    reference = json.loads((project / "data/08_reporting/fast_cpu/metrics.json").read_text())
    assert reference["stored_reference"] is True and reference["fingerprint"] == stored["provenance"]["fingerprint"]
    assert not (project / "data/06_models/fast_cpu/export").exists()  # evaluated, not exported again
    md = (project / "data/08_reporting/comparison/comparison.md").read_text()
    assert "fast_cpu (model " in md and "stored: not trained in this run" in md
    assert "## test: difference from fast_cpu (paired trip bootstrap)" in md
    table = pd.read_csv(project / "data/08_reporting/comparison/comparison.csv")
    row = table[(table.split == "test") & (table.metric == "DetectionBoxes_Precision/mAP@.50IOU")].iloc[0]
    assert row["augmentations_adam - fast_cpu"] == pytest.approx(row["augmentations_adam"] - row["fast_cpu"])
    assert row["augmentations_adam verdict"] in ("better", "worse", "not distinguishable")
