"""The README's experiment commands (``train.experiments``, ``train.settings``), as typed, through the
real command line, in README order in a tiny project of their own (see ``readme_commands.py``)."""
from __future__ import annotations

from pathlib import Path

import pytest
from readme_commands import readme_project, run_commands, run_in_order

pytestmark = pytest.mark.slow
STUDY = ["baseline", "augmentations_rad_loss", "augmentations_small_lr", "augmentations_adam",
         "augmentations2_small_lr", "augs3"]
CPU_STUDY = ["cpu_baseline", "cpu_rad_loss", "cpu_small_lr", "cpu_adam", "cpu_augs2_small_lr", "cpu_augs3"]


def test_every_readme_experiment_command_runs(tmp_path):
    commands = run_commands(experiments=True)
    assert any("train.experiments=study" in c for c in commands)  # the six seed experiments
    with readme_project(tmp_path) as project:
        run_in_order(project, commands)
        models = project / "data/06_models"
        assert all((models / name / "model/model.json").is_file() for name in STUDY)
        assert (project / "data/08_reporting/videos/baseline.mp4").is_file()  # train,evaluate,render of baseline
        # the study on 2 CPU cores: trained and compared, with the paired verdicts against cpu_baseline
        assert any("train.experiments=cpu_study" in c for c in commands)
        assert all((models / name / "model/model.json").is_file() for name in CPU_STUDY)
        comparison = (project / "data/08_reporting/comparison/comparison.md").read_text()
        assert "reference for the paired comparisons: cpu_baseline" in comparison
        assert all(name in comparison for name in CPU_STUDY)
