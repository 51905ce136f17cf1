"""The otpy contender: a ``GenServer`` per server, ``Task.async_stream`` for W7,
``otpy.Supervisor`` for W6, ``otpy.stage`` for W8, ``otpy.flow.Flow`` for W9,
``otpy.pool.Pool`` for W10, ``otpy.ratelimit.TokenBucket`` for W11,
``otpy.pipeline.Pipeline`` for W12-W14 and ``otpy.aio.call`` for W15-W16.

Only the public API (API.md) is used. ``call``, ``cast`` are otpy's own
functions, not wrappers, so the hot loops time otpy and nothing of ours.
Servers are started unlinked (``start``), as Pykka actors are, and every
measurement runs in its own ``with otpy.Runtime():`` block.

W6's supervisor is ``Supervisor.start_link`` (one_for_one, a restart
intensity it never reaches) over one ``_Worker``, whose ``init`` sends its pid
to the benchmark's process; ``"kill"`` is ``otpy.exit(pid, "kill")``,
``"raise"`` a cast whose handler raises. The ``otpy`` logger is quiet
(CRITICAL only) meanwhile: the supervisor reports every restart as an error,
also after a kill, and a crashing GenServer logs its traceback.

W8-W16 live in ``bench._otpy_stage``, ``_otpy_flow``, ``_otpy_pool``,
``_otpy_ratelimit``, ``_otpy_pipeline`` and ``_otpy_aio``: should
``otpy.stage``, ``otpy.flow``, ``otpy.pool``, ``otpy.ratelimit``,
``otpy.pipeline`` or ``otpy.aio`` not import (they are newer than the core;
an older ``--base`` may lack them), only those workloads show n/a for otpy,
with a warning on stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from types import ModuleType
from typing import Any

import otpy

from ._contender import (
    AsyncServers,
    AsyncSupervise,
    Bucket,
    Crash,
    Logic,
    MessageFlow,
    Pipeline,
    QueueConsumer,
    StreamConsumer,
    Supervise,
    Supervised,
    WordCount,
    WorkerCrashed,
    WorkerPool,
    quiet_logger,
)


def started(pid: otpy.Pid | None, what: str) -> otpy.Pid:
    """``pid``, or a RuntimeError if ``what``'s ``start`` returned None (``init`` did not ignore)."""
    if pid is None:
        raise RuntimeError(f"{what}.start returned None although init did not return IGNORE")
    return pid


class _Host(otpy.GenServer):
    """Runs a ``Logic``: ``handle_call`` replies with ``on_call``, ``handle_cast`` runs ``on_cast``."""

    def init(self, logic: Logic) -> None:
        self.logic = logic

    def handle_call(self, request: Any, caller: Any) -> Any:
        return self.logic.on_call(request)

    def handle_cast(self, request: Any) -> None:
        self.logic.on_cast(request)


class _Worker(otpy.GenServer):
    """W6's worker: sends its pid to ``watcher`` when it starts, raises on any cast."""

    def init(self, watcher: otpy.Pid) -> None:
        otpy.send(watcher, otpy.self())

    def handle_cast(self, request: Any) -> None:
        raise WorkerCrashed(request)


MAX_RESTARTS = 1_000_000
"""W6's restart intensity, per second: far above what any run reaches."""


class _Supervised:
    """W6 on otpy: a ``Supervisor`` linked to the benchmark's process, its workers' pids in our mailbox."""

    def __init__(self) -> None:
        self.supervisor = otpy.Supervisor.start_link(
            [_Worker.child_spec(otpy.self())],
            strategy="one_for_one",
            max_restarts=MAX_RESTARTS,
            max_seconds=1.0,
        )

    def next_worker(self, timeout: float) -> otpy.Pid:
        """Receive the pid that the next worker's ``init`` sent us."""
        pid = otpy.receive(timeout=timeout)  # otpy.Timeout is a TimeoutError
        if not isinstance(pid, otpy.Pid):
            raise TypeError(f"the benchmark's process received {pid!r}, not a worker's pid")
        return pid

    def crash(self, worker: otpy.Pid, how: Crash) -> None:
        """``"kill"``: ``otpy.exit(worker, "kill")``; ``"raise"``: a cast that makes it raise."""
        if how == "kill":
            otpy.exit(worker, otpy.KILL)
        else:
            otpy.GenServer.cast(worker, how)

    def restarts(self) -> int:
        """The ``restarts`` that ``which_children`` reports for the worker."""
        (child,) = otpy.Supervisor.which_children(self.supervisor)
        return child.restarts

    def stop(self) -> None:
        """``Supervisor.stop``: returns once the worker and the supervisor are gone."""
        otpy.Supervisor.stop(self.supervisor)


@contextmanager
def _supervise() -> Iterator[Supervised]:
    with quiet_logger("otpy"):
        supervised = _Supervised()
        yield supervised
        supervised.stop()


def _import_part(module: str, part: str, workload: str) -> ModuleType | None:
    """Import ``bench.<module>``, which uses ``part`` of otpy; warn and return None if it fails."""
    try:
        return importlib.import_module(f"{__package__}.{module}")
    except Exception as exc:  # a part still being written may fail with anything on import
        warnings.warn(
            f"{part} does not import ({type(exc).__name__}: {exc}); {workload} shows n/a for otpy",
            stacklevel=2,
        )
        return None


def _version() -> str:
    version = getattr(otpy, "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return importlib.metadata.version("otpy")
    except importlib.metadata.PackageNotFoundError:
        return "source tree"


class OtpyContender:
    """The ``otpy`` column."""

    name = "otpy"
    version = _version()
    source: str | None = None
    one_thread_each = False
    serves_threads = True
    call = staticmethod(otpy.GenServer.call)
    cast = staticmethod(otpy.GenServer.cast)

    def __init__(self) -> None:
        self.pool_map: Callable[[Callable[[int], int], Iterable[int]], list[int]] | None = (
            self._pool_map
        )
        self.supervise: Supervise | None = _supervise
        self.async_supervise: AsyncSupervise | None = None
        self.pipeline: Pipeline | None = None
        self.word_count: WordCount | None = None
        self.worker_pool: WorkerPool | None = None
        self.bucket: Bucket | None = None
        self.stream_consumer: StreamConsumer | None = None
        self.queue_consumer: QueueConsumer | None = None
        self.message_flow: MessageFlow | None = None
        self.aio: AsyncServers | None = None
        missing: dict[str, str] = {}

        def part(module: str, name: str, *workloads: str) -> ModuleType | None:
            imported = _import_part(module, name, " and ".join(workloads))
            if imported is None:
                missing.update(dict.fromkeys(workloads, f"n/a ({name} missing)"))
            return imported

        if stage := part("_otpy_stage", "otpy.stage", "W8"):
            self.pipeline = stage.pipeline
        if flow := part("_otpy_flow", "otpy.flow", "W9"):
            self.word_count = flow.word_count
        if pool := part("_otpy_pool", "otpy.pool", "W10"):
            self.worker_pool = pool.worker_pool
        if ratelimit := part("_otpy_ratelimit", "otpy.ratelimit", "W11"):
            self.bucket = ratelimit.bucket
        if pipeline := part("_otpy_pipeline", "otpy.pipeline", "W12", "W13", "W14"):
            self.stream_consumer = pipeline.stream_consumer
            self.queue_consumer = pipeline.queue_consumer
            self.message_flow = pipeline.message_flow
        if aio := part("_otpy_aio", "otpy.aio", "W15", "W16"):
            self.aio = aio.servers
        self.missing: Mapping[str, str] = missing

    def session(self) -> AbstractContextManager[object]:
        """A fresh ``otpy.Runtime()``; leaving it shuts every process down."""
        return otpy.Runtime()

    def start(self, logic: Logic) -> otpy.Pid:
        """Start an unlinked GenServer running ``logic``; returns after ``init``."""
        return started(_Host.start(logic), "GenServer")

    def stop(self, server: otpy.Pid) -> None:
        """``GenServer.stop``: returns once the server has terminated."""
        otpy.GenServer.stop(server)

    @staticmethod
    def _pool_map(fn: Callable[[int], int], items: Iterable[int]) -> list[int]:
        results = []
        for status, value in otpy.Task.async_stream(items, fn):
            if status != "ok":
                raise RuntimeError(
                    f"Task.async_stream yielded {(status, value)!r} for a trivial fn"
                )
            results.append(value)
        return results


def make_contender() -> OtpyContender:
    """Return the ``otpy`` contender."""
    return OtpyContender()
