"""The hooks read the session's parameters (conf envs and ``--params``) once."""
from __future__ import annotations

from pathlib import Path

from kedro_project import make_project

from urban_detection.hooks.params import session_parameters


def test_the_hooks_read_the_sessions_parameters_once(tmp_path: Path):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = make_project(tmp_path / "project")
    bootstrap_project(project)
    steps = {"train": {"settings": {"train": {"steps": 7}}}}
    with KedroSession.create(project_path=project, runtime_params=steps) as session:
        context = session.load_context()  # its after_context_created hooks read them
        first = session_parameters(context)
        assert first is session_parameters(context)  # the same dict: not parsed and merged again
        assert first == context.config_loader["parameters"]
        assert first["train"]["settings"]["train"]["steps"] == 7
    with KedroSession.create(project_path=project) as session:  # another session reads its own
        other = session_parameters(session.load_context())
    assert other is not first and other["train"].get("settings") != first["train"]["settings"]
