"""A local multi-node Ray cluster for tests: ``ray start`` nodes on 127.0.0.1, on ports reserved for it.

Ports: every port a node listens on is given explicitly and taken from a slot of
``SLOT`` consecutive ports that this helper reserves per node (see :class:`PortSlot`):
the GCS, Ray Client and autoscaler metrics ports (head; the last one through
``AUTOSCALER_METRIC_PORT``, else a fixed 44217), the node manager, object manager, dashboard agent
(gRPC and HTTP), runtime env agent and metrics export ports, and the node's own worker
port range (Ray workers, drivers and Ray Client servers each take one from it). The
slots lie outside every range another program picks ports from (the kernel's ephemeral
range, Ray's default worker ports and Ray Client's server ports), so no port of one
node can fall in another's worker range or be taken by a connection of another
program. The Ray Client proxy picks its servers' ports itself (23000-23999, first free
one): :func:`ray_client_turn` lets one cluster of this helper at a time connect a client.

Start: a node that is not up within ``start_timeout`` seconds, or whose ``ray start``
exits, fails the start at once with that node's output and Ray session logs; the
cluster is then stopped. Its Ray logs are kept in the folder given (``root``). Stop: each node's own processes (its ``ray start``, every
descendant seen, every process carrying its marker in the environment), never
``ray stop`` (which stops every Ray process of the machine, other users' too).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from server_helpers import ephemeral_ports

# Ray turns 127.0.0.1 into the machine's routable address, and its servers then listen on every
# interface, unless it runs in single-machine mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, its default
# on macOS), where `ray start` takes no worker node. The nodes run in that mode (inherited by every
# process they start), and `ray start` itself keeps 127.0.0.1 and accepts worker nodes, so all
# servers listen on 127.0.0.1 only. The driver side is `addresses_as_given`.
SINGLE_MACHINE = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# A CI machine running other tests can starve a node for tens of seconds: Ray's defaults
# (a check every 3 s, 10 s timeout, 5 misses) would declare it dead and its objects lost
# (OwnerDiedError). A node that really died still fails its test, after about 6 minutes (10 x (5 + 30) s).
PATIENT_HEALTH_CHECKS = {"RAY_health_check_period_ms": "5000", "RAY_health_check_timeout_ms": "30000",
                         "RAY_health_check_failure_threshold": "10"}
NODE_MARKER = "URBAN_DETECTION_TEST_RAY_NODE"  # in the environment of every process of a node
PARENT = "URBAN_DETECTION_TEST_RAY_PARENT"  # the pid of the process that started the node
# `ray start` in that mode; on Linux it also gets SIGTERM (and stops its node) when the process that
# started it ends (strictly: its thread), so a test killed outright leaves no node behind (PR_SET_PDEATHSIG = 1).
RAY_CLI = [sys.executable, "-c", "import ctypes, os, signal, sys; "
           "sys.platform != 'linux' or ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
           f"os.getppid() == int(os.environ['{PARENT}']) or sys.exit('the test that started this node ended'); "
           "from ray._private import ray_constants, services; "
           "services.resolve_ip_for_localhost = lambda host: host; ray_constants.ENABLE_RAY_CLUSTER = True; "
           "from ray.scripts.scripts import main; sys.exit(main())"]

# A slot: [its lock, port, ray-client-server-port, autoscaler metrics, *NODE_PORTS, worker ports...]
NODE_PORTS = ("node-manager-port", "object-manager-port", "dashboard-agent-grpc-port",
              "dashboard-agent-listen-port", "runtime-env-agent-port", "metrics-export-port")
SLOT = 64
FIRST_WORKER_PORT = 4 + len(NODE_PORTS)  # index in the slot
SLOT_REGION = range(20480, 32768)  # the slots' start ports are multiples of SLOT in here, except:
AVOIDED = (range(10002, 20000),  # `ray start`'s default worker ports (other users' clusters)
           range(23000, 24000))  # Ray Client's server ports (util/client/server/proxier.py)
CLIENT_TURN_PORT = SLOT_REGION.start - 1  # held while a cluster of this helper connects a Ray Client


def _overlaps(a: range, b: range) -> bool:
    return a.start < b.stop and b.start < a.stop


def _bind(port: int, reuse: bool = False) -> socket.socket | None:
    """A socket bound to 127.0.0.1:``port``, or None when the port is taken."""
    s = socket.socket()
    if reuse:  # as Ray's servers bind: a closed connection's TIME_WAIT does not take the port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return s
    except OSError:
        s.close()
        return None


class PortSlot:
    """``SLOT`` consecutive free ports held for one node.

    A socket bound to the slot's first port (never listening) is its lock: another
    cluster of this helper, in this process or another, skips a slot it cannot bind.
    The other ports are checked free; the node's servers bind them. The lock goes
    with :meth:`release` or with the process.
    """

    def __init__(self):
        eph = ephemeral_ports()
        starts = [s for s in range(SLOT_REGION.start, SLOT_REGION.stop - SLOT + 1, SLOT)
                  if not any(_overlaps(range(s, s + SLOT), r) for r in AVOIDED)]
        outside = [s for s in starts if not _overlaps(range(s, s + SLOT), eph)]
        starts = outside or starts  # a machine whose ephemeral range covers the region: checked ports only
        random.shuffle(starts)
        for start in starts:
            lock = _bind(start)
            if lock is None:
                continue
            if all(_free(p) for p in range(start + 1, start + SLOT)):
                self.lock, self.ports = lock, range(start, start + SLOT)
                return
            lock.close()
        raise RuntimeError(f"no free slot of {SLOT} ports in {SLOT_REGION}")

    def release(self) -> None:
        self.lock.close()

    def args(self, head: bool) -> list[str]:
        """The ``ray start`` options naming every port of the node."""
        p = self.ports
        own = [f"--{name}={p[4 + i]}" for i, name in enumerate(NODE_PORTS)]
        own += [f"--min-worker-port={p[FIRST_WORKER_PORT]}", f"--max-worker-port={p[-1]}"]
        return [f"--port={p[1]}", f"--ray-client-server-port={p[2]}", *own] if head else own


def _free(port: int) -> bool:
    s = _bind(port, reuse=True)
    if s is not None:
        s.close()
    return s is not None


@contextlib.contextmanager
def ray_client_turn(timeout: float = 600.0):
    """Held while connecting a Ray Client: the Ray Client proxies of two clusters started at the same
    time would both take the first free port of Ray Client's range for their servers."""
    deadline = time.monotonic() + timeout
    while (lock := _bind(CLIENT_TURN_PORT)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"port {CLIENT_TURN_PORT} (the Ray Client turn) held for {timeout:.0f} s")
        time.sleep(0.5)
    try:
        yield
    finally:
        lock.close()


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


# ------------------------------------------------------------------ nodes
@dataclass
class Node:
    """One ``ray start --block`` process and what it started."""

    index: int
    temp_dir: Path  # its own: its Ray session (and logs) are in here
    output: Path  # the output of its `ray start`
    ports: PortSlot
    proc: subprocess.Popen | None = None
    seen: dict = field(default_factory=dict)  # pid -> psutil.Process of every process of it observed

    @property
    def marker(self) -> str:
        return str(self.temp_dir)

    def observe(self) -> None:
        """Note the node's live descendants (they stay its processes when re-parented)."""
        import psutil  # vendored by Ray

        if self.proc is None:
            return
        try:
            top = psutil.Process(self.proc.pid)
            for p in (top, *top.children(recursive=True)):
                self.seen.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            pass

    def processes(self) -> list:
        """Every live process of the node: seen as a descendant, or carrying its marker."""
        import psutil

        self.observe()
        for p in psutil.process_iter():
            if p.pid not in self.seen:
                try:
                    if p.environ().get(NODE_MARKER) == self.marker:
                        self.seen[p.pid] = p
                except (psutil.Error, OSError):  # another user's, or gone
                    pass
        live = []
        for p in self.seen.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    live.append(p)
            except psutil.NoSuchProcess:
                pass
        return live

    def stop(self) -> list:
        """SIGTERM to its ``ray start`` (which stops what it started), SIGKILL to what is left after
        a grace; returns the processes still alive."""
        import psutil

        procs = self.processes()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=30)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=10)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        return self.processes()

    @property
    def log_dir(self) -> Path:
        return self.temp_dir / "session_latest" / "logs"

    def logs(self, lines: int = 40) -> str:
        """Its ``ray start`` output and the end of every Ray log file of its session."""
        parts = [f"--- {self.output} (ray start)\n{_tail(self.output, 200)}"]
        logs = self.log_dir
        files = sorted(logs.glob("*"), key=lambda f: f.stat().st_mtime) if logs.is_dir() else []
        for f in files:
            if f.is_file() and f.stat().st_size:
                parts.append(f"--- {f}\n{_tail(f, lines)}")
        if not files:
            parts.append(f"--- no Ray session logs in {logs}")
        return "\n".join(parts)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"({e})"


# ---------------------------------------------------------------- cluster
class LocalRayCluster:
    """A Ray head and worker nodes started with ``ray start --block``, listening on 127.0.0.1 only.

    :meth:`start` starts them one after the other and raises at once, with the logs of
    the node that failed, when one is not up within ``start_timeout`` seconds; :meth:`stop`
    ends exactly the processes this object started and removes its temporary folder.
    """

    def __init__(self, root: Path, nodes: int = 2, cpus_per_node: int = 1, start_timeout: float = 90.0):
        self.root, self.node_count, self.cpus, self.start_timeout = Path(root), nodes, cpus_per_node, start_timeout
        self.nodes: list[Node] = []
        self.ip = "127.0.0.1"
        self.port = self.client_port = 0
        # no token authentication: the nodes listen on loopback addresses only, and a driver given an
        # explicit address sends a token only when its process started with RAY_AUTH_MODE=token
        # a fresh machine: no MLflow setting an earlier test of this process left in the environment
        # (mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID) reaches the nodes' workers
        self.env = dict({k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
                        RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", **SINGLE_MACHINE,
                        **PATIENT_HEALTH_CHECKS)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="udray"))  # short: Ray's socket paths must fit 107 bytes

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def ports(self) -> set[int]:
        """Every port reserved for the cluster's nodes."""
        return {p for node in self.nodes for p in node.ports.ports}

    def start(self) -> "LocalRayCluster":
        """Start the head, then the worker nodes; on a failure stop what started and raise."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            for k in range(self.node_count):
                self._launch(k)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, k: int) -> None:
        """Start node ``k``; wait until its ``ray start`` says it runs."""
        node = Node(k, self.temp_dir / str(k), self.root / f"node{k}.log", PortSlot())
        self.nodes.append(node)
        if k == 0:
            self.port, self.client_port = node.ports.ports[1], node.ports.ports[2]
            role = ["--head", "--include-dashboard=false"]
        else:
            role = [f"--address={self.address}"]
        cmd = [*RAY_CLI, "start", "--block", f"--node-ip-address={self.ip}", f"--num-cpus={self.cpus}",
               "--disable-usage-stats", "--include-log-monitor=false", f"--temp-dir={node.temp_dir}",
               *role, *node.ports.args(head=k == 0)]
        env = {**self.env, NODE_MARKER: node.marker, PARENT: str(os.getpid()),
               "AUTOSCALER_METRIC_PORT": str(node.ports.ports[3])}
        with open(node.output, "w") as out:
            node.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.monotonic()
        while "Ray runtime started" not in _tail(node.output, 10_000):
            node.observe()
            if node.proc.poll() is not None:
                raise RuntimeError(f"ray node {k}: `ray start` exited ({node.proc.returncode}) after "
                                   f"{time.monotonic() - t0:.0f} s\n{node.logs()}")
            if time.monotonic() - t0 > self.start_timeout:
                raise RuntimeError(f"ray node {k} not up after {self.start_timeout:.0f} s\n{node.logs()}")
            time.sleep(0.5)
        node.observe()

    def node_of(self, pid: int) -> int | None:
        """Index of the node that ``pid`` is a process of."""
        for node in self.nodes:
            if pid in {p.pid for p in node.processes()}:
                return node.index
        return None

    def processes(self) -> list:
        """Every live process of the cluster."""
        return [p for node in self.nodes for p in node.processes()]

    def logs(self) -> str:
        """The ``ray start`` output and the ends of the Ray logs of every node."""
        return "\n".join(f"=== ray node {node.index}\n{node.logs()}" for node in self.nodes)

    def stop(self) -> list:
        """Stop the nodes (workers first), keep their Ray logs in ``root/node<k>_logs``, remove the
        temporary folder, release the ports; returns the processes still alive. Safe to call again."""
        left = [p for node in reversed(self.nodes) for p in node.stop()]
        for node in self.nodes:
            if node.log_dir.is_dir():
                with contextlib.suppress(OSError):  # shutil.Error too: what could be copied is
                    shutil.copytree(node.log_dir, self.root / f"node{node.index}_logs", dirs_exist_ok=True)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        for node in self.nodes:
            node.ports.release()
        return left
