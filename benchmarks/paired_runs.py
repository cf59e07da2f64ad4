"""Benchmark helper: paired trip-bootstrap differences between finished runs of one experiment.

Recipe changes (levers) are measured by training the same experiment in copies of one project
with a setting changed (``quality_seeds.py --set ...``). Their evaluations score the same trips
with the same bootstrap draws (same ``evaluate.bootstrap`` seed and count), so the per-draw
differences give a paired 95% interval, as the evaluate pipeline's comparison report does for
experiments of one run. This script checks that the runs scored the same trips with the same
draws, then prints each run's point values and its difference from the first run (the reference)
with the interval and the verdict.

    ./dev.sh python benchmarks/paired_runs.py REFERENCE_PROJECT OTHER_PROJECT... [--experiment fast_cpu]
        [--split test] [--label NAME ...]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from urban_detection.detection.intervals import format_interval, paired_differences, percentile_interval

SHOWN = ("DetectionBoxes_Precision/mAP@.50IOU", "DetectionBoxes_Precision/mAP",
         "DetectionBoxes_Precision/mAP@.75IOU", "DetectionBoxes_Recall/AR@100")


def load(project: Path, experiment: str, split: str) -> tuple[dict, dict, pd.DataFrame]:
    """The run's metrics.json, its split's bootstrap record, and the split's whole-split draws."""
    folder = project / "data" / "08_reporting" / experiment
    doc = json.loads((folder / "metrics.json").read_text())
    boot = doc["splits"][split].get("bootstrap")
    if not boot:
        raise SystemExit(f"{folder / 'metrics.json'}: no bootstrap for split {split!r} (evaluate.bootstrap.draws: 0?)")
    draws = pd.read_parquet(folder / "bootstrap_draws.parquet")
    draws = draws[(draws["split"] == split) & (draws["slice"].fillna("all") == "all")].sort_values("draw")
    recorded = (boot.get("intervals") or {}).get(SHOWN[0]) or {}
    low, high = percentile_interval(draws[SHOWN[0]].to_numpy(float), float(boot.get("level", 0.95)))
    if not recorded or abs(recorded["low"] - low) > 1e-9 or abs(recorded["high"] - high) > 1e-9:
        raise SystemExit(f"{folder}: bootstrap_draws.parquet does not give the interval metrics.json records "
                         f"({low:.4f}, {high:.4f} against {recorded}): its evaluation is still running, or the "
                         "files come from different runs")
    return doc, boot, draws


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("projects", type=Path, nargs="+", help="finished projects; the first is the reference")
    ap.add_argument("--experiment", default="fast_cpu")
    ap.add_argument("--split", default="test")
    ap.add_argument("--label", nargs="*", default=None, help="a name per project (default: the folder name)")
    args = ap.parse_args()
    labels = args.label or [p.name for p in args.projects]
    if len(labels) != len(args.projects):
        raise SystemExit("give one --label per project")
    runs = [load(p.resolve(), args.experiment, args.split) for p in args.projects]
    ref_doc, ref_boot, ref_draws = runs[0]
    for label, (doc, boot, draws) in zip(labels, runs):
        same = (boot["trips"] == ref_boot["trips"] and boot["draws"] == ref_boot["draws"]
                and boot["seed"] == ref_boot["seed"] and len(draws) == len(ref_draws))
        if not same:
            raise SystemExit(f"{label}: not the same trips and bootstrap draws as {labels[0]}: no paired comparison")
    print(f"{args.experiment}, {args.split}: {len(ref_boot['trips'])} trips, {ref_boot['draws']} paired draws "
          f"(seed {ref_boot['seed']}); reference {labels[0]}")
    for label, (doc, boot, draws) in zip(labels, runs):
        print(f"\n{label}: model {doc['fingerprint'][:12]} (step {doc['step']})")
        point = {m: doc["splits"][args.split]["metrics"].get(m) for m in SHOWN}
        ref_point = {m: ref_doc["splits"][args.split]["metrics"].get(m) for m in SHOWN}
        diffs = paired_differences({m: draws[m].to_numpy(float) for m in SHOWN},
                                   {m: ref_draws[m].to_numpy(float) for m in SHOWN}, point, ref_point)
        for m in SHOWN:
            low, high = percentile_interval(draws[m].to_numpy(float))
            line = f"  {m.split('/')[-1]:12s} {format_interval(point[m], low, high)}"
            if label != labels[0]:
                d = diffs[m]
                line += f"   difference {format_interval(d['difference'], d['low'], d['high'])} {d['verdict']}"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
