"""Project commands of ``kedro``: kedro-mlflow's ``kedro mlflow`` group, with ``ui`` opening on training runs.

Kedro reads this module's ``cli`` group before its plugins' (see Kedro's "add or modify CLI
commands"), so ``kedro mlflow init`` and ``modelify`` stay kedro-mlflow's, and ``kedro mlflow
ui`` serves the SQLite store with :mod:`urban_detection.mlflow_ui`'s app.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
from kedro.framework.cli.project import run  # noqa: F401  (`python -m urban_detection` runs Kedro's own `run`)
from kedro_mlflow.framework.cli.cli import mlflow_commands as kedro_mlflow_group


@click.group(name="urban_detection")
def cli():
    """Project commands."""


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
    sys.exit(subprocess.call([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host,
                              "--port", port, "--app-name", APP_NAME]))
