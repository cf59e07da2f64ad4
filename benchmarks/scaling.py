"""Benchmark: how ingest, evaluation and render costs grow with the number of frames.

Runs each stage on 1x, 4x and 10x the default evaluation data (24 val + 40 test synthetic
trips of 40 frames at 10 Hz, 960x640, kept every ``evaluate.frame_stride`` = 3rd frame: 896
frames), with one fixed trained model, each stage of each size in its own subprocess so that
its peak memory is its own:

* ``ingest``: the val/test raw segments converted at ``evaluate.frame_stride`` with
  ``ingest.workers`` processes, as the evaluate pipeline converts its frames
  (:func:`urban_detection.waymo.ingest.ingest_files`);
* ``predict``: the model's part of the evaluation, ``predict_split_and_losses`` (detections and
  losses from one forward pass) over val and test as ``evaluate_model`` calls it, at
  ``--model-sizes`` (default 0.25x and 1x: a model forward pass costs the same for every batch,
  and on 2 cores 10x would take most of an hour);
* ``evaluate``: :func:`urban_detection.pipelines.evaluate.nodes.evaluate_model` with
  ``conf/base/parameters_evaluate.yml`` on val and test (COCO, Waymo-style AP, the 1,000-draw
  trip bootstrap with its slices, confusion matrices, examples, error gallery), with the
  model's part taken out: the detections ``predict`` made at 1x, repeated over this size's
  trips (trip ``i`` gets the detections of 1x trip ``i mod n``, renamed), and no losses;
* ``render``: the render node's path (detect with the exported SavedModel, track, draw, encode
  H.264 as the frames come: ``render_video``) over every raw frame of 1, 4 and 10 test trips
  (1x = the default video of one trip, 40 frames), with ``conf/base/parameters_render.yml``;
  ``render_held`` (not run by default) keeps every drawn frame before writing them, as the
  render node did before.

For each stage and size it prints the work time per frame, wall and CPU (user + system of the
stage's processes; imports, model loading and data generation excluded), the subprocess's peak
RSS (``ru_maxrss``; for ingest the larger of the caller and its helper processes), the growth
exponent between successive sizes (log time ratio / log frame ratio: 1 = linear, of wall and of
CPU time) and the extrapolation to 40,000 frames (Waymo v1 validation, FRONT camera): the
largest size's time scaled by frames to the power max(1, last exponent); memory: the largest size's
peak extended by the least-squares slope of peak RSS over frames. A stage is flagged when its CPU
time grows faster than linearly (exponent above 1.15; CPU time, as wall time on a shared machine
follows the load) or its extrapolated peak RSS at 40,000 frames is more than 20% above the largest
measured.

The model: ``--model`` (a trained model folder, ``data/06_models/<experiment>/model``), else the
project's ``fast_cpu`` model when trained, else ``fast_cpu``'s architecture with random weights
(the detector keeps its 100 best boxes per frame at any quality, so the costs are the same).
Synthetic trips (the project's generator, ``parameters_ingest.yml``'s ``synthetic`` settings)
are written once into ``--workdir`` and reused by later runs (10x: 640 trips, 2.3 GB).

    ./dev.sh python benchmarks/scaling.py [--sizes 1,4,10] [--model DIR] [--workdir DIR] [--quick]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_FRAMES = 40_000  # Waymo v1 validation: 202 segments of about 200 FRONT frames
SUPER_LINEAR = 1.15  # time exponent above this: flagged (timing noise on a shared machine stays below)
MEMORY_GROWTH = 0.20  # peak RSS at 40,000 frames more than this share above the largest measured: flagged
FRAMES_PER_TRIP = 40
RESULT_TAG = "SCALING_RESULT "


# --------------------------------------------------------------------------- growth arithmetic


def growth_exponent(frames_a: float, seconds_a: float, frames_b: float, seconds_b: float) -> float:
    """``log(seconds_b / seconds_a) / log(frames_b / frames_a)``: 1 linear, 2 quadratic, below 1 a fixed part."""
    if frames_a <= 0 or frames_b <= 0 or frames_a == frames_b or seconds_a <= 0 or seconds_b <= 0:
        return float("nan")
    return math.log(seconds_b / seconds_a) / math.log(frames_b / frames_a)


def extrapolate_seconds(frames: float, seconds: float, exponent: float, target: float = TARGET_FRAMES) -> float:
    """Time at ``target`` frames from the time at ``frames``: scaled by the frame ratio to the power
    ``max(1, exponent)`` (a sub-linear exponent only reflects fixed costs, which do not repeat)."""
    power = 1.0 if not math.isfinite(exponent) else max(1.0, exponent)
    return seconds * (target / frames) ** power


def extrapolate_memory(points: list[tuple[float, float]], target: float = TARGET_FRAMES) -> float:
    """Peak memory at ``target`` frames from ``(frames, peak)`` points: the largest size's peak plus the
    least-squares slope of all points (never negative: memory does not shrink with more frames) times the
    frames to go."""
    points = sorted(points)
    if len(points) < 2:
        return points[-1][1]
    mean_f = sum(f for f, _ in points) / len(points)
    mean_p = sum(p for _, p in points) / len(points)
    slope = (sum((f - mean_f) * (p - mean_p) for f, p in points) / sum((f - mean_f) ** 2 for f, _ in points))
    return points[-1][1] + max(0.0, slope) * (target - points[-1][0])


def flags(rows: list[dict]) -> list[str]:
    """Why a stage's rows (one per size, ascending) are not linear in time and bounded in memory."""
    out = []
    exps = [r["cpu_exponent"] for r in rows[1:] if math.isfinite(r.get("cpu_exponent", float("nan")))]
    if exps and exps[-1] > SUPER_LINEAR:
        out.append(f"CPU time grows faster than linearly (exponent {exps[-1]:.2f})")
    peaks = [r["peak_rss_mb"] for r in rows]
    at_target = extrapolate_memory([(r["frames"], r["peak_rss_mb"]) for r in rows])
    if at_target > max(peaks) * (1 + MEMORY_GROWTH):
        out.append(f"peak memory grows with frames ({' -> '.join(f'{p:.0f}' for p in peaks)} MB; "
                   f"{at_target / 1024:.1f} GB at {TARGET_FRAMES:,} frames)")
    return out


# --------------------------------------------------------------------------- data and model


def ensure_raw_trips(workdir: Path, n_trips: int, workers: int) -> tuple[list[Path], float]:
    """At least ``n_trips`` synthetic raw segments (default data settings) in ``workdir/raw``, in trip
    order; returns their paths and the seconds spent writing new ones."""
    from urban_detection.waymo.synthetic import write_synthetic_trips

    synth = load_params()["synthetic"]
    raw = workdir / "raw"
    listing = raw / "trips.json"
    settings = {"seed": synth["seed"], "frames_per_trip": FRAMES_PER_TRIP, "width": synth["width"],
                "height": synth["height"]}
    names: list[str] = []
    if listing.is_file():
        doc = json.loads(listing.read_text())
        if all(doc.get(k) == v for k, v in settings.items()):
            names = [n for n in doc["paths"] if (raw / n).is_file()]
    seconds = 0.0
    if len(names) < n_trips:
        raw.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        new = write_synthetic_trips(raw, n_trips - len(names), FRAMES_PER_TRIP, width=settings["width"],
                                    height=settings["height"], seed=settings["seed"], first_trip=len(names),
                                    workers=workers)
        seconds = time.perf_counter() - start
        names += [p.name for p in new]
        listing.write_text(json.dumps({**settings, "paths": names}))
    return [raw / n for n in names[:n_trips]], seconds


def load_params() -> dict:
    """Every ``conf/base/parameters_*.yml`` merged, interpolations resolved."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.merge(*[OmegaConf.load(p) for p in sorted((ROOT / "conf" / "base").glob("parameters_*.yml"))])
    return OmegaConf.to_container(cfg, resolve=True)


def load_model(model_dir: str | None):
    """The fixed model (a TrainedDetector) and what it is."""
    from urban_detection.detection.trained import TrainedDetector, load_trained

    folder = Path(model_dir) if model_dir else ROOT / "data" / "06_models" / "fast_cpu" / "model"
    if (folder / "model.json").is_file():
        trained = load_trained(folder)
        return trained, f"{trained.name} trained model ({folder}, step {trained.step})"
    if model_dir:
        raise SystemExit(f"--model {model_dir}: no trained model there (model.json missing)")
    from urban_detection.detection.model import build_detector

    spec = load_params()["train"]["catalog"]["fast_cpu"]["model"]
    model = build_detector(spec["arch"], image_size=int(spec["image_size"]))
    config = {"name": "fast_cpu", "model": spec, "train": {}}
    return (TrainedDetector(model=model, config=config, provenance={"fingerprint": "random"}, step=0),
            f"{spec['arch']} at {spec['image_size']} px with random weights (no trained fast_cpu model)")


def manifest_of(index, val_trips: int):
    """A split manifest of the ingested trips: the first ``val_trips`` (in generation order) val, the rest test."""
    import pandas as pd

    info = index.groupby("trip", sort=False)[["time_of_day", "weather"]].first().reset_index()
    info["split"] = ["val" if i < val_trips else "test" for i in range(len(info))]
    return pd.DataFrame(info[["trip", "split", "time_of_day", "weather"]])


# --------------------------------------------------------------------------- stages (in subprocesses)


def stage_ingest(spec: dict) -> dict:
    from urban_detection.waymo.ingest import ingest_files

    params = load_params()
    ing, ev = params["ingest"], params["evaluate"]
    width, height = ing["image_size"]
    out = Path(spec["out"])
    start, cpu = time.perf_counter(), cpu_seconds()
    result = ingest_files([Path(p) for p in spec["raw"]], out, workers=int(ing["workers"]), camera=ing["camera"],
                          size=(int(height), int(width)), stride=int(ev["frame_stride"]), force=True, progress=False)
    index = result.index_frame()
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    order = {Path(p).stem: i for i, p in enumerate(spec["raw"])}
    index = index.assign(_order=index["trip"].map(order)).sort_values(["_order", "frame"]).drop(columns="_order")
    index.reset_index(drop=True).to_parquet(out / "frame_index.parquet")
    return {"frames": int(len(index)), "seconds": seconds, "cpu_seconds": cpu}


def split_records(spec: dict):
    """The ingested trips in ``spec["out"]`` (a ``Trips``) and their split manifest."""
    import pandas as pd

    from urban_detection.waymo.trips import Trips

    index = pd.read_parquet(Path(spec["out"]) / "frame_index.parquet")
    return Trips(root=Path(spec["out"]), index=index), manifest_of(index, spec["val_trips"])


def stage_predict(spec: dict) -> dict:
    """The model's part of the evaluation: :func:`~urban_detection.detection.predict.predict_split_and_losses`
    over each split, as ``evaluate_model`` calls it; the records are kept in ``spec["records"]`` for ``evaluate``."""
    import pickle

    from urban_detection.detection.predict import predict_split_and_losses

    params = load_params()["evaluate"]
    trained, _ = load_model(spec["model"])
    trips, manifest = split_records(spec)
    baseline = rss_mb()
    start, cpu = time.perf_counter(), cpu_seconds()
    loss_kwargs = {k: v for k, v in (trained.config.get("train") or {}).items()
                   if k in ("focal_alpha", "focal_gamma", "smooth_l1_beta")}
    records = {split: predict_split_and_losses(trained.model, trips.split_paths(manifest, split), trained.image_size,
                                               int(params["batch_size"]), **loss_kwargs)[:2]
               for split in params["splits"]}
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    Path(spec["records"]).write_bytes(pickle.dumps(records))
    return {"frames": sum(len(gt) for gt, _ in records.values()), "seconds": seconds, "cpu_seconds": cpu,
            "baseline_rss_mb": baseline}


def tiled_records(records: tuple[list, list], paths: list[str]) -> tuple[list, list]:
    """The records of a small split's trips repeated over ``paths`` (the trips of a larger split, same frame
    numbers): trip ``i`` gets the records of trip ``i mod n`` renamed to it, image ids renumbered."""
    gt, det = records
    by_trip: dict[str, list[int]] = {}
    for i, frame in enumerate(gt):
        by_trip.setdefault(str(frame["path"]), []).append(i)
    small = list(by_trip.values())
    out_gt, out_det = [], []
    for t, path in enumerate(paths):
        name = Path(path).stem
        for i in small[t % len(small)]:
            image_id = len(out_gt) + 1
            source = f"{name}/{str(gt[i]['source_id']).rsplit('/', 1)[-1]}"
            out_gt.append({**gt[i], "image_id": image_id, "source_id": source, "path": path})
            out_det.append({**det[i], "image_id": image_id, "source_id": source})
    return out_gt, out_det


def stage_evaluate(spec: dict) -> dict:
    """``evaluate_model`` as the evaluate pipeline runs it, with the model's part (inference and losses,
    measured by ``predict``) replaced by the detections ``predict`` made at ``spec["records"]``'s size (the
    largest model size not above this one), repeated over this size's trips: what is left is the scoring
    (COCO, Waymo-style AP, bootstrap, slices, confusion matrices, examples, error gallery)."""
    import pickle
    import matplotlib.pyplot as plt

    from urban_detection.detection import predict
    from urban_detection.pipelines.evaluate.nodes import evaluate_model

    params = load_params()["evaluate"]
    trained, _ = load_model(spec["model"])
    trips, manifest = split_records(spec)
    small = pickle.loads(Path(spec["records"]).read_bytes())
    paths = {split: trips.split_paths(manifest, split) for split in params["splits"]}
    by_paths = {tuple(paths[split]): tiled_records(small.pop(split), paths[split]) for split in params["splits"]}
    losses = {m: 0.0 for m in ("loss/classification", "loss/localization", "loss/regularization", "loss/total")}
    predict.predict_split_and_losses = lambda model, paths, *a, **k: (*by_paths[tuple(str(p) for p in paths)], losses)
    baseline = rss_mb()
    start, cpu = time.perf_counter(), cpu_seconds()
    doc, _files, _figures, _tables = evaluate_model(trained, trips, manifest, params)
    plt.close("all")
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    parts: dict[str, float] = {}
    for split in doc["splits"].values():
        for key in ("coco_s", "bootstrap_s"):
            parts[key] = parts.get(key, 0.0) + float(split["timing"].get(key) or 0.0)
    frames = sum(int(s["frames"]) for s in doc["splits"].values())
    return {"frames": frames, "seconds": seconds, "cpu_seconds": cpu, "baseline_rss_mb": baseline, "parts": parts}


def stage_render(spec: dict, held: bool = False) -> dict:
    """``held``: the render path before frames were encoded as they come (every drawn frame kept in a
    list, then written), for comparison: stage ``render_held``."""
    import itertools
    import tempfile

    from urban_detection.detection.export import load_exported
    from urban_detection.detection.render import iter_camera_frames, render_frames, render_video
    from urban_detection.detection.video import write_video

    params = load_params()["render"]
    detector = load_exported(spec["export"])
    box_filter = params.get("large_box_filter") or {}
    frames = itertools.chain.from_iterable(
        itertools.islice(iter_camera_frames(p, params["camera"], params.get("max_side")), spec["render_frames"])
        for p in spec["render_trips"])
    baseline = rss_mb()
    start, cpu = time.perf_counter(), cpu_seconds()
    kwargs = dict(score_threshold=float(params["score_threshold"]), tracking=bool(params["tracking"]),
                  tracker_kwargs=dict(params.get("tracker") or {}), batch_size=int(params["batch_size"]),
                  image_size=int(spec["image_size"]),
                  max_area_frac=dict(box_filter.get("max_area_frac") or {}) if box_filter.get("enabled") else None)
    with tempfile.TemporaryDirectory() as tmp:
        if held:
            drawn, info = render_frames(detector, frames, **kwargs)
            write_video(drawn, Path(tmp) / "render.mp4", fps=float(params["fps"]))
        else:  # as the render node: encoded frame by frame as they are drawn
            info = render_video(detector, frames, Path(tmp) / "render.mp4", fps=float(params["fps"]), **kwargs)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"frames": int(info["frames"]), "seconds": seconds, "cpu_seconds": cpu, "baseline_rss_mb": baseline,
            "parts": {"inference_s": info["inference_seconds"]}}


STAGES = {"ingest": stage_ingest, "predict": stage_predict, "evaluate": stage_evaluate, "render": stage_render,
          "render_held": lambda spec: stage_render(spec, held=True)}


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished children so far."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def rss_mb() -> float:
    """The current resident set size of this process, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_stage_here(name: str, spec: dict) -> None:
    """The child side: run one stage and print its result (with the process's peak RSS) as JSON."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    out = STAGES[name](spec)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    helpers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out.update(peak_rss_mb=max(own, helpers), own_peak_rss_mb=own, helper_peak_rss_mb=helpers)
    print(RESULT_TAG + json.dumps(out), flush=True)


def run_stage(name: str, spec: dict) -> dict:
    """One stage in a fresh Python process (same interpreter and environment); its result."""
    done = subprocess.run([sys.executable, __file__, "--stage", name, "--spec", json.dumps(spec)],
                          capture_output=True, text=True, env=os.environ.copy())
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if done.returncode or not lines:
        raise SystemExit(f"stage {name} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return json.loads(lines[-1][len(RESULT_TAG):])


# --------------------------------------------------------------------------- driver


def export_once(workdir: Path, model_dir: str | None) -> tuple[str, int, str]:
    """The fixed model exported (SavedModel) into ``workdir/export``; its path, image size, description."""
    from urban_detection.detection.export import export_model

    trained, what = load_model(model_dir)
    files = export_model(trained.model, workdir / "export", image_size=trained.image_size)
    return str(files["saved_model"]), trained.image_size, what


def table(results: dict[str, list[dict]]) -> list[str]:
    lines = [f"{'stage':11} {'size':>5} {'frames':>6} {'wall s':>7} {'ms/frame':>8} {'CPU ms/frame':>12} "
             f"{'peak RSS MB':>11} {'exp wall':>8} {'exp CPU':>7}   40,000 frames: wall h, CPU h, peak RSS GB"]
    for stage, rows in results.items():
        for i, r in enumerate(rows):
            extra = ""
            if i == len(rows) - 1:
                extra = (f"{r['at_target_s'] / 3600:6.2f}, {r['at_target_cpu_s'] / 3600:6.2f}, "
                         f"{r['at_target_rss_mb'] / 1024:5.2f}")
            exps = f"{r['exponent']:8.2f} {r['cpu_exponent']:7.2f}" if i else f"{'':8} {'':7}"
            lines.append(f"{stage:11} {r['size']:>4g}x {r['frames']:6d} {r['seconds']:7.1f} "
                         f"{1000 * r['seconds'] / r['frames']:8.1f} {1000 * r['cpu_seconds'] / r['frames']:12.1f} "
                         f"{r['peak_rss_mb']:11.0f} {exps}   {extra}")
    return lines


def summarise(results: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Exponents and 40,000-frame extrapolations into the rows; the flags of each stage."""
    for rows in results.values():
        for prev, r in zip(rows, rows[1:]):
            r["exponent"] = growth_exponent(prev["frames"], prev["seconds"], r["frames"], r["seconds"])
            r["cpu_exponent"] = growth_exponent(prev["frames"], prev["cpu_seconds"], r["frames"], r["cpu_seconds"])
        last = rows[-1]
        last["at_target_s"] = extrapolate_seconds(last["frames"], last["seconds"], last.get("exponent", math.nan))
        last["at_target_cpu_s"] = extrapolate_seconds(last["frames"], last["cpu_seconds"],
                                                      last.get("cpu_exponent", math.nan))
        last["at_target_rss_mb"] = extrapolate_memory([(r["frames"], r["peak_rss_mb"]) for r in rows])
    return {stage: flags(rows) for stage, rows in results.items()}


def report(results: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Print the table and each stage's verdict; returns the flags."""
    bad = summarise(results)
    print()
    print("\n".join(table(results)))
    print("\n(exp: log time ratio / log frame ratio to the previous size, of wall and of CPU time; 40,000 frames: "
          "the largest size's time scaled by frames^max(1, exp); peak RSS extended by its least-squares slope "
          "over frames)")
    for stage, why in bad.items():
        print(f"{stage}: " + ("; ".join(why) if why else "linear in time, memory bounded"))
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,4,10", help="multiples of the default val/test frames")
    ap.add_argument("--model-sizes", default="0.25,1",
                    help="sizes at which the model runs (predict); evaluate at other sizes repeats the detections "
                         "of 1x (or the largest of these below it)")
    ap.add_argument("--stages", default="ingest,predict,evaluate,render",
                    help="of ingest, predict, evaluate, render and render_held (render keeping every drawn frame, "
                         "as before they were encoded as they come)")
    ap.add_argument("--model", default=None, help="a trained model folder (data/06_models/<experiment>/model)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/urban_detection_scaling"),
                    help="synthetic trips (kept for later runs), ingested trips, export")
    ap.add_argument("--quick", action="store_true",
                    help="smoke size: 3 val + 5 test trips per unit, 16 rendered frames per trip, sizes 1,2, model 1 "
                         "(checks that every stage runs; fixed costs dominate, too small to judge growth)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--table", type=Path, nargs="+", default=None,
                    help="print the table of earlier runs' --json files (stages of later files replace earlier)")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        run_stage_here(args.stage, json.loads(args.spec))
        return 0
    if args.table:
        results = {}
        for file in args.table:
            results.update(json.loads(file.read_text())["results"])
        report(results)
        return 0

    import logging

    logging.basicConfig(level=logging.WARNING)
    params = load_params()
    synth, ratios = params["synthetic"], params["split"]["ratios"]
    val_unit, test_unit = round(synth["trips"] * ratios["val"]), round(synth["trips"] * ratios["test"])  # 24, 40
    render_frames = FRAMES_PER_TRIP
    sizes = [float(s) for s in args.sizes.split(",")]
    model_sizes = [float(s) for s in args.model_sizes.split(",")]
    if args.quick:
        val_unit, test_unit, render_frames = 3, 5, 16
        sizes = [1.0, 2.0] if args.sizes == "1,4,10" else sizes
        model_sizes = [1.0] if args.model_sizes == "0.25,1" else model_sizes
    stages = [s for s in args.stages.split(",") if s]
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    need = round(max(sizes + model_sizes) * (val_unit + test_unit))
    raw, synth_s = ensure_raw_trips(workdir, need, int(synth["workers"]))
    export, image_size, what = export_once(workdir, args.model)
    print(f"model: {what}, input {image_size} px; synthetic trips: {need} of {FRAMES_PER_TRIP} frames"
          + (f" (written now in {synth_s:.0f} s)" if synth_s else " (reused)")
          + f"; 1x = {val_unit} val + {test_unit} test trips at frame stride {params['evaluate']['frame_stride']}, "
          f"render 1x = one trip of {render_frames} frames; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

    results: dict[str, list[dict]] = {s: [] for s in stages}
    for size in sorted(set(sizes + model_sizes)):
        n_val, n_test = max(1, round(size * val_unit)), max(1, round(size * test_unit))
        out = workdir / f"eval_trips_{size:g}x"
        source = max([m for m in model_sizes if m <= size] or [min(model_sizes)])
        spec = {"raw": [str(p) for p in raw[:n_val + n_test]], "out": str(out), "model": args.model,
                "val_trips": n_val, "export": export, "image_size": image_size,
                "records": str(workdir / f"records_{source:g}x.pkl"),
                "render_trips": [str(p) for p in raw[n_val:n_val + max(1, round(size))]],
                "render_frames": render_frames}
        todo = [s for s in stages if (s == "ingest" and (size in sizes or "predict" in stages))
                or (size in model_sizes if s == "predict" else size in sizes)]
        for stage in todo:
            if stage == "predict":
                spec["records"] = str(workdir / f"records_{size:g}x.pkl")
            r = run_stage(stage, spec)
            r["size"] = size
            results[stage].append(r)
            parts = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in (r.get("parts") or {}).items())
            print(f"{stage:9} {size:g}x: {r['frames']} frames in {r['seconds']:.1f} s "
                  f"({1000 * r['seconds'] / r['frames']:.1f} ms/frame; CPU {r['cpu_seconds']:.1f} s), "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB"
                  + (f" (helpers {r['helper_peak_rss_mb']:.0f} MB)" if stage == "ingest" else "")
                  + (f"; {parts}" if parts else "") + f"; load average {os.getloadavg()[0]:.1f}", flush=True)

    results = {s: rows for s, rows in results.items() if rows}
    bad = report(results)
    if args.quick:
        print("(--quick: fixed costs dominate at these sizes; the exponents and extrapolations say nothing here)")
    if args.json:
        args.json.write_text(json.dumps({"sizes": sizes, "model_sizes": model_sizes, "results": results,
                                         "flags": bad}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
