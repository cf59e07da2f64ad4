"""Ingest on Ray: embedded, and on a real two-node cluster started with the ``ray`` CLI.

Both must give what the local run gives: the same frames, counts, report and
warnings (forwarded from the workers to this process's log), and leave no process
running. The cluster's nodes listen on 127.0.0.1 only (see ``SINGLE_MACHINE``) and
are stopped by the ids of the processes this test started (``ray stop`` would stop
every Ray process of the machine, other users' too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from urban_detection.waymo import executor, ingest
from urban_detection.waymo import synthetic as syn
from urban_detection.waymo.executor import Task

SIZE, STRIDE = (64, 64), 3
# Ray turns 127.0.0.1 into the machine's routable address, and its servers then listen on every
# interface, unless it runs in single-machine mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, its default
# on macOS), where `ray start` takes no worker node. The test's nodes run in that mode (inherited by
# every process they start), and `ray start` itself keeps 127.0.0.1 and accepts worker nodes, so all
# servers listen on 127.0.0.1 only. The driver side is `addresses_as_given`.
SINGLE_MACHINE = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
RAY_CLI = [sys.executable, "-c", "import sys; from ray._private import ray_constants, services; "
           "services.resolve_ip_for_localhost = lambda host: host; ray_constants.ENABLE_RAY_CLUSTER = True; "
           "from ray.scripts.scripts import main; sys.exit(main())"]
RAY_PROCESS_NAMES = ("raylet", "gcs_server", "ray::", "dashboard", "runtime_env", "log_monitor")


# ------------------------------------------------------------------ a local cluster
def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _node_ports(ip: str) -> list[str]:
    """Every port a node opens, given explicitly: the raylet then waits for no agent's port file."""
    names = (
        "node-manager-port",
        "object-manager-port",
        "dashboard-agent-grpc-port",
        "dashboard-agent-listen-port",
        "runtime-env-agent-port",
        "metrics-export-port",
    )
    worker_from = _free_port(ip)
    while worker_from > 60000:  # room for the worker port range
        worker_from = _free_port(ip)
    return [f"--{n}={_free_port(ip)}" for n in names] + [
        f"--min-worker-port={worker_from}",
        f"--max-worker-port={worker_from + 50}",
    ]


class LocalRayCluster:
    """A Ray head and worker nodes started with ``ray start --block``, listening on 127.0.0.1 only.

    Every port is given, so no raylet waits on an agent's port file; a node
    that still misses one of Ray's fixed start-up deadlines (a busy 2-core machine) is
    stopped and started again. :meth:`stop` ends exactly the processes this object
    started: the ``ray start`` ones, every descendant seen, and whatever names this
    cluster's own temporary folder on its command line.
    """

    ATTEMPTS = 3

    def __init__(self, root: Path, nodes: int = 2, cpus_per_node: int = 1, start_timeout: float = 300.0):
        self.root, self.nodes, self.cpus, self.start_timeout = Path(root), nodes, cpus_per_node, start_timeout
        self.procs: list[subprocess.Popen] = []
        self.seen: dict[int, object] = {}  # pid -> psutil.Process of every descendant observed
        self.ip = "127.0.0.1"
        self.port = self.client_port = 0
        # no token authentication: the nodes listen on loopback addresses only, and a driver given an
        # explicit address sends a token only when its process started with RAY_AUTH_MODE=token
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", **SINGLE_MACHINE)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="udray"))  # short: Ray's socket paths must fit 107 bytes

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def _observe(self) -> None:
        import psutil  # vendored by Ray

        for proc in self.procs:
            try:
                top = psutil.Process(proc.pid)
                for p in (top, *top.children(recursive=True)):
                    self.seen.setdefault(p.pid, p)
            except psutil.NoSuchProcess:
                pass

    def _launch(self, k: int, args) -> subprocess.Popen:
        """Start node ``k`` (``args(ip)`` gives its own options); wait until Ray says it runs."""
        ip = self.ip
        for attempt in range(1, self.ATTEMPTS + 1):
            log = self.root / f"node{k}.{attempt}.log"
            cmd = [*RAY_CLI, "start", "--block", f"--node-ip-address={ip}", f"--num-cpus={self.cpus}",
                   "--disable-usage-stats", "--include-log-monitor=false", *_node_ports(ip), *args(ip)]
            with open(log, "w") as out:
                proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            self.procs.append(proc)
            deadline = time.monotonic() + self.start_timeout
            while "Ray runtime started" not in log.read_text():
                self._observe()
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            else:
                return proc
            self._stop_procs()  # what the failed start left (processes of earlier nodes stay up)
            if attempt == self.ATTEMPTS:
                raise RuntimeError(f"ray node {k} did not start:\n{log.read_text()[-3000:]}")
        raise AssertionError("unreachable")

    def start(self) -> "LocalRayCluster":
        """Start the head, then the worker nodes."""
        self.root.mkdir(parents=True, exist_ok=True)

        def head_args(ip):
            self.port, self.client_port = _free_port(ip), _free_port(ip)
            return ["--head", f"--port={self.port}", "--include-dashboard=false",
                    f"--ray-client-server-port={self.client_port}", f"--temp-dir={self.temp_dir}"]

        self._launch(0, head_args)
        for k in range(1, self.nodes):
            self._launch(k, lambda ip: [f"--address={self.address}"])
        return self

    def node_of(self, pid: int) -> int | None:
        """Index of the node whose ``ray start`` process has ``pid`` among its descendants."""
        import psutil

        for k, proc in enumerate(p for p in self.procs if p.poll() is None):
            try:
                if pid in {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}:
                    return k
            except psutil.NoSuchProcess:
                pass
        return None

    def _ours(self) -> list:
        """Every live process this cluster started (see the class docstring)."""
        import psutil

        self._observe()
        for p in psutil.process_iter(["cmdline"]):
            if str(self.temp_dir) in " ".join(p.info["cmdline"] or ()):
                self.seen.setdefault(p.pid, p)
        live = []
        for p in self.seen.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    live.append(p)
            except psutil.NoSuchProcess:
                pass
        return live

    def _stop_procs(self) -> list:
        import psutil

        procs = self._ours()
        for proc in reversed(self.procs):  # worker nodes first, then the head
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=30)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        for proc in self.procs:
            if proc.poll() is None:
                proc.wait(timeout=10)
        self.procs = [p for p in self.procs if p.poll() is None]
        return self._ours()

    def stop(self) -> list:
        """SIGTERM to every process of the cluster, SIGKILL after a grace; returns the ones still alive."""
        left = self._stop_procs()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return left


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


@contextlib.contextmanager
def addresses_as_given():
    """This process connects to a 127.0.0.1 address as given (see ``SINGLE_MACHINE``)."""
    from ray._private import services

    saved = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: host
    try:
        yield
    finally:
        services.resolve_ip_for_localhost = saved


@pytest.fixture
def loopback_driver():
    with addresses_as_given():
        yield


LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}


def _listening_hosts(procs) -> set[str]:
    """The local addresses the processes listen on (TCP)."""
    import psutil

    hosts = set()
    for p in procs:
        try:
            conns = p.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        hosts |= {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
    assert hosts, "no listening socket found"
    return hosts


# ------------------------------------------------------------------------ tests
def test_no_address_runs_on_the_local_pool(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert executor.choose_backend(1) == ("here", None)
    assert executor.choose_backend(2) == ("pool", None)
    assert executor.choose_backend(2, "local") == ("ray", "local")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # as `ray job submit` sets it
    assert executor.choose_backend(2) == ("ray", "127.0.0.1:6379")


def test_embedded_ray_matches_the_local_run(sources, local_run, tmp_path, caplog):
    import psutil  # vendored by Ray
    import ray

    out = tmp_path / "trips"
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
    # the stamps the Ray workers wrote make the next (local) run reuse every trip
    again = ingest.ingest_files(sources, out, workers=1, stride=STRIDE, size=SIZE, progress=False)
    assert again.report["reused_trips"] == len(sources)
    assert _strip(again.index_rows) == _strip(local_run.index_rows)


def test_task_errors_come_back_as_the_tasks_own_exception(sources, tmp_path):
    """A task that raises (here: its output is a file the project did not write) fails alone, on every backend."""
    from urban_detection.files import ForeignFileError

    params = ingest._params_dict(ingest._Params("FRONT", SIZE, STRIDE, 1.0, 90))
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


def test_two_node_cluster_matches_the_local_run(sources, local_run, tmp_path, caplog, loopback_driver):
    import ray

    cluster = LocalRayCluster(tmp_path / "cluster", nodes=2, cpus_per_node=1)
    try:
        cluster.start()
        assert _listening_hosts(cluster._ours()) <= LOOPBACK
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
        finally:
            ray.shutdown()
        # the Ray Client address form
        client = ingest.ingest_files(sources, tmp_path / "trips", workers=2, stride=STRIDE, size=SIZE, progress=False,
                                     force=True, ray_address=f"ray://{cluster.ip}:{cluster.client_port}")
        assert not ray.is_initialized()
    finally:
        left = cluster.stop()
    _assert_same_as_local(got, local_run)
    _assert_same_as_local(again, local_run)
    _assert_same_as_local(client, local_run)
    _assert_bad_image_warned(caplog, sources[0])
    assert nodes == {0, 1}  # tasks ran on both nodes
    assert left == [], left  # nothing of the cluster is left running
