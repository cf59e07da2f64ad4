"""Project commands of ``kedro``: ``run`` with a clear error for comma lists, and ``mlflow ui`` on training runs.

Kedro reads this module's ``cli`` group before its plugins' and its own (see Kedro's "add or
modify CLI commands"):

- ``kedro run`` is Kedro's own command, except that ``--params`` first rejects a list written
  ``key=[a,b]`` (Kedro splits ``--params`` on every comma, so it would fail with a cryptic
  message) with the form that works, ``train.experiments=a+b``;
- ``kedro mlflow init`` and ``modelify`` stay kedro-mlflow's, and ``kedro mlflow ui`` serves the
  SQLite store with :mod:`urban_detection.mlflow_ui`'s app.
"""
from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import click
from kedro.framework.cli.project import run as kedro_run
from kedro_mlflow.framework.cli.cli import mlflow_commands as kedro_mlflow_group

# `key=[a, b, ...]`: a list with a comma, which Kedro's --params parser splits apart
_COMMA_LIST = re.compile(r"(?:^|,)\s*([\w.]+)\s*=\s*\[([^\]]*,[^\]]*)\]")


def check_params_text(text: str) -> None:
    """Refuse ``key=[a,b]`` in a ``--params`` string with the form that works (``key=a+b``)."""
    match = _COMMA_LIST.search(text or "")
    if match is None:
        return
    key, items = match.group(1), [s.strip() for s in match.group(2).split(",") if s.strip()]
    if key.endswith("experiments"):
        joined = "+".join(items)
        hint = (f'--params "{key}={joined}" (names joined by "+"), or a group such as '
                f'"{key}=study" for the original study\'s six experiments')
    else:
        hint = f"conf/local/parameters.yml for {key}, or `kedro run --config <file>.yml` with the list in YAML"
    raise click.BadParameter(
        f"{key}=[{','.join(items)}]: Kedro splits --params on every comma, so a list cannot be written "
        f"with commas on the command line. Use {hint}.", param_hint="--params")


def _checking(parse):
    def callback(ctx: click.Context, param: click.Parameter, value):
        if isinstance(value, str):
            check_params_text(value)
        return parse(ctx, param, value)

    return callback


def _project_run() -> click.Command:
    """Kedro's ``run`` command with :func:`check_params_text` in front of its ``--params`` parser."""
    command = copy.copy(kedro_run)
    command.params = []
    for option in kedro_run.params:
        option = copy.copy(option)
        if option.name == "params":
            option.callback = _checking(option.callback)
        command.params.append(option)
    return command


run = _project_run()  # also what `python -m urban_detection` runs


@click.group(name="urban_detection")
def cli():
    """Project commands."""


cli.add_command(run, "run")


@cli.group(name="mlflow")
def mlflow_group():
    """kedro-mlflow's commands; ``ui`` opens on the training runs."""


for _name, _command in kedro_mlflow_group.commands.items():
    if _name != "ui":
        mlflow_group.add_command(_command, _name)


@mlflow_group.command()
@click.option("--env", "-e", default="local", help="The environment within conf folder we want to retrieve.")
@click.option("--port", "-p", default=None, help="The port to listen on")
@click.option("--host", "-h", default=None, help="The network address to listen on (default: 127.0.0.1)")
def ui(env: str, port: str | None, host: str | None):
    """The MLflow UI of the project's tracking store (mlflow.yml), opening on training runs."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from kedro.utils import find_kedro_project

    from urban_detection.mlflow_ui import APP_NAME

    project_path = find_kedro_project(Path.cwd()) or Path.cwd()
    bootstrap_project(project_path)
    with KedroSession.create(project_path=project_path, env=env) as session:
        config = session.load_context().mlflow
    uri = config.server.mlflow_tracking_uri
    host, port = host or config.ui.host, str(port or config.ui.port)
    if uri.startswith("http"):
        raise click.ClickException(f"the tracking store is a server ({uri}): open it in a browser")
    click.echo(f"MLflow UI of {uri} at http://{host}:{port} (training runs first)")
    # from the project root: the store's artifact locations are relative to it (urban_detection.mlflow_store)
    sys.exit(subprocess.call([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host,
                              "--port", port, "--app-name", APP_NAME], cwd=project_path))
