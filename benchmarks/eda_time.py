"""Time ``kedro run --pipeline=eda`` on a folder of trips (default: the shared real sample).

    ./dev.sh python benchmarks/eda_time.py
    ./dev.sh python benchmarks/eda_time.py --source ../shared/data/waymo_processed_sample --workdir /tmp/eda_bench --keep

Builds a throw-away copy of the project (conf + pyproject, nothing of data/ or mlflow.db),
ingests and splits the source there (not timed as EDA), then times the whole
``kedro run --pipeline=eda`` command as a user would run it: start-up, reading the frame
index, parsing every box of the trip TFRecords, decoding the gallery and brightness
frames, writing the PNG/CSV files and logging them to MLflow. Prints the time and
whether it met the budget (default 60 s, the target for the 640-frame real sample on
2 cores).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = PROJECT.parent / "shared" / "data" / "waymo_processed_sample"


def make_project_copy(workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PROJECT / "conf", workdir / "conf", ignore=shutil.ignore_patterns("local"), dirs_exist_ok=True)
    (workdir / "conf" / "local").mkdir(exist_ok=True)
    (workdir / "src").mkdir(exist_ok=True)  # the package itself comes from the installed project
    for name in ("pyproject.toml", ".telemetry"):
        if (PROJECT / name).exists():
            shutil.copy(PROJECT / name, workdir / name)
    return workdir


def kedro(workdir: Path, *args: str) -> tuple[float, str]:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    cmd = [str(Path(sys.executable).with_name("kedro")), "run", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return elapsed, proc.stdout + proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of *.tfrecord trips")
    ap.add_argument("--workdir", type=Path, default=None, help="project copy to use (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the project copy to look at the outputs")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds the EDA run should stay under")
    args = ap.parse_args()
    if not args.source.is_dir():
        raise SystemExit(f"{args.source} is not a folder")

    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            workdir = args.workdir
        elif args.keep:
            workdir = Path(tempfile.mkdtemp(prefix="eda_bench_"))
        else:  # a throw-away copy made here, removed with the temporary directory
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eda_bench_")))
        run(args, workdir)


def run(args: argparse.Namespace, workdir: Path) -> None:
    """Ingest and split in the project copy ``workdir``, then time the EDA run there."""
    make_project_copy(workdir)
    print(f"project copy: {workdir}  (cores available: {len(os.sched_getaffinity(0))})", flush=True)
    t_ingest, _ = kedro(workdir, "--pipelines=ingest,split", "--params", f"ingest.source_dir={args.source.resolve()}")
    frames = pd.read_parquet(workdir / "data/02_intermediate/trips/frame_index.parquet")
    print(f"ingest+split (not EDA): {t_ingest:.1f} s, {len(frames)} frames of {frames.trip.nunique()} trips",
          flush=True)

    t_eda, log = kedro(workdir, "--pipeline=eda")
    nodes = re.search(r"Pipeline execution completed successfully in ([0-9.]+) sec", log)
    out = workdir / "data/08_reporting/eda"
    counts = pd.read_csv(out / "class_counts.csv").groupby("class")["count"].sum()
    print(f"kedro run --pipeline=eda: {t_eda:.1f} s for {len(frames)} frames "
          f"({len(frames) / t_eda:.0f} frames/s end to end) -> "
          f"{'within' if t_eda < args.budget else 'OVER'} the {args.budget:g} s budget")
    print(f"  of which the pipeline's nodes: {nodes.group(1) if nodes else '?'} s (the rest is start-up: "
          f"imports, catalog, MLflow run); load average during the run: {os.getloadavg()[0]:.1f}")
    print("class totals over splits: " + ", ".join(f"{c} {int(counts.get(c, 0)):,}"
                                                   for c in ("vehicle", "pedestrian", "cyclist")))
    print(f"outputs: {out} ({len(list(out.iterdir()))} files)")


if __name__ == "__main__":
    main()
