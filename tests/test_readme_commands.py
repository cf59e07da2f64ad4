"""Every ``kedro`` command of the README's code blocks, as typed, through the real command line: the
Quick start and data commands, the servers and the multi-host command (the experiment commands are in
``test_readme_experiments.py``; the helpers, and how the commands are run, in ``readme_commands.py``)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from readme_commands import (
    REPO,
    kind,
    readme_commands,
    readme_project,
    run_commands,
    run_in_order,
    serve_until_it_answers,
    split_command,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    with readme_project(tmp_path_factory.mktemp("readme")) as project:
        yield project


def test_the_readme_commands_are_found():
    commands = readme_commands()
    args = [split_command(c)[1] for c in commands]
    assert ["run"] in args  # the Quick start
    assert any("train.experiments=study" in a for a in args)  # the six seed experiments
    assert {kind(a, e) for e, a in map(split_command, commands)} == {"run", "server", "cluster"}
    runs = [c for c in commands if kind(split_command(c)[1], split_command(c)[0]) == "run"]
    assert sorted(run_commands(False) + run_commands(True)) == sorted(runs)  # the two groups hold every run
    assert len(run_commands(False)) >= 4 and len(run_commands(True)) >= 5


def test_every_readme_data_command_runs(project: Path):
    commands = run_commands(experiments=False)
    run_in_order(project, commands)
    assert ["run"] in [split_command(c)[1] for c in commands]
    assert (project / "data/06_models/fast_cpu/model/model.json").is_file()  # the Quick start's training
    assert (project / "data/08_reporting/ingest_report.json").is_file()
    summary = (project / "data/08_reporting/fast_cpu/predict_summary.json").read_text()
    assert '"kind": "waymo_v2"' in summary and '"frames": 48' in summary  # every frame of the 6 v2 segments


def test_every_readme_server_command_answers(project: Path, tmp_path):
    servers = [split_command(c)[1] for c in readme_commands() if kind(split_command(c)[1], {}) == "server"]
    assert len(servers) == 4, servers
    env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp_path / "jupyter"), "JUPYTER_CONFIG_DIR": str(tmp_path / "jc"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "jr"), "IPYTHONDIR": str(tmp_path / "ipython")}
    for args in servers:
        serve_until_it_answers(project, args, env, tmp_path / f"{'_'.join(args[:2])}.log")


def test_the_commands_for_several_hosts_or_a_ray_cluster_parse():
    import click
    from kedro.framework.cli.cli import KedroCLI

    cluster = [split_command(c) for c in readme_commands() if kind(split_command(c)[1], split_command(c)[0]) == "cluster"]
    cli = KedroCLI(project_path=REPO)
    parsed = []
    for env, args in cluster:
        command = cli.get_command(click.Context(cli), args[0])
        options = command.make_context(args[0], args[1:]).params
        parsed.append((env, options))
    tf_config = [p for e, p in parsed if "TF_CONFIG" in e]
    assert tf_config
    for options in tf_config:
        assert options["params"]["train"]["experiments"] == "baseline"
        assert options["params"]["train"]["settings"]["train"]["strategy"] == "multi_worker_mirrored"
    # the study on a Ray cluster: the six experiments, each a Ray job, run concurrently by Kedro's ThreadRunner
    study = [p for e, p in parsed if "TF_CONFIG" not in e]
    assert study
    for options in study:
        assert options["params"]["train"]["experiments"] == "study"
        assert options["params"]["train"]["ray_address"] == "auto"
        assert options["runner"] == "ThreadRunner" and options["pipeline"] == "train"
