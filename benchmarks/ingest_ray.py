"""Ingest throughput on Ray versus the local pool, and a model of the full Waymo v1 training set.

    ./dev.sh python benchmarks/ingest_ray.py [--source DIR] [--trips 60] [--frames 100]

Converts the default synthetic input (``conf/base/parameters_ingest.yml``: 60 raw
segments of 100 frames, FRONT 960x640 plus FRONT_LEFT, written to a temporary folder
unless ``--source`` names a folder of them) with the default ingest settings (640x640,
every 10th frame, 2 workers), each run from cold and ``force=True``:

* the local pool (the default: the caller plus a spawned helper when the work
  outweighs its start-up);
* Ray embedded on 1 and on 2 local CPUs (``ray_address="local"``: ``ray.init`` and
  the TensorFlow import of every Ray worker are inside the timed run);
* a two-node local Ray cluster (``ray start``, 1 CPU per node, on loopback addresses;
  its start is timed apart, the run through its address includes connecting).

It prints segments per hour of each, the cold-start cost of embedded Ray against the
pool, and then a model for sizing a cluster for the Waymo v1 training set (798
segments of about 1 GB, ~200 frames at 10 Hz, FRONT 1920x1280) from measured costs:
reading and checking record bytes, parsing a frame of real size, and converting one
1920x1280 FRONT JPEG (decode, resize to 640x640, encode) through the ingest code.
The machine may be shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from urban_detection.waymo import executor, ingest  # noqa: E402
from urban_detection.waymo import frame_proto as fp  # noqa: E402
from urban_detection.waymo.synthetic import write_synthetic_trips  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ray_cluster import LocalRayCluster, addresses_as_given  # noqa: E402  - the tests' local Ray cluster

SIZE, STRIDE, WORKERS = (640, 640), 10, 2  # the defaults of conf/base/parameters_ingest.yml
WAYMO_SEGMENTS, WAYMO_SEGMENT_BYTES, WAYMO_FRAMES = 798, 1.0e9, 200


def timed_ingest(paths, out: Path, **kwargs) -> dict:
    """One cold ``ingest_files`` run: wall seconds, segments/h, per-segment conversion seconds."""
    t0 = time.perf_counter()
    res = ingest.ingest_files(paths, out, size=SIZE, stride=STRIDE, force=True, progress=False, **kwargs)
    wall = time.perf_counter() - t0
    conv = [t.seconds for t in res.trips]
    return {
        "wall": wall,
        "seg_h": len(paths) / wall * 3600,
        "frames": res.report["frames_written"],
        "conv_median": statistics.median(conv),
        "conv_sum": sum(conv),
        "processes": len({t.pid for t in res.trips}),
    }


def ray_start_seconds(workers: int) -> float:
    """Embedded Ray up and one trivial task done on each CPU (no TensorFlow import): Ray's own start."""
    t0 = time.perf_counter()
    tasks = [executor.Task(i, ()) for i in range(workers)]
    list(executor.run_tasks(os.getpid, tasks, workers=workers, ray_address=executor.EMBEDDED_RAY))
    return time.perf_counter() - t0


def read_rate(paths) -> float:
    """Bytes per second of reading and CRC-checking records (what unselected frames cost)."""
    t0, n = time.perf_counter(), 0
    for path in paths:
        for _, data in ingest.iter_records(path):
            n += len(data) + 16
    return n / (time.perf_counter() - t0)


def frame_cost(root: Path, width: int, height: int, frames: int = 8) -> float:
    """Seconds to convert one selected frame (parse, decode, resize to 640x640, encode) at a FRONT size."""
    [seg] = write_synthetic_trips(root / f"f{width}", 1, frames, width=width, height=height, seed=1,
                                  cameras=("FRONT",))
    ingest.convert_trip(seg, root / f"f{width}_warm.tfrecord", size=SIZE, stride=1)  # warm-up
    best = float("inf")
    for k in range(3):
        r = ingest.convert_trip(seg, root / f"f{width}_{k}.tfrecord", size=SIZE, stride=1)
        best = min(best, r.seconds / r.frames_written)
    return best


def segment_cost(path: Path, out: Path) -> float:
    """Seconds to convert one segment with the default settings in this process (best of 3)."""
    ingest.convert_trip(path, out / "warm.tfrecord", size=SIZE, stride=STRIDE)
    return min(ingest.convert_trip(path, out / f"{k}.tfrecord", size=SIZE, stride=STRIDE).seconds for k in range(3))


def parse_rate(frame_bytes: int = int(WAYMO_SEGMENT_BYTES / WAYMO_FRAMES)) -> float:
    """Bytes per second of parsing a Frame proto of real size (camera images and lidar as bytes fields)."""
    f = fp.Frame(timestamp_micros=1)
    per = frame_bytes // 5
    for cam in ("FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT"):
        f.images.add(name=fp.camera_id(cam), image=os.urandom(per))
    data = f.SerializeToString()
    t0, n = time.perf_counter(), 20
    for _ in range(n):
        fp.Frame.FromString(data)
    return len(data) * n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, help="folder of synthetic raw segments (default: generate them)")
    ap.add_argument("--trips", type=int, default=60)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--storage-gbps", type=float, default=1.0, help="read bandwidth of the shared storage (GB/s)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="ingest_ray_") as tmp:
        tmp = Path(tmp)
        if args.source:
            paths = sorted(args.source.glob("*.tfrecord"))
        else:
            t0 = time.perf_counter()
            paths = write_synthetic_trips(tmp / "raw", args.trips, args.frames, width=960, height=640, seed=7,
                                          workers=2)
            print(f"synthetic: {len(paths)} segments x {args.frames} frames in {time.perf_counter() - t0:.0f} s")
        seg_bytes = statistics.mean(p.stat().st_size for p in paths)
        frames_per_seg = args.frames
        print(f"input: {len(paths)} segments, {seg_bytes / 1e6:.1f} MB each, {frames_per_seg} frames, "
              f"stride {STRIDE}, output {SIZE[1]}x{SIZE[0]}, {WORKERS} workers; {os.cpu_count()} CPUs")

        runs: dict[str, dict] = {}
        runs["pool"] = timed_ingest(paths, tmp / "pool", workers=WORKERS)
        print(f"pool: {runs['pool']['wall']:.1f} s", flush=True)
        runs["ray1"] = timed_ingest(paths, tmp / "ray1", workers=1, ray_address=executor.EMBEDDED_RAY)
        print(f"embedded Ray, 1 CPU: {runs['ray1']['wall']:.1f} s", flush=True)
        runs["ray2"] = timed_ingest(paths, tmp / "ray2", workers=2, ray_address=executor.EMBEDDED_RAY)
        print(f"embedded Ray, 2 CPUs: {runs['ray2']['wall']:.1f} s", flush=True)
        cluster = LocalRayCluster(tmp / "cluster", nodes=2, cpus_per_node=1)
        try:
            t0 = time.perf_counter()
            cluster.start()
            cluster_start = time.perf_counter() - t0
            with addresses_as_given():
                runs["cluster"] = timed_ingest(paths, tmp / "cluster_out", workers=2, ray_address=cluster.address)
        finally:
            left = cluster.stop()
        ray_start = ray_start_seconds(2)
        load = os.getloadavg()[0]

        names = {
            "pool": "local pool (default), 2 workers",
            "ray1": "embedded Ray, 1 CPU",
            "ray2": "embedded Ray, 2 CPUs",
            "cluster": "2-node local Ray cluster, 1+1 CPU",
        }
        pool = runs["pool"]
        print(f"\n{'run':36s} {'wall s':>7s} {'segments/h':>11s} {'vs pool':>8s} {'conv s/seg':>11s} {'procs':>5s}")
        for key, r in runs.items():
            print(f"{names[key]:36s} {r['wall']:7.1f} {r['seg_h']:11.0f} {pool['wall'] / r['wall']:8.2f} "
                  f"{r['conv_median']:11.2f} {r['processes']:5d}")
        print(f"cold start of embedded Ray (2 CPUs) vs the pool on this input: "
              f"{runs['ray2']['wall'] - pool['wall']:+.1f} s ({runs['ray2']['wall'] / pool['wall']:.2f}x the pool's "
              f"wall time); Ray's own start (ray.init + a trivial task per CPU, no TensorFlow): {ray_start:.1f} s")
        print(f"2-node cluster start (ray start, head + worker): {cluster_start:.1f} s, not in its run; "
              f"processes left after stopping it: {len(left)}")
        print(f"load average during the runs: {load:.1f} on {os.cpu_count()} CPUs")

        # ---------------------------------------------------------------- model
        rate = read_rate(paths[:10])
        parse = parse_rate()
        c960, c1920 = frame_cost(tmp / "fc", 960, 640), frame_cost(tmp / "fc", 1920, 1280)
        t_syn = segment_cost(paths[0], tmp / "seg")
        selected = -(-frames_per_seg // STRIDE)
        fixed = max(0.0, t_syn - seg_bytes / rate - selected * c960)  # open, sniff, writer, stamps, index rows
        cluster_run = runs["cluster"]
        cold = max(0.0, cluster_run["wall"] - cluster_run["conv_sum"] / 2)  # connect + TF import per worker
        print(f"\nmeasured costs (best of 3, one process): a synthetic segment {t_syn:.3f} s = "
              f"{seg_bytes / rate:.3f} s reading {seg_bytes / 1e6:.1f} MB (read+CRC {rate / 1e6:.0f} MB/s, page cache) "
              f"+ {selected} x {c960 * 1000:.1f} ms per kept 960x640 frame + {fixed:.3f} s per segment; "
              f"a kept 1920x1280 frame {c1920 * 1000:.1f} ms; Frame parse {parse / 1e6:.0f} MB/s; "
              f"cluster cold start {cold:.1f} s")
        w_sel = -(-WAYMO_FRAMES // STRIDE)
        w_frame_bytes = WAYMO_SEGMENT_BYTES / WAYMO_FRAMES
        t_seg = fixed + WAYMO_SEGMENT_BYTES / rate + w_sel * (w_frame_bytes / parse + c1920)
        per_worker_h = 3600 / t_seg
        bw = args.storage_gbps * 1e9
        print(f"\nWaymo v1 training set model: {WAYMO_SEGMENTS} segments x {WAYMO_SEGMENT_BYTES / 1e9:.0f} GB, "
              f"{WAYMO_FRAMES} frames, FRONT 1920x1280, stride {STRIDE} -> {w_sel} frames kept per segment")
        print(f"  one segment on one worker (1 CPU, data in cache): {t_seg:.2f} s = "
              f"{WAYMO_SEGMENT_BYTES / rate:.2f} s reading + {w_sel * w_frame_bytes / parse:.2f} s parsing + "
              f"{w_sel * c1920:.2f} s converting kept frames + {fixed:.2f} s per segment "
              f"-> {per_worker_h:.0f} segments/h per worker")
        print(f"  {'workers':>8s} {'segments/h':>11s} {'hours (CPU)':>12s} {'reads GB/s':>11s} "
              f"{f'hours at {args.storage_gbps:g} GB/s':>18s}")
        for n in (1, 2, 8, 32, 128):
            cpu_h = (-(-WAYMO_SEGMENTS // n) * t_seg + cold) / 3600
            io_h = WAYMO_SEGMENTS * WAYMO_SEGMENT_BYTES / bw / 3600
            print(f"  {n:8d} {per_worker_h * n:11.0f} {cpu_h:12.2f} {n * WAYMO_SEGMENT_BYTES / t_seg / 1e9:11.2f} "
                  f"{max(cpu_h, io_h):18.2f}")
        print(f"  reading 1 GB per segment dominates: from {max(1, round(bw / WAYMO_SEGMENT_BYTES * t_seg))} "
              f"worker(s) on, the storage ({args.storage_gbps:g} GB/s, --storage-gbps) and not the CPUs sets the time")

if __name__ == "__main__":
    main()
