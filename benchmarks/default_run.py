"""Benchmark: wall time of the default ``kedro run`` (the Quick start) at a baseline commit and at
the current one, one after the other in one run of this script, each from an empty ``data/``.

Each side is a ``git archive`` of its commit in a temporary folder (``HEAD`` for the current
side: commit first), run as ``kedro run`` with that tree's ``src/`` first on ``PYTHONPATH`` and
the project's ``.venv`` (both sides must install with the same dependencies). Prints each wall
time, the ratio current / baseline, where each run's time went (the slowest nodes, from the timing
hook's table in its log) and each run's evaluation trips, frames and quality (with the 95%
trip-bootstrap interval of mAP@.50IOU where the run computed one).

    ./dev.sh python benchmarks/default_run.py --baseline 8c52ec9 [--current HEAD] [--keep DIR]

``--keep DIR`` keeps the current side's project (data, MLflow store) in DIR for the other
benchmarks (quality_seeds.py, peer_yolo.py --project-dir DIR).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP, MAP50 = "DetectionBoxes_Precision/mAP", "DetectionBoxes_Precision/mAP@.50IOU"


def checkout(rev: str, dest: Path) -> str:
    """The tree of ``rev`` in ``dest`` (no .git); returns the full commit id."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev], check=True, capture_output=True,
                            text=True).stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return commit


def run_default(project: Path, log_file: Path) -> float:
    """``kedro run`` in ``project`` with its own ``src`` imported; returns the wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "KEDRO_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "1"}
    start = time.perf_counter()
    with log_file.open("w") as log:
        done = subprocess.run([sys.executable, "-m", "kedro", "run"], cwd=project, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"kedro run failed in {project} (exit {done.returncode}); log: {log_file}")
    return seconds


def where_the_time_went(log_file: Path) -> list[str]:
    """The timing hook's table at the end of a run's log (the slowest nodes, their seconds and shares)."""
    lines = log_file.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if line.rstrip().endswith("where the time went:")]
    if not starts:
        return []
    table = []
    for line in lines[starts[-1] + 1:]:
        if not line.strip() or line[:4].isdigit():  # the next log record (it starts with the date)
            break
        table.append(line)
    return table


def quality(project: Path) -> dict:
    """Trips, frames, headline numbers and (when the run made them) their 95% trip-bootstrap intervals
    from every experiment's metrics.json."""
    out = {}
    for file in sorted((project / "data" / "08_reporting").glob("*/metrics.json")):
        doc = json.loads(file.read_text())
        out[doc.get("experiment", file.parent.name)] = {
            split: {"trips": s.get("trips"), "frames": s.get("frames"), "mAP": s["metrics"].get(MAP),
                    "mAP@.50IOU": s["metrics"].get(MAP50),
                    "mAP@.50IOU ci95": [((s.get("bootstrap") or {}).get("intervals") or {}).get(MAP50, {}).get(k)
                                        for k in ("low", "high")]}
            for split, s in (doc.get("splits") or {}).items()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="commit of the baseline side")
    ap.add_argument("--current", default="HEAD")
    ap.add_argument("--keep", type=Path, default=None, help="keep the current side's project here")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.keep is not None and args.keep.exists():
        raise SystemExit(f"--keep {args.keep} exists: give a new folder")
    temp = Path(tempfile.mkdtemp(prefix="default_run_"))
    results = {}
    try:
        for side, rev in (("baseline", args.baseline), ("current", args.current)):
            project = (args.keep if side == "current" and args.keep else temp / side).resolve()
            commit = checkout(rev, project)
            print(f"{side}: {commit[:10]} in {project}", flush=True)
            seconds = run_default(project, temp / f"{side}.log")
            results[side] = {"commit": commit, "seconds": seconds, "quality": quality(project),
                             "nodes": where_the_time_went(temp / f"{side}.log")}
            print(f"{side}: kedro run {seconds:.1f} s; {results[side]['quality']}", flush=True)
            print("\n".join(f"  {line}" for line in results[side]["nodes"]), flush=True)
            if side == "current" and args.keep:
                shutil.copy(temp / f"{side}.log", project / "default_run.log")
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    base, cur = results["baseline"]["seconds"], results["current"]["seconds"]
    print(f"\ndefault kedro run: baseline {base:.1f} s, current {cur:.1f} s, current/baseline {cur / base:.3f}")
    for side in ("baseline", "current"):
        for exp, splits in results[side]["quality"].items():
            for split, q in splits.items():
                low, high = q.get("mAP@.50IOU ci95") or (None, None)
                ci = f" [{low:.4f}, {high:.4f}] (width {high - low:.4f})" if low is not None else ""
                print(f"  {side:8s} {exp} {split}: {q.get('trips')} trips, {q['frames']} frames, mAP {q['mAP']:.4f}, "
                      f"mAP@.50IOU {q['mAP@.50IOU']:.4f}{ci}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
