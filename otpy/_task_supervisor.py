"""TaskSupervisor: a dynamic supervisor for tasks.

Example::

    otpy.TaskSupervisor.start_link(name="tasks", max_children=100)

    task = otpy.TaskSupervisor.async_nolink("tasks", fetch, url)
    match task.yield_(timeout=2.0):
        case ("ok", page): ...
        case ("exit", reason): ...          # the crash reaches us only here
        case None: task.shutdown()

    for result in otpy.TaskSupervisor.async_stream_nolink("tasks", urls, fetch,
                                                         max_concurrency=8, timeout=2.0):
        ...

The tasks are children of the supervisor (temporary: never restarted), so
they stop when it stops, and ``max_children`` bounds how many run at once.

* ``async_`` links the task to the caller too: a crash kills a caller that
  does not trap exits, as ``otpy.Task.async_`` does.
* ``async_nolink`` does not: a crash reaches the caller only through
  ``await_`` (``otpy.ExitError``) or ``yield_`` (``("exit", reason)``).
* ``start_child`` runs a function whose result nobody collects;
  ``restart="transient"`` restarts it after a crash.
* ``async_stream`` / ``async_stream_nolink`` are ``otpy.Task.async_stream``
  with the workers under the supervisor; the nolink variant yields
  ``("exit", reason)`` for an item whose function raised, and goes on.
  Both take ``retry=otpy.retry.RetryPolicy(...)`` as ``Task.async_stream``
  does: an item is retried in its worker, and only its last failure is
  reported (a crash, or ``("exit", exc)`` with nolink)::

      policy = otpy.retry.RetryPolicy(on=ConnectionError, attempts=3)
      for result in otpy.TaskSupervisor.async_stream_nolink("tasks", urls, fetch,
                                                           retry=policy, timeout=None):
          ...
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from typing import Any, Literal

from . import _core as core
from ._child_spec import ChildSpec
from ._core import Pid
from ._dynamic_supervisor import DynamicSupervisor, DynamicSupervisorServer, _options
from ._gen_server import GenServer
from ._supervision import Children, StartChild, answer, start_server
from ._task import AsyncStream, Task, _check_callable
from .retry import RetryPolicy

__all__ = ["TaskSupervisor"]


class _Client:
    """Who asked the supervisor for a task: its contextvars and its callers.

    A task runs in a copy of its client's context, not the supervisor's, and
    ``otpy.callers()`` in it starts with the client, as Elixir's ``$callers``.
    """

    __slots__ = ("callers", "ctx")

    def __init__(self) -> None:
        self.ctx = contextvars.copy_context()
        self.callers = (core.self(), *core.callers())


def _run_task(
    owner: Pid | None, client: _Client, fn: Callable[..., Any], args: tuple[Any, ...]
) -> Any:
    if owner is not None:
        core.link(owner)  # an owner that is already gone ends the task with "noproc"
    return client.ctx.copy().run(fn, *args)


def _start_task(
    fn: Callable[..., Any], args: tuple[Any, ...], owner: Pid | None, client: _Client
) -> tuple[Pid, Any]:
    """A child start function, run in the supervisor: the task is linked to it."""
    return core.spawn_task(
        _run_task,
        (owner, client, fn, args),
        link=True,
        label=f"Task {core.describe(fn)}",
        callers=client.callers,
    )


def _start_child_task(fn: Callable[..., Any], args: tuple[Any, ...], client: _Client) -> Pid:
    """The start function of ``start_child``'s spec (also of its restarts)."""
    return _start_task(fn, args, None, client)[0]


def _start_worker(
    handler: Callable[[Any], None],
    init: Callable[[], None],
    owner: Pid | None,
    label: str,
    client: _Client,
) -> Pid | None:
    """A child start function for an async_stream worker, run in the supervisor."""

    def start() -> None:
        init()
        if owner is not None:
            core.link(owner)

    return core.spawn_reactive(
        handler, start, link=True, label=label, callers=client.callers, behaviour="Task"
    )


class TaskSupervisor:
    """Supervises tasks; see the module documentation."""

    __module__ = "otpy"

    @staticmethod
    def start_link(*, name: object = None, max_children: int | None = None) -> Pid:
        """Start a task supervisor linked to the caller."""
        options = _options(max_children=max_children, max_restarts=3, max_seconds=5.0)
        return start_server(DynamicSupervisorServer, (options,), name, link=True)

    @staticmethod
    def child_spec(*, id: Any = None, **options: Any) -> ChildSpec:
        """A child spec to run a task supervisor under another supervisor."""
        return ChildSpec(
            id=TaskSupervisor if id is None else id,
            start=(TaskSupervisor.start_link, (), options),
            type="supervisor",
        )

    @staticmethod
    def _spawn(sup: object, fn: Callable[..., Any], args: tuple[Any, ...], link: bool) -> Task:
        owner = core.self()
        spec = ChildSpec(
            id=None,
            start=(_start_task, (fn, args, owner if link else None, _Client()), {}),
            restart="temporary",
        )
        pid, reply = answer(core.call(sup, StartChild(spec), None, "TaskSupervisor.async_"))
        return Task(pid, owner, reply)

    @staticmethod
    def async_(sup: object, fn: Callable[..., Any], /, *args: Any) -> Task:
        """Run ``fn(*args)`` as a child of ``sup``, linked to the caller too.

        Raises:
            otpy.MaxChildrenError: the supervisor is full.
        """
        _check_callable(fn, "TaskSupervisor.async_")
        return TaskSupervisor._spawn(sup, fn, args, link=True)

    @staticmethod
    def async_nolink(sup: object, fn: Callable[..., Any], /, *args: Any) -> Task:
        """Run ``fn(*args)`` as a child of ``sup``, not linked to the caller.

        Raises:
            otpy.MaxChildrenError: the supervisor is full.
        """
        _check_callable(fn, "TaskSupervisor.async_nolink")
        return TaskSupervisor._spawn(sup, fn, args, link=False)

    @staticmethod
    def start_child(
        sup: object,
        fn: Callable[..., Any],
        /,
        *args: Any,
        restart: Literal["temporary", "transient", "permanent"] = "temporary",
    ) -> Pid:
        """Run ``fn(*args)`` as a child of ``sup``; nobody collects its result.

        Raises:
            otpy.MaxChildrenError: the supervisor is full.
        """
        _check_callable(fn, "TaskSupervisor.start_child")
        spec = ChildSpec(
            id=None, start=(_start_child_task, (fn, args, _Client()), {}), restart=restart
        )
        pid = DynamicSupervisor.start_child(sup, spec)
        assert pid is not None
        return pid

    @staticmethod
    def children(sup: object) -> list[Pid]:
        """The pids of the running tasks."""
        return core.call(sup, Children(), None, "TaskSupervisor.children")  # type: ignore[no-any-return]

    @staticmethod
    def terminate_child(sup: object, pid: Pid) -> None:
        """Stop a task.

        Raises:
            otpy.NotFoundError: ``pid`` is not a task of ``sup``.
        """
        DynamicSupervisor.terminate_child(sup, pid)

    @staticmethod
    def stop(sup: object, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the supervisor and every task under it."""
        GenServer.stop(sup, reason, timeout)

    @staticmethod
    def _stream(
        sup: object,
        iterable: Iterable[Any],
        fn: Callable[[Any], Any],
        link: bool,
        options: dict[str, Any],
    ) -> AsyncStream:
        owner = core.self()
        client = _Client()

        def spawn_worker(
            handler: Callable[[Any], None], init: Callable[[], None], link_owner: bool
        ) -> Pid | None:
            spec = ChildSpec(
                id=None,
                start=(
                    _start_worker,
                    (
                        handler,
                        init,
                        owner if link_owner else None,
                        f"async_stream worker {core.describe(fn)}",
                        client,
                    ),
                    {},
                ),
                restart="temporary",
            )
            return DynamicSupervisor.start_child(sup, spec)

        return AsyncStream(
            iterable, fn, link=link, spawn_worker=spawn_worker, **_stream_options(**options)
        )

    @staticmethod
    def async_stream(
        sup: object, iterable: Iterable[Any], fn: Callable[[Any], Any], **options: Any
    ) -> AsyncStream:
        """``otpy.Task.async_stream`` with the workers under ``sup``, linked to the caller.

        Takes the same options (``max_concurrency``, ``ordered``, ``timeout``,
        ``on_timeout``, ``zip_input_on_exit``, ``retry``).
        """
        return TaskSupervisor._stream(sup, iterable, fn, True, options)

    @staticmethod
    def async_stream_nolink(
        sup: object, iterable: Iterable[Any], fn: Callable[[Any], Any], **options: Any
    ) -> AsyncStream:
        """Like :meth:`async_stream`, not linked: a crash in ``fn`` yields ``("exit", exc)``."""
        return TaskSupervisor._stream(sup, iterable, fn, False, options)


def _stream_options(
    max_concurrency: int | None = None,
    ordered: bool = True,
    timeout: float | None = 5.0,
    on_timeout: Literal["exit", "kill_task"] = "exit",
    zip_input_on_exit: bool = False,
    retry: RetryPolicy | None = None,
) -> dict[str, Any]:
    return {
        "max_concurrency": max_concurrency,
        "ordered": ordered,
        "timeout": timeout,
        "on_timeout": on_timeout,
        "zip_input_on_exit": zip_input_on_exit,
        "retry": retry,
    }
