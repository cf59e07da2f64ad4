"""Benchmark: quality of the default experiment over training seeds, as mean ± sd.

For each seed, ``kedro run --pipelines=train,evaluate --params train.settings.train.seed=S`` in
a project folder (default: this one). The data (synthetic trips, split, evaluation frames) stay
the same; only training's randomness (initialisation, shuffling, augmentation) changes. Each
seed is a new model (its fingerprint differs); a seed already trained with the same config and
data is reused, not retrained. Prints test and val mAP and mAP@.50IOU and per-class AP and AP50
for each seed, then mean ± sd (sample sd, n-1) over the seeds.

``--set`` measures a recipe change (a lever) the same way: ``--set train.ema_decay=0.99`` adds
``train.settings.train.ema_decay=0.99`` to every seed's ``--params``.

    ./dev.sh python benchmarks/quality_seeds.py [--project-dir DIR] [--seeds 0 1 2] [--set KEY=VALUE ...]
        [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("vehicle", "pedestrian", "cyclist")
SHOWN = {"mAP": "DetectionBoxes_Precision/mAP", "mAP@.50IOU": "DetectionBoxes_Precision/mAP@.50IOU",
         **{f"AP {c}": f"DetectionBoxes_PerformanceByCategory/mAP/{c}" for c in CLASSES},
         **{f"AP50 {c}": f"DetectionBoxes_PerformanceByCategory/mAP@.50IOU/{c}" for c in CLASSES}}


def run_seed(project: Path, seed: int, settings: list[str] = ()) -> tuple[dict, float]:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    if (project / "src" / "urban_detection").is_dir():
        env["PYTHONPATH"] = str(project / "src")
    start = time.perf_counter()
    label = re.sub(r"[^\w.=-]", "_", "_".join(settings))  # a value may hold '/' (a metric name)
    log = project / f"quality_seed_{seed}{'_' + label if label else ''}.log"
    params = ",".join([f"train.settings.train.seed={seed}", *(f"train.settings.{s}" for s in settings)])
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "kedro", "run", "--pipelines=train,evaluate",
                               "--params", params],
                              cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"seed {seed}: kedro run failed (exit {done.returncode}); log: {log}")
    name = yaml.safe_load((project / "conf/base/parameters_train.yml").read_text())["train"]["experiments"][0]
    doc = json.loads((project / "data" / "08_reporting" / name / "metrics.json").read_text())
    return doc, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project-dir", type=Path, default=ROOT)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--set", dest="settings", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help="a recipe change (lever) for every seed, as train.settings: train.ema_decay=0.99")
    args = ap.parse_args()
    project = args.project_dir.resolve()
    rows: dict[int, dict] = {}
    for seed in args.seeds:
        doc, seconds = run_seed(project, seed, args.settings)
        rows[seed] = {"model": doc["fingerprint"][:12], "step": doc["step"], "seconds": seconds,
                      "splits": {s: {"frames": d["frames"], **{k: d["metrics"].get(m) for k, m in SHOWN.items()}}
                                 for s, d in doc["splits"].items()}}
        test = rows[seed]["splits"]["test"]
        print(f"seed {seed}: model {rows[seed]['model']} (best step {doc['step']}), {seconds:.0f} s; test "
              f"{test['frames']} frames: mAP {test['mAP']:.4f}, mAP@.50IOU {test['mAP@.50IOU']:.4f}", flush=True)
    summary = {}
    for split in ("test", "val"):
        frames = {r["splits"][split]["frames"] for r in rows.values() if split in r["splits"]}
        print(f"\n{split} ({', '.join(map(str, sorted(frames)))} frames), {len(rows)} seeds {args.seeds}"
              f"{', with ' + ' '.join(args.settings) if args.settings else ''}:")
        print(f"  {'metric':22s} {'mean':>8s} {'sd':>8s}  per seed")
        for key in SHOWN:
            values = np.array([r["splits"][split][key] for r in rows.values()
                               if split in r["splits"] and r["splits"][split][key] is not None], float)
            if not len(values):
                continue
            sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
            summary[f"{split}/{key}"] = {"mean": float(values.mean()), "sd": sd, "values": values.tolist()}
            print(f"  {key:22s} {values.mean():8.4f} {sd:8.4f}  " + " ".join(f"{v:.4f}" for v in values))
    if args.json:
        args.json.write_text(json.dumps({"seeds": rows, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
