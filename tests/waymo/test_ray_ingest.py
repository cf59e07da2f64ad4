"""Ingest on Ray: embedded, and on a real two-node cluster started with the ``ray`` CLI.

Both must give what the local run gives: the same frames, counts, report and
warnings (forwarded from the workers to this process's log), and leave no process
running. The cluster (``ray_cluster.LocalRayCluster``) listens on 127.0.0.1 only, on
ports reserved for it, and is stopped by the ids of the processes this test started.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from ray_cluster import LocalRayCluster, addresses_as_given, ray_client_turn

from urban_detection.waymo import executor, ingest
from urban_detection.waymo import synthetic as syn
from urban_detection.waymo.convert import Params
from urban_detection.waymo.executor import Task
from urban_detection.waymo.stamps import params_dict

SIZE, STRIDE = (64, 64), 3
RAY_PROCESS_NAMES = ("raylet", "gcs_server", "ray::", "dashboard", "runtime_env", "log_monitor")


# --------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    """Four tiny synthetic raw segments, and one whose first frame's image does not decode."""
    import tensorflow as tf

    from urban_detection.waymo import frame_proto as fp

    root = tmp_path_factory.mktemp("ray_raw")
    good = syn.write_synthetic_trips(root, 4, 9, width=240, height=160, seed=11)
    broken = fp.Frame(timestamp_micros=1)
    broken.context.name = "bad"
    broken.images.add(name=fp.camera_id("FRONT"), image=b"not a jpeg")
    _, a_good_frame = next(ingest.iter_records(good[0]))
    bad = root / "a_bad_segment.tfrecord"
    with tf.io.TFRecordWriter(str(bad)) as w:
        w.write(broken.SerializeToString())
        w.write(a_good_frame)
    return [bad, *good]


@pytest.fixture(scope="module")
def local_run(sources, tmp_path_factory):
    """The reference: every source converted in this process."""
    return ingest.ingest_files(sources, tmp_path_factory.mktemp("local"), workers=1, stride=STRIDE, size=SIZE,
                               progress=False)


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "path"} for r in rows]


def _assert_same_as_local(got, local):
    assert _strip(got.index_rows) == _strip(local.index_rows)
    for key in ("files", "trips", "frames_read", "frames_selected", "frames_written", "objects_written", "skipped"):
        assert got.report[key] == local.report[key], key
    assert got.report["skipped"]["bad_image"] == 1
    assert [(t.trip, t.frames_written, t.objects, t.skipped) for t in got.trips] == [
        (t.trip, t.frames_written, t.objects, t.skipped) for t in local.trips
    ]


def _assert_bad_image_warned(caplog, bad: Path):
    msgs = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(str(bad) in m and "record 0" in m and "bad_image" in m for m in msgs), msgs


def _own_ray_processes():
    """Ray processes among this process's descendants (an embedded Ray that was not stopped)."""
    import psutil  # vendored by Ray

    out = []
    for c in psutil.Process().children(recursive=True):
        try:
            name = " ".join(c.cmdline()) or c.name()
            if c.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            continue
        if any(n in name for n in RAY_PROCESS_NAMES):
            out.append((c.pid, name[:120]))
    return out


@pytest.fixture
def loopback_driver():
    with addresses_as_given():
        yield


LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}


def _listening(procs) -> set[tuple[str, int]]:
    """The local (address, port) pairs the processes listen on (TCP)."""
    import psutil

    found = set()
    for p in procs:
        try:
            conns = p.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        found |= {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    assert found, "no listening socket found"
    return found


def _listening_hosts(procs) -> set[str]:
    return {ip for ip, _ in _listening(procs)}


# ------------------------------------------------------------------------ tests
def test_no_address_runs_on_the_local_pool(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert executor.choose_backend(1) == ("here", None)
    assert executor.choose_backend(2) == ("pool", None)
    assert executor.choose_backend(2, "local") == ("ray", "local")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # as `ray job submit` sets it
    assert executor.choose_backend(2) == ("ray", "127.0.0.1:6379")


@pytest.mark.slow
def test_embedded_ray_matches_the_local_run(sources, local_run, tmp_path, caplog):
    import psutil  # vendored by Ray
    import ray

    out = tmp_path / "trips"
    auth_mode = os.environ.get("RAY_AUTH_MODE")
    try:  # kept up after the run (keep_pool), so its sockets can be looked at
        got = ingest.ingest_files(sources, out, workers=2, stride=STRIDE, size=SIZE, progress=False,
                                  ray_address="local", keep_pool=True)
        assert ray.is_initialized()
        ray_procs = [psutil.Process(pid) for pid, _ in _own_ray_processes()]
        assert _listening_hosts(ray_procs) <= LOOPBACK  # no Ray server reachable from the network
    finally:
        ingest.shutdown_pool()
    _assert_same_as_local(got, local_run)
    assert os.getpid() not in {t.pid for t in got.trips}  # converted in Ray workers
    _assert_bad_image_warned(caplog, sources[0])  # forwarded from the worker to this log
    assert not ray.is_initialized() and _own_ray_processes() == []  # the embedded Ray is gone
    # and it left this process's Ray authentication mode as it was (Ray would set it to token for
    # good, and a later cluster without tokens would then fail this process's tasks)
    assert os.environ.get("RAY_AUTH_MODE") == auth_mode
    # the stamps the Ray workers wrote make the next (local) run reuse every trip
    again = ingest.ingest_files(sources, out, workers=1, stride=STRIDE, size=SIZE, progress=False)
    assert again.report["reused_trips"] == len(sources)
    assert _strip(again.index_rows) == _strip(local_run.index_rows)


@pytest.mark.slow
def test_task_errors_come_back_as_the_tasks_own_exception(sources, tmp_path):
    """A task that raises (here: its output is a file the project did not write) fails alone, on every backend."""
    from urban_detection.files import ForeignFileError

    params = params_dict(Params("FRONT", SIZE, STRIDE, 1.0, 90))
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{ingest.trip_name(sources[1])}.tfrecord").write_bytes(b"a user's file")
    tasks = [Task(k, (str(src), str(out / f"{ingest.trip_name(src)}.tfrecord"), params))
             for k, src in enumerate(sources[1:3])]
    for ray_address in (None, "local"):
        done = {f.key: f for f in executor.run_tasks(ingest._convert_task, tasks, workers=2, ray_address=ray_address)}
        assert isinstance(done[0].error, ForeignFileError), done[0].error
        assert done[1].error is None and done[1].value["frames_written"] == 3
    assert _own_ray_processes() == []


@pytest.mark.slow
def test_two_node_cluster_matches_the_local_run(sources, local_run, tmp_path, caplog, loopback_driver):
    import ray

    cluster = LocalRayCluster(tmp_path / "cluster", nodes=2, cpus_per_node=1)
    try:
        cluster.start()
        assert _listening_hosts(cluster.processes()) <= LOOPBACK
        got = ingest.ingest_files(sources, tmp_path / "trips", workers=2, stride=STRIDE, size=SIZE, progress=False,
                                  ray_address=cluster.address)
        assert not ray.is_initialized()  # ingest disconnected the driver it connected
        # a driver already connected to the cluster (no address given): its workers stay up, so
        # the processes that converted can be traced to their nodes
        ray.init(address=cluster.address, log_to_driver=True)
        try:
            again = ingest.ingest_files(sources, tmp_path / "trips", workers=2, stride=STRIDE, size=SIZE,
                                        progress=False, force=True)
            nodes = {cluster.node_of(t.pid) for t in again.trips}
            # its workers up: every port the cluster listens on is one reserved for it
            ports = {port for _, port in _listening(cluster.processes())}
            assert ports <= cluster.ports, sorted(ports - cluster.ports)
        finally:
            ray.shutdown()
        # the Ray Client address form
        with ray_client_turn():
            client = ingest.ingest_files(sources, tmp_path / "trips", workers=2, stride=STRIDE, size=SIZE,
                                         progress=False, force=True,
                                         ray_address=f"ray://{cluster.ip}:{cluster.client_port}")
        assert not ray.is_initialized()
    except BaseException:
        print(cluster.logs())  # shown with the failure; also kept in tmp_path/cluster
        raise
    finally:
        left = cluster.stop()
    _assert_same_as_local(got, local_run)
    _assert_same_as_local(again, local_run)
    _assert_same_as_local(client, local_run)
    _assert_bad_image_warned(caplog, sources[0])
    assert nodes == {0, 1}  # tasks ran on both nodes
    assert left == [], left  # nothing of the cluster is left running
