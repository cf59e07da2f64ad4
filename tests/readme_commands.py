"""Helpers of the README-commands tests (``test_readme_*.py``): the ``kedro`` commands of the README's code
blocks, a tiny project to run them in, the real command line, servers until they answer.

The tests run every command as typed. The ``kedro run`` commands are in two groups, each run in README
order in its own tiny project so that two test workers share them: the data and Quick start commands
(``test_readme_commands.py``) and the experiment commands (``train.experiments`` / ``train.settings``,
``test_readme_experiments.py``). Each project's ``conf/local/parameters.yml`` holds tiny sizes
(as a user's laptop set-up would). ``kedro run`` commands run through Kedro's own CLI
object (Click parses them exactly as in a shell), servers (``kedro viz run``, ``kedro mlflow ui``,
``kedro jupyter ...``) in a subprocess with a free port added, until they answer HTTP. The example
folders the README names are made here with small synthetic data: ``../shared/data/
waymo_processed_sample`` (processed tf.Examples), ``/data/waymo/v2/training`` (Waymo v2 Parquet,
given to the command under a temporary folder instead) and the predict examples ``media/photos``
and ``media/drive.mp4``. A command needing several hosts or a
Ray cluster (``TF_CONFIG``, ``train.ray_address``) is parsed only (``tests/detection/test_multiworker.py``
runs multi-worker training for real, ``tests/test_cluster_training.py`` the study command's run on a
two-node Ray cluster with tiny sizes).
"""
from __future__ import annotations

import contextlib
import copy
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml

from kedro_project import REPO, TINY_PARAMS, make_project
from server_helpers import free_port

README = REPO / "README.md"
SERVERS = {("viz", "run"): ["--no-browser", "--host", "127.0.0.1", "--port"],
           ("mlflow", "ui"): ["--host", "127.0.0.1", "--port"],
           ("jupyter", "lab"): ["--no-browser", "--ip", "127.0.0.1", "--IdentityProvider.token=", "--port"],
           ("jupyter", "notebook"): ["--no-browser", "--ip", "127.0.0.1", "--IdentityProvider.token=", "--port"]}
if os.geteuid() == 0:  # CI runs as root, which Jupyter refuses unless told
    for _key in (("jupyter", "lab"), ("jupyter", "notebook")):
        SERVERS[_key] = ["--allow-root", *SERVERS[_key]]
V2_EXAMPLE = "/data/waymo/v2/training"


def readme_commands() -> list[str]:
    """The ``kedro`` commands of the README's code blocks (``./dev.sh`` prefix and env assignments kept)."""
    commands, block = [], None
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            block = None if block is not None else []
            continue
        if block is None:
            continue
        if block and block[-1].endswith("\\"):
            block[-1] = block[-1][:-1] + " " + line.strip()
        else:
            block.append(line)
        if not line.endswith("\\") and "kedro " in block[-1]:
            words = shlex.split(block[-1], comments=True)
            program = [w for w in words if "=" not in w.split("/")[0] and w != "./dev.sh"][:1]
            if program == ["kedro"]:
                commands.append(block[-1].strip())
    return commands


def split_command(command: str) -> tuple[dict[str, str], list[str]]:
    """Environment assignments and the arguments after ``kedro``."""
    words = shlex.split(command, comments=True)
    env = {}
    while "=" in words[0]:
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if words[0] == "./dev.sh":
        words.pop(0)
    assert words[0] == "kedro", command
    return env, words[1:]


def kind(args: list[str], env: dict[str, str]) -> str:
    if "TF_CONFIG" in env or any("train.ray_address=" in a for a in args):  # needs hosts or a Ray cluster
        return "cluster"
    return "server" if tuple(args[:2]) in SERVERS else "run"


@contextlib.contextmanager
def readme_project(root: Path):
    """A tiny project in ``root/project`` (the working directory inside), with the README's example folders."""
    from urban_detection.waymo.ingest import ingest_files
    from urban_detection.waymo.synthetic import write_synthetic_trips

    project = make_project(root / "project")
    (project / "conf/local/parameters.yml").write_text(yaml.safe_dump(tiny_local_parameters()))
    segments = write_synthetic_trips(root / "raw", n_trips=6, frames_per_trip=8, width=160, height=96, seed=7,
                                     cameras=("FRONT",))
    ingest_files(segments, root / "shared/data/waymo_processed_sample", size=(96, 160), stride=2, workers=1)
    write_synthetic_trips(root / "v2", n_trips=6, frames_per_trip=8, width=160, height=96, seed=8,
                          cameras=("FRONT",), format="v2")
    write_media(project / "media")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        yield project


def write_media(folder: Path) -> None:
    """The README's predict examples: ``media/photos`` (three images) and ``media/drive.mp4`` (ten frames)."""
    import numpy as np
    from PIL import Image

    from urban_detection.detection.video import write_video

    rng = np.random.default_rng(0)
    (folder / "photos").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)).save(folder / "photos" / f"{i}.jpg")
    write_video([rng.integers(0, 256, (96, 160, 3), dtype=np.uint8) for _ in range(10)], folder / "drive.mp4")


def tiny_local_parameters() -> dict:
    """Tiny sizes for every run, and a one-step warm-up for each experiment with one (4 steps in all)."""
    tiny = copy.deepcopy(TINY_PARAMS)
    del tiny["train"]["settings"]["optimizer"]  # the seed experiments' schedules differ (cosine, manual steps)
    # an even smaller network: 200 steps in seconds (heads of 32: fast_cpu's GroupNorm has 32 groups)
    tiny["train"]["settings"]["model"]["overrides"] = {
        "encoder": {"stackwise_num_filters": [64, 16, 16, 16]}, "fpn_filters": 16, "head_filters": 32,
        "head_convs": 1}
    tiny["train"]["settings"]["train"].update(checkpoint_every=100, log_every=10)  # 200 steps: 2 checkpoints
    train = yaml.safe_load((REPO / "conf/base/parameters_train.yml").read_text())["train"]
    for where, config in [("base", train["base"]), *[(f"catalog.{k}", v) for k, v in train["catalog"].items()]]:
        if "warmup_steps" in ((config or {}).get("optimizer") or {}).get("schedule", {}):
            node = tiny["train"]
            for key in where.split("."):
                node = node.setdefault(key, {})
            node["optimizer"] = {"schedule": {"warmup_steps": 1}}
    return tiny


def run_cli(project: Path, args: list[str]) -> None:
    from click.testing import CliRunner
    from kedro.framework.cli.cli import KedroCLI

    args = [a.replace(V2_EXAMPLE, str(project.parent / "v2")) for a in args]
    try:
        result = CliRunner().invoke(KedroCLI(project_path=project), args)
    finally:  # a failed run leaves kedro-mlflow's run open; the next command must not log into it
        while mlflow.active_run() is not None:
            mlflow.end_run("FAILED")
    output = result.output + "".join(__import__("traceback").format_exception(result.exc_info[1])
                                     if result.exc_info and result.exit_code else [])
    assert result.exit_code == 0, f"`kedro {shlex.join(args)}` failed ({result.exit_code}):\n{output[-6000:]}"


def trip_names(project: Path) -> list[str]:
    import pandas as pd

    index = pd.read_parquet(project / "data/02_intermediate/trips/frame_index.parquet")
    return sorted(index["trip"].unique())


def serve_until_it_answers(project: Path, args: list[str], env: dict, log_path: Path, deadline: float = 180) -> None:
    """Start ``kedro <args> <port options>``; pass when it answers HTTP, fail fast with its log."""
    kedro = str(Path(sys.executable).with_name("kedro"))
    for attempt in range(3):  # another process may take the free port first: try another one
        port = free_port()
        command = [kedro, *args, *SERVERS[tuple(args[:2])], str(port)]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            end = time.monotonic() + deadline
            while time.monotonic() < end and proc.poll() is None:
                if answers(port):
                    return
                time.sleep(0.5)
        finally:
            stop(proc)
        text = log_path.read_text(errors="replace")
        if "in use" not in text.lower():
            break
    pytest.fail(f"`kedro {' '.join(args)}` did not answer on port {port} "
                f"(exit {proc.returncode}, attempt {attempt + 1}):\n{text[-5000:]}")


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as err:
        return err.code < 500
    except OSError:
        return False


def stop(proc: subprocess.Popen) -> None:
    """Stop the server and what it started (its own process group only)."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def is_experiment_command(args: list[str]) -> bool:
    """A ``kedro run`` that selects experiments or changes their settings (the second group)."""
    return any("train.experiments=" in a or "train.settings." in a for a in args)


def run_commands(experiments: bool) -> list[str]:
    """The README's ``kedro run`` commands of one group, in README order."""
    return [c for c in readme_commands() if kind(split_command(c)[1], split_command(c)[0]) == "run"
            and is_experiment_command(split_command(c)[1]) == experiments]


def run_in_order(project: Path, commands: list[str]) -> None:
    """Run ``commands`` through the CLI; after one naming a source folder, check the trips are its."""
    for command in commands:
        args = split_command(command)[1]
        start = time.monotonic()
        run_cli(project, args)
        print(f"{time.monotonic() - start:6.1f} s  kedro {shlex.join(args)}")  # shown with -s
        source = next((a.split("ingest.source_dir=")[1].split(",")[0] for a in args if "source_dir=" in a), None)
        if source:  # the trips are the example folder's, converted now
            folder = project.parent / "v2/camera_image" if source == V2_EXAMPLE else project / source
            sources = sorted(p.stem for p in folder.iterdir() if p.suffix in (".tfrecord", ".parquet"))
            assert trip_names(project) == sources, command
