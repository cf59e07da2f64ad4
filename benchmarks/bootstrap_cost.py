"""Benchmark: what the trip bootstrap adds to the evaluation, in one run of this script.

In a project where the default run has finished (a trained, current model: nothing is trained
here), runs ``kedro run --pipeline=evaluate`` twice, one after the other: first with
``evaluate.bootstrap.draws=0`` (no intervals, no paired comparisons, no slice intervals), then
with the configured bootstrap (1,000 draws by default). Prints each wall time, the ratio, and
each split's time breakdown from ``metrics.json`` (inference, COCO, bootstrap, losses). The
issue's target: at 1,000 draws the whole evaluation takes at most 2x its time without.

    ./dev.sh python benchmarks/bootstrap_cost.py --project-dir DIR [--experiment fast_cpu] [--draws 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def evaluate(project: Path, params: str) -> tuple[float, dict]:
    """One ``kedro run --pipeline=evaluate`` with ``params``; wall seconds and the experiment's timing."""
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kedro", "run", "--pipeline=evaluate", "--params", params],
                          cwd=project, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"kedro run --pipeline=evaluate --params {params!r} failed:\n{done.stdout[-3000:]}"
                         f"{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def timing(project: Path, experiment: str) -> dict:
    doc = json.loads((project / "data" / "08_reporting" / experiment / "metrics.json").read_text())
    return {split: s.get("timing") for split, s in (doc.get("splits") or {}).items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project-dir", type=Path, required=True)
    ap.add_argument("--experiment", default="fast_cpu")
    ap.add_argument("--draws", type=int, default=1000)
    args = ap.parse_args()
    project = args.project_dir.resolve()
    base = f"train.experiments={args.experiment}"
    results = {}
    for name, draws in (("without", 0), ("with", args.draws)):
        seconds, _ = evaluate(project, f"{base},evaluate.bootstrap.draws={draws}")
        results[name] = {"draws": draws, "seconds": seconds, "timing": timing(project, args.experiment)}
        print(f"evaluate pipeline, bootstrap draws {draws}: {seconds:.1f} s", flush=True)
        for split, t in results[name]["timing"].items():
            print("   " + split + ": " + ", ".join(f"{k} {v:.1f}" for k, v in (t or {}).items()
                                                  if isinstance(v, (int, float))), flush=True)
    ratio = results["with"]["seconds"] / results["without"]["seconds"]
    print(f"\nwhole evaluation with {args.draws} draws / without: {ratio:.2f} (target: at most 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
