"""MultiWorkerMirroredStrategy for real: two worker processes on 127.0.0.1 train, checkpoint and resume together,
and the chief exports the best checkpoint by val COCO, as one worker would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from server_helpers import free_ports
from toy_records import square_records

from urban_detection.detection.checkpoint_eval import load_frames, val_coco_metrics
from urban_detection.detection.model import build_detector, checkpoint_key, load_initial_weights

pytestmark = pytest.mark.slow

SIZE = 64
SCRIPT = Path(__file__).with_name("multiworker_main.py")
TIMEOUT = 300  # seconds per run of both workers (start-up of TensorFlow included)
BASE = {
    "arch": "retinanet_resnet18_fpn_small", "image_size": SIZE, "global_batch": 2, "seed": 3, "checkpoint_every": 2,
    "overrides": {"encoder": {"stackwise_num_filters": [64, 32, 32, 32]}, "fpn_filters": 16, "head_filters": 16,
                  "head_convs": 1},
    "optimizer": {"type": "adam", "learning_rate": 1e-3}, "best_metric": "DetectionBoxes_Precision/mAP@.50IOU",
}




def _run_cluster(tmp: Path, run: str, records: Path, steps: int, validate: bool = True) -> list[dict]:
    """Start both workers, wait (bounded) for both, return their results; kill both on any failure."""
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs, logs = [], []
    try:
        for index in range(2):
            root = tmp / f"worker{index}"  # each worker its own folder, as on two hosts without a shared disk
            cfg = {**BASE, "name": f"{index}", "records": [str(records)], "steps": steps, "validate": validate,
                   "checkpoint_dir": str(root / "checkpoints"), "out": str(tmp / f"{run}_{index}")}
            cfg_path = tmp / f"{run}_{index}.config.json"
            cfg_path.write_text(json.dumps(cfg))
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2",
                   "KERAS_BACKEND": "tensorflow",
                   "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
            logs.append(open(tmp / f"{run}_{index}.log", "w"))
            procs.append(subprocess.Popen([sys.executable, str(SCRIPT), str(cfg_path)], env=env, cwd=tmp,
                                          stdout=logs[-1], stderr=subprocess.STDOUT))
        deadline = time.monotonic() + TIMEOUT
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{run}: the workers did not finish within {TIMEOUT}s\n{_tails(tmp, run)}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        for f in logs:
            f.close()
    codes = [p.returncode for p in procs]
    assert codes == [0, 0], f"{run}: worker exit codes {codes}\n{_tails(tmp, run)}"
    return [{**json.loads((tmp / f"{run}_{i}.json").read_text()), "values": dict(np.load(tmp / f"{run}_{i}.npz"))}
            for i in range(2)]


def _tails(tmp: Path, run: str) -> str:
    return "\n".join(f"--- worker {i} ---\n" + "\n".join((tmp / f"{run}_{i}.log").read_text().splitlines()[-40:])
                     for i in range(2) if (tmp / f"{run}_{i}.log").exists())


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and any(k.endswith("moving_mean") for k in a)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _checkpoint_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith("ckpt-") or p.name == "checkpoint")


def _assert_checkpoint_holds(prefix: str, values: dict) -> None:
    reader = tf.train.load_checkpoint(prefix)
    for key, value in values.items():
        if key.startswith("weights/"):
            np.testing.assert_array_equal(reader.get_tensor(checkpoint_key(key[len("weights/"):])), value,
                                          err_msg=key)


def _one_worker_val(prefix: Path, records: Path, metric: str) -> float:
    """``metric`` of the checkpoint ``prefix`` on the val frames, scored in this (one-worker) process."""
    model = build_detector(BASE["arch"], SIZE, **BASE["overrides"])
    load_initial_weights(model, str(prefix))
    return val_coco_metrics(model, load_frames([str(records)], SIZE), SIZE)[metric]


def test_two_workers_train_checkpoint_on_chief_and_resume(tmp_path):
    records = square_records(tmp_path / "toy.tfrecord", SIZE)
    chief_dir, other_dir = tmp_path / "worker0" / "checkpoints", tmp_path / "worker1" / "checkpoints"

    first = _run_cluster(tmp_path, "first", records, steps=4)
    chief, other = first
    assert [w["is_chief"] for w in first] == [True, False] == [w["is_chief_helper"] for w in first]
    assert all(w["replicas"] == 2 and w["start_step"] == 0 and w["step"] == 4 for w in first)
    assert chief["log_steps"] == other["log_steps"] == [1, 2, 3, 4]
    assert chief["losses"] == other["losses"] and np.all(np.isfinite(chief["losses"]))  # global (reduced) losses
    _assert_identical(chief["values"], other["values"])  # weights, BatchNorm statistics, optimizer state
    # only the chief keeps checkpoints; the other worker's temporary copies are gone
    assert chief["last_checkpoint"].endswith("ckpt-4") and other["last_checkpoint"] is None
    assert [c["path"] for c in other["checkpoints"]] == [None, None]
    assert [c["step"] for c in chief["checkpoints"]] == [2, 4]
    assert _checkpoint_files(chief_dir) == ["checkpoint", *sorted(
        f"ckpt-{s}.{ext}" for s in (2, 4) for ext in ("data-00000-of-00001", "index"))]
    assert _checkpoint_files(tmp_path / "worker1") == [] and not list(other_dir.glob("workertemp_*"))
    # validation ran on both (same weights, same numbers) without waiting for each other
    assert chief["val_losses"] == other["val_losses"] and len(chief["val_losses"]) == 2
    _assert_checkpoint_holds(chief["last_checkpoint"], chief["values"])  # the averaged BatchNorm statistics too
    assert (tmp_path / "worker0" / "final.weights.h5").is_file()
    assert not (tmp_path / "worker1" / "final.weights.h5").exists()
    # the chief judged every checkpoint by val COCO (on a copy of the model) and exported the best step
    metric = BASE["best_metric"]
    judged = {h["step"]: h[metric] for h in chief["val_history"]}
    assert sorted(judged) == [2, 4] and all(np.isfinite(v) for v in judged.values())
    assert all(metric not in h for h in other["val_history"])
    for step, value in judged.items():  # the numbers one worker gets from the same weights
        assert value == pytest.approx(_one_worker_val(chief_dir / f"ckpt-{step}", records, metric), abs=1e-9)
    best = max(sorted(judged), key=judged.get)  # the first of equal values, as BestCheckpoint keeps it
    assert chief["exported_step"] == chief["best"]["best_step"] == best
    exported = dict(np.load(tmp_path / "first_0_exported.npz"))
    _assert_checkpoint_holds(str(chief_dir / f"ckpt-{best}"), exported)
    if best != chief["step"]:  # not the last weights
        assert any(not np.array_equal(exported[k], chief["values"][k]) for k in exported)

    # again with more steps: both resume from the chief's checkpoint (worker 1 has none of its own)
    second = _run_cluster(tmp_path, "second", records, steps=6, validate=False)
    chief, other = second
    assert all(w["start_step"] == 4 and w["step"] == 6 for w in second)
    assert chief["log_steps"] == other["log_steps"] == [5, 6]
    assert chief["losses"] == other["losses"]
    _assert_identical(chief["values"], other["values"])
    iterations = [v for k, v in chief["values"].items() if k.startswith("optimizer/") and k.endswith("/iteration")]
    assert [int(v) for v in iterations] == [6]  # the optimizer continued from the restored state
    assert chief["last_checkpoint"].endswith("ckpt-6")
    _assert_checkpoint_holds(chief["last_checkpoint"], chief["values"])
    assert _checkpoint_files(tmp_path / "worker1") == []
    assert any(not np.array_equal(first[0]["values"][k], chief["values"][k]) for k in chief["values"])  # it trained
