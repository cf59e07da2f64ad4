"""The parallel executor: runs one picklable task per item here, on local helper processes or on Ray.

It knows nothing of what the tasks do (ingest's conversion is its client). A caller
gives a module-level function and a list of :class:`Task` (a key and the function's
arguments); :func:`run_tasks` yields one :class:`Finished` per task *as tasks
complete*, so the caller can count, report progress and write its stamps while the
rest runs. A task that raises (or whose process dies) is a :class:`Finished` with the
task's own exception in ``error``; the others go on.

Backends (:func:`choose_backend`):

* ``"here"``: in the calling process, one task after the other (``workers=1``).
* ``"pool"``: the calling process plus up to ``workers - 1`` helper processes started
  with the ``spawn`` method. The caller starts at once; helpers are started only when
  the remaining work, extrapolated from the tasks done so far, outweighs their start-up
  (:data:`POOL_STARTUP_SECONDS`), so small inputs never pay it.
* ``"ray"``: one Ray task per item (``num_cpus=1``), as the original study's conversion
  script did. ``ray_address="local"`` starts Ray embedded on ``workers`` local cores for
  the call; any other address (``"auto"``, ``"127.0.0.1:6379"``,
  ``"ray://head:10001"``) runs the same tasks on that existing cluster, which decides
  how many run at once. With ``ray_address=None`` Ray is used when this process is
  already connected to Ray or when ``RAY_ADDRESS`` names a cluster (as
  ``ray job submit`` sets it); otherwise the local pool.

Why the pool, not embedded Ray, is the default on one machine: measured with
``benchmarks/ingest_ray.py`` on the default synthetic input (60 segments of 100
frames, 2 cores), the pool converted them in 11 s and Ray embedded on 2 CPUs in 26 s
(on a busy machine 12.5 s against 53 s): Ray's cold start (GCS, raylet and agents,
about 17 s here, then a TensorFlow import in every Ray worker) outweighs the whole
conversion, while the pool's caller converts from the first second. On one host Ray
brings no steady-state gain either (both run one process per core). Ray pays off on
a cluster, where it is one address away.

Log records that a task emits under ``log_name`` in another process are captured there
and re-emitted in the caller under the same logger name, so warnings naming a file
and record reach the caller's handlers (Kedro's, pytest's ``caplog``) once, whatever
the backend; anything a Ray task prints goes to the driver too (``log_to_driver``).

Ray is told nothing about the internet: no dashboard, no usage statistics
(``RAY_USAGE_STATS_ENABLED=0``), and embedded Ray listens on the loopback interface
only. On a cluster every node must have the project installed (the same environment as
the driver) and see the tasks' files at the same paths (see :func:`run_tasks`).
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import logging
import multiprocessing
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

logger = logging.getLogger(__name__)

POOL_STARTUP_SECONDS = 5.0  # about what a spawned process needs to import TensorFlow
EMBEDDED_RAY = "local"  # ray_address that starts Ray embedded on the local cores
EMBEDDED_RAY_ATTEMPTS = 3  # a loaded machine can miss Ray's start-up deadlines; then try again


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(*args)``; ``key`` tells the caller which item it was."""

    key: Any
    args: tuple


@dataclass
class Finished:
    """A completed task: its ``value``, or the exception it raised in ``error``.

    ``where`` is the backend that ran it (``"here"``, ``"pool"`` or ``"ray"``).
    """

    key: Any
    value: Any = None
    error: BaseException | None = None
    where: str = "here"


# ------------------------------------------------------------ choosing a backend
def choose_backend(workers: int, ray_address: str | None = None) -> tuple[str, str | None]:
    """``(backend, ray address)`` for a call with ``workers`` and ``ray_address``.

    ``ray_address=None``: Ray at ``$RAY_ADDRESS`` when set, the Ray this process is
    already connected to, else ``"here"`` for one worker and ``"pool"`` for more.
    """
    if ray_address is None:
        ray_address = os.environ.get("RAY_ADDRESS") or None
        if ray_address is None and _ray_connected():
            return "ray", None
    if ray_address is not None:
        return "ray", str(ray_address)
    return ("here" if int(workers) <= 1 else "pool"), None


def _ray_connected() -> bool:
    """True when this process is connected to Ray (checked without importing Ray)."""
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


# ------------------------------------------------------- running one task anywhere
def _record_dict(record: logging.LogRecord) -> dict:
    """A log record as plain data that pickles (message formatted, traceback as text)."""
    d = {k: v for k, v in record.__dict__.items() if v is None or isinstance(v, (str, int, float, bool))}
    d["msg"], d["args"] = record.getMessage(), None
    if record.exc_info and not record.exc_text:
        d["exc_text"] = logging.Formatter().formatException(record.exc_info)
    return d


class _Capture(logging.Handler):
    """Collects the records of one task in a helper process, for re-emission in the caller."""

    def __init__(self):
        super().__init__(logging.NOTSET)
        self.records: list[dict] = []

    def emit(self, record):
        self.records.append(_record_dict(record))


def call_captured(fn: Callable, args: tuple, log_name: str, level: int) -> tuple[Any, list[dict]]:
    """Run ``fn(*args)`` with the records of logger ``log_name`` (at ``level``) captured.

    Runs in a helper process or Ray worker. While the task runs the logger does not
    propagate, so nothing is printed there as well; the caller re-emits the records.
    """
    log = logging.getLogger(log_name)
    handler = _Capture()
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    try:
        value = fn(*args)
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]
    return value, handler.records


def reemit(records: Iterable[dict]) -> None:
    """Hand records captured in another process to this process's handlers."""
    for d in records:
        log = logging.getLogger(d.get("name") or "")
        if log.isEnabledFor(d.get("levelno", logging.WARNING)):
            log.handle(logging.makeLogRecord(d))


def _run_here(fn: Callable, task: Task, where: str = "here") -> Finished:
    try:
        return Finished(task.key, fn(*task.args), where=where)
    except Exception as e:  # noqa: BLE001 - one failed task does not stop the others
        return Finished(task.key, error=e, where=where)


_INITIALISED: set[str] = set()  # initializers already run in this (Ray worker) process


def _ray_task(fn: Callable, args: tuple, initializer: Callable | None, log_name: str, level: int):
    """Body of every Ray task: the process initializer once per worker, then the task."""
    if initializer is not None:
        name = f"{initializer.__module__}.{initializer.__qualname__}"
        if name not in _INITIALISED:
            initializer()
            _INITIALISED.add(name)
    return call_captured(fn, args, log_name, level)


# ---------------------------------------------------------------- the local pool
_POOL: tuple[tuple, cf.ProcessPoolExecutor] | None = None


def _new_pool(size: int, initializer: Callable | None) -> cf.ProcessPoolExecutor:
    ctx = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(max_workers=size, mp_context=ctx, initializer=initializer)


def _kept_pool(size: int, initializer: Callable | None) -> cf.ProcessPoolExecutor:
    """The pool kept between calls (``keep_pool=True``), replaced when its shape differs."""
    global _POOL
    if _POOL is not None and _POOL[0] != (size, initializer):
        _shutdown_local_pool()
    if _POOL is None:
        _POOL = ((size, initializer), _new_pool(size, initializer))
    return _POOL[1]


def _is_kept(size: int, initializer: Callable | None) -> bool:
    return _POOL is not None and _POOL[0] == (size, initializer)


def _ping(delay: float = 0.0) -> int:
    time.sleep(delay)
    return os.getpid()


def warm_pool(workers: int, initializer: Callable | None = None) -> None:
    """Start the ``workers - 1`` helpers of ``run_tasks(..., workers, keep_pool=True)`` now."""
    if workers > 1:
        pool = _kept_pool(workers - 1, initializer)
        list(pool.map(_ping, [0.2] * (workers - 1)))


def _shutdown_local_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL[1].shutdown(wait=True, cancel_futures=True)
        _POOL = None


def shutdown_pool() -> None:
    """Stop what ``keep_pool=True`` kept: the local helper processes and embedded Ray."""
    _shutdown_local_pool()
    _shutdown_embedded_ray()


atexit.register(shutdown_pool)


def _run_pool(
    fn: Callable, tasks: list[Task], workers: int, initializer, keep_pool: bool, log_name: str
) -> Iterator[Finished]:
    """The caller plus up to ``workers - 1`` spawned helpers (see the module docstring).

    The caller takes tasks from the back of the queue, helpers (once their start-up is
    over) from the front; each helper has at most two tasks in flight.
    """
    pool_size = workers - 1
    level = logging.getLogger(log_name).getEffectiveLevel()
    queue = deque(tasks)
    in_flight: dict[cf.Future, Task] = {}
    pool: cf.ProcessPoolExecutor | None = None
    pings: list[cf.Future] = []
    own_times: list[float] = []
    warm = keep_pool and _is_kept(pool_size, initializer)

    def start_pool():
        nonlocal pool, pings
        pool = _kept_pool(pool_size, initializer) if keep_pool else _new_pool(pool_size, initializer)
        if not warm:  # a ping answered = a helper has imported everything and is ready
            pings = [pool.submit(_ping) for _ in range(pool_size)]

    def collect(futures) -> Iterator[Finished]:
        for fut in futures:
            task = in_flight.pop(fut)
            try:
                value, records = fut.result()
            except Exception as e:  # noqa: BLE001 - the task raised, or its process died
                yield Finished(task.key, error=e, where="pool")
            else:
                reemit(records)
                yield Finished(task.key, value, where="pool")

    if warm:
        start_pool()  # already running: no start-up cost
    try:
        while queue or in_flight:
            yield from collect([f for f in list(in_flight) if f.done()])
            if pool is None and queue and own_times:
                if sum(own_times) / len(own_times) * len(queue) > POOL_STARTUP_SECONDS:
                    start_pool()
            if pool is not None:
                ready = pool_size if warm else sum(1 for f in pings if f.done() and f.exception() is None)
                while queue and len(in_flight) < 2 * ready:
                    task = queue.popleft()
                    in_flight[pool.submit(call_captured, fn, task.args, log_name, level)] = task
            if queue:
                t0 = time.perf_counter()
                finished = _run_here(fn, queue.pop())
                own_times.append(time.perf_counter() - t0)
                yield finished
            elif in_flight:
                cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
    finally:
        if pool is not None and not keep_pool:
            # helpers still importing TensorFlow are not waited for
            pool.shutdown(wait=all(f.done() for f in pings), cancel_futures=True)


# ----------------------------------------------------------------------- Ray
_RAY_OWNED = False  # this module started the Ray this process is connected to


def _import_ray():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # before Ray reads it: no usage statistics
    try:
        import ray
    except ImportError as e:  # pragma: no cover - ray is a dependency of the project
        raise ImportError("running tasks on Ray needs the 'ray' package (pip install ray)") from e
    return ray


AUTH_MODE = "RAY_AUTH_MODE"


def _init_loopback(ray, **kwargs) -> None:
    """``ray.init`` of a new local instance whose servers listen on the loopback interface only.

    Ray binds its servers to the node IP, which for a local instance is the machine's
    routable address unless Ray is in its single-machine mode (the mode it uses on
    macOS and Windows, switched by ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``); that mode is
    set for the start of this instance only, so later cluster connections are unaffected.
    """
    from ray._private import ray_constants

    env_name = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    saved_env, saved_flag = os.environ.get(env_name), ray_constants.ENABLE_RAY_CLUSTER
    saved_auth = os.environ.get(AUTH_MODE)
    os.environ[env_name], ray_constants.ENABLE_RAY_CLUSTER = "0", False  # raylet and workers inherit the env
    # Unless the user chose a mode, Ray would turn token authentication on for this whole process
    # (RAY_AUTH_MODE=token in os.environ) when it starts a local instance; a later connection of this
    # process to a cluster without tokens then refuses the cluster's calls (OwnerDiedError,
    # "InvalidAuthToken"). This instance listens on the loopback interface only.
    os.environ.setdefault(AUTH_MODE, "disabled")
    try:
        ray.init(**kwargs)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        for name, value in ((env_name, saved_env), (AUTH_MODE, saved_auth)):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _stop_new_children(before: set[int]) -> None:
    """Stop the processes this process started since ``before`` (what a failed Ray start leaves)."""
    import psutil  # vendored by Ray (on sys.path once ray is imported)

    new = [c for c in psutil.Process().children(recursive=True) if c.pid not in before]
    for c in new:
        try:
            c.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(new, timeout=5)
    for c in alive:
        try:
            c.kill()
        except psutil.NoSuchProcess:
            pass


def _start_embedded_ray(ray, workers: int) -> None:
    """Start Ray on ``workers`` local cores; retried when a loaded machine misses its deadlines.

    Ray gives its raylet a fixed 15 s to see its agents start; on a busy 2-core machine
    they can take longer and the start fails, leaving the processes already started.
    Those are stopped before the next attempt.
    """
    import psutil  # vendored by Ray

    for attempt in range(1, EMBEDDED_RAY_ATTEMPTS + 1):
        before = {c.pid for c in psutil.Process().children(recursive=True)}
        try:
            _init_loopback(ray, num_cpus=int(workers), include_dashboard=False, log_to_driver=True)
            return
        except Exception as e:  # noqa: BLE001 - Ray raises plain Exception when its processes start too slowly
            ray.shutdown()
            _stop_new_children(before)
            if attempt == EMBEDDED_RAY_ATTEMPTS:
                raise RuntimeError(f"embedded Ray did not start in {attempt} attempts: {e}") from e
            logger.warning("embedded Ray did not start (attempt %d of %d): %s; trying again", attempt,
                           EMBEDDED_RAY_ATTEMPTS, e)


def connect_ray(address: str | None, workers: int):
    """Ray connected to ``address`` (embedded on ``workers`` CPUs for ``"local"``), and True when this
    call connected (then :func:`disconnect_ray` ends it); a process already connected keeps its connection."""
    global _RAY_OWNED
    ray = _import_ray()
    if ray.is_initialized():
        return ray, False  # the caller's (or a kept embedded) connection
    if address in (None, EMBEDDED_RAY):
        _start_embedded_ray(ray, workers)
        _RAY_OWNED = True
    else:
        ray.init(address=address, log_to_driver=True)
        _RAY_OWNED = False
    return ray, True


def _shutdown_embedded_ray() -> None:
    global _RAY_OWNED
    ray = sys.modules.get("ray")
    if _RAY_OWNED and ray is not None and ray.is_initialized():
        ray.shutdown()
    _RAY_OWNED = False


def disconnect_ray() -> None:
    """End what :func:`connect_ray` connected: stop embedded Ray, or disconnect from the cluster (it stays up)."""
    ray = sys.modules.get("ray")
    if _RAY_OWNED:
        _shutdown_embedded_ray()
    elif ray is not None and ray.is_initialized():
        ray.shutdown()


def _run_ray(
    fn: Callable, tasks: list[Task], workers: int, address: str | None, initializer, keep_pool: bool, log_name: str
) -> Iterator[Finished]:
    """One Ray task per item; results are yielded in completion order."""
    ray, connected_here = connect_ray(address, workers)
    owned = _RAY_OWNED
    level = logging.getLogger(log_name).getEffectiveLevel()
    remote = ray.remote(num_cpus=1)(_ray_task)
    pending: dict = {}
    try:
        for task in tasks:
            pending[remote.remote(fn, task.args, initializer, log_name, level)] = task
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    value, records = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - the task raised (RayTaskError wraps it) or its worker died
                    yield Finished(task.key, error=getattr(e, "cause", None) or e, where="ray")
                else:
                    reemit(records)
                    yield Finished(task.key, value, where="ray")
    finally:
        for ref in pending:  # interrupted: do not leave work running on a cluster
            ray.cancel(ref)
        if connected_here and not (keep_pool and owned):
            if owned:
                _shutdown_embedded_ray()
            else:
                ray.shutdown()  # disconnects this driver; the cluster stays up


# ---------------------------------------------------------------------- entry
def run_tasks(
    fn: Callable,
    tasks: Iterable[Task],
    workers: int = 1,
    ray_address: str | None = None,
    initializer: Callable[[], None] | None = None,
    keep_pool: bool = False,
    log_name: str = "urban_detection",
) -> Iterator[Finished]:
    """Run ``fn(*task.args)`` for every task; yield a :class:`Finished` for each as it completes.

    ``fn`` and ``initializer`` must be module-level functions (they are pickled by
    reference), the arguments and return values picklable. ``initializer`` runs once
    in every helper process and Ray worker before its first task (e.g. to limit its
    threads). ``workers`` is the number of local processes (the caller included) or
    embedded Ray CPUs; a Ray cluster runs as many tasks at once as it has CPUs. See
    :func:`choose_backend` for what ``ray_address`` selects; a process already connected
    to Ray keeps that connection whatever the address. ``keep_pool=True`` keeps
    the local helpers, or the embedded Ray it started, for later calls
    (:func:`shutdown_pool` stops them).

    On a Ray cluster each task runs on whichever node has a free CPU, so everything a
    task opens by path must exist at that same path on every node (shared storage),
    and the project and its dependencies must be installed there.
    """
    tasks = list(tasks)
    if not tasks:
        return
    backend, address = choose_backend(workers, ray_address)
    workers = max(1, int(workers))
    if backend == "ray":
        yield from _run_ray(fn, tasks, workers, address, initializer, keep_pool, log_name)
    elif backend == "pool" and len(tasks) > 1:
        yield from _run_pool(fn, tasks, min(workers, len(tasks)), initializer, keep_pool, log_name)
    else:
        for task in tasks:
            yield _run_here(fn, task)


__all__ = [
    "EMBEDDED_RAY",
    "POOL_STARTUP_SECONDS",
    "Finished",
    "Task",
    "call_captured",
    "choose_backend",
    "connect_ray",
    "disconnect_ray",
    "reemit",
    "run_tasks",
    "shutdown_pool",
    "warm_pool",
]
