"""Per-stage wall time and test metrics of a full `kedro run` on a folder of real processed trips.

    ./dev.sh python benchmarks/real_data_run.py [--source ../shared/data/waymo_processed_sample] [--steps N]

Runs the project's pipelines one after the other (ingest, split, eda, train, evaluate, render)
in a throw-away copy of the project (conf/ and pyproject.toml; data/ starts empty), each in
its own Kedro session with `ingest.source_dir=<source>`, as `kedro run` would, then prints
the wall time of each stage and the default experiment's test metrics (COCO and Waymo-style).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "split", "eda", "train", "evaluate", "render")
HEADLINE = ("DetectionBoxes_Precision/mAP", "DetectionBoxes_Precision/mAP@.50IOU",
            "DetectionBoxes_Precision/mAP@.75IOU", "DetectionBoxes_Recall/AR@100", "Waymo2D/mAP",
            "Waymo2D/AP@.70IOU/vehicle", "Waymo2D/AP@.50IOU/pedestrian", "Waymo2D/AP@.50IOU/cyclist")


def project_copy(dest: Path) -> Path:
    shutil.copytree(REPO / "conf", dest / "conf", ignore=shutil.ignore_patterns("local"))
    (dest / "conf" / "local").mkdir()
    (dest / "src").mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(REPO / name, dest / name)
    return dest


def run(project: Path, pipeline: str, params: dict) -> float:
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    configure_project("urban_detection")
    start = time.perf_counter()
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(pipeline_names=[pipeline])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(REPO.parent / "shared/data/waymo_processed_sample"))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the experiment's)")
    parser.add_argument("--experiment", default="fast_cpu")
    args = parser.parse_args()
    params: dict = {"ingest": {"source_dir": str(Path(args.source).resolve())},
                    "train": {"experiments": [args.experiment]}}
    if args.steps:
        params["train"]["settings"] = {"train": {"steps": args.steps}}
    with tempfile.TemporaryDirectory(prefix="real_run_") as tmp:
        import os

        project = project_copy(Path(tmp))
        os.chdir(project)
        times = {stage: run(project, stage, params) for stage in STAGES}
        data = project / "data"
        ingest = json.loads((data / "08_reporting/ingest_report.json").read_text())
        metrics = json.loads((data / f"08_reporting/{args.experiment}/metrics.json").read_text())
        render = json.loads((data / f"08_reporting/{args.experiment}/render_info.json").read_text())
    print(f"\nsource: {args.source}: {ingest['trips']} trips, {ingest['frames_written']} frames, "
          f"objects {ingest['objects_written']}, skipped {ingest['skipped']}")
    print(f"{'stage':<10} {'wall s':>8}")
    for stage, seconds in times.items():
        print(f"{stage:<10} {seconds:8.1f}")
    print(f"{'total':<10} {sum(times.values()):8.1f}")
    print(f"\n{args.experiment}, step {metrics['step']}, model {metrics['fingerprint'][:12]}")
    for split, doc in metrics["splits"].items():
        print(f"{split} ({doc['frames']} frames, {doc['trips']} trips):")
        for key in HEADLINE:
            value = doc["metrics"].get(key)
            print(f"  {key:<40} {'n/a' if value is None else f'{value:.4f}'}")
    print(f"\nvideo: {render['frames']} frames of {render['trip']} ({render['source']}) at {render['fps']} frames/s")


if __name__ == "__main__":
    main()
