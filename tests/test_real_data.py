"""The whole default run on the shared sample of real processed Waymo trips (skips when absent).

Besides the outputs, one learning check: the training loss falls over the run's steps."""
from __future__ import annotations

import json
from pathlib import Path
from statistics import mean

import pytest

from kedro_project import REAL_SAMPLE, TINY_PARAMS, run_kedro

LEARN_STEPS = 60  # the loss falls clearly on the real frames well before this (about 0.1 s a step)
LOSS_WINDOW = 10  # logged steps (every step) averaged at the start and at the end of training

pytestmark = [pytest.mark.slow, pytest.mark.real_data,
              pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason=f"{REAL_SAMPLE} is absent")]


def test_kedro_run_on_real_processed_trips_end_to_end(tiny_project: Path):
    params = json.loads(json.dumps(TINY_PARAMS))
    params["ingest"] = {"source_dir": str(REAL_SAMPLE), "image_size": [640, 640], "workers": 2}
    params["train"]["experiments"] = ["fast_cpu"]
    params["train"]["settings"]["train"].update(steps=LEARN_STEPS, log_every=1, checkpoint_every=LEARN_STEPS // 2)
    params["render"] = {"fps": 2, "max_frames": 6}
    run_kedro(tiny_project, ["__default__"], params)
    data = tiny_project / "data"

    ingest = json.loads((data / "08_reporting/ingest_report.json").read_text())
    assert ingest["trips"] == 32 and ingest["frames_written"] == 640
    assert ingest["time_of_day_estimated_trips"] == 32  # processed files carry no time of day
    split = json.loads((data / "08_reporting/split_report.json").read_text())
    assert sum(s["time_of_day_estimated_trips"] for s in split["splits"].values()) == 32
    times = {t for s in split["splits"].values() for t in s["time_of_day"]}
    assert "unknown" not in times and len(times) >= 2  # stratified on the estimate, not randomly
    conditions = (data / "08_reporting/eda/class_counts_by_condition.csv").read_text()
    assert "(estimated)" in conditions

    from urban_detection.detection.trained import load_trained

    model = load_trained(data / "06_models/fast_cpu/model")
    assert model.provenance["train_trips"] == len(split["splits"]["train"]["trips"])
    losses = [h["loss/total"] for h in model.summary["history"]]  # the training record, logged every step
    assert len(losses) == LEARN_STEPS
    first, last = mean(losses[:LOSS_WINDOW]), mean(losses[-LOSS_WINDOW:])
    assert last < 0.75 * first, f"the training loss did not fall: {first:.3f} -> {last:.3f} ({losses})"
    metrics = json.loads((data / "08_reporting/fast_cpu/metrics.json").read_text())
    assert metrics["fingerprint"] == model.fingerprint
    assert metrics["splits"]["test"]["frames"] == split["splits"]["test"]["frames"]
    assert "Waymo2D/mAP" in metrics["splits"]["test"]["metrics"]
    figures = {p.name for p in (data / "08_reporting/fast_cpu/evaluation").iterdir()}
    assert {"results.png", "confusion_test.png", "pr_curves_test.png"} <= figures
    comparison = (data / "08_reporting/comparison/comparison.md").read_text()
    assert "fast_cpu" in comparison and "Waymo2D" in comparison
    info = json.loads((data / "08_reporting/fast_cpu/render_info.json").read_text())
    assert info["source"] == "trip_tfrecord" and info["fps"] == 2 and info["frames"] == 6
    assert "played at 2 frames/s" in info["note"]
    assert (data / "08_reporting/videos/fast_cpu.mp4").stat().st_size > 10_000
