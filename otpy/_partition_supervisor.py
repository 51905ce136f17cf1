"""PartitionSupervisor: N copies of one child, and routing of requests by key.

Example::

    otpy.PartitionSupervisor.start_link(child_spec=Counter.child_spec(), name="counters")
    otpy.GenServer.cast(otpy.partition("counters", user_id), ("add", 1))
    otpy.GenServer.call(otpy.partition("counters", user_id), "get")

One server is a bottleneck when many processes talk to it; N servers, each
serving the keys that route to it, are not. ``otpy.partition(name, key)`` is a
destination like a name: an ``int`` key goes to partition ``abs(key) % n``;
any other key by a hash that is the same in every run of the program (not
Python's salted ``hash()`` of a string), so a key always reaches the same
partition.

Options:

* ``child_spec``: the spec (or class) to start once per partition; each copy
  gets the partition number as its id.
* ``partitions=None``: how many (default ``os.cpu_count()``).
* ``name``: required; the name that ``otpy.partition`` routes through.
* ``with_arguments=None``: ``fn(args, partition) -> args`` to give each copy
  its own start arguments (for example its partition number).
* ``strategy``, ``max_restarts``, ``max_seconds``: as for ``otpy.Supervisor``.

Lookups go through no process: the supervisor keeps a table of its current
children (updated as they restart) that ``otpy.partition`` reads under a lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import attrs

from . import _core as core
from ._child_spec import ChildSpec
from ._core import Pid
from ._exceptions import NoProcError
from ._gen_server import GenServer
from ._hashing import stable_hash
from ._supervision import ChildCount, ChildInfo, child_spec_of, start_server
from ._supervisor import Strategy, Supervisor, _SupervisorServer, supervise

__all__ = ["Partition", "PartitionSupervisor", "partition", "stable_hash"]


class _Table:
    """The partitions' current pids, read by any process, written by the supervisor."""

    def __init__(self, partitions: int) -> None:
        self._lock = threading.Lock()  # guards _pids
        self._pids: list[Pid | None] = [None] * partitions

    def update(self, index: Any, pid: Pid | None) -> None:
        with self._lock:
            self._pids[index] = pid

    def pid_for(self, key: object) -> Pid | None:
        with self._lock:
            return self._pids[stable_hash(key) % len(self._pids)]

    def __len__(self) -> int:
        return len(self._pids)


@attrs.frozen
class Partition:
    """The destination ``otpy.partition(name, key)`` returns: the partition ``key`` routes to."""

    supervisor: object
    key: Any

    def whereis_name(self) -> Pid | None:
        table = core.data_of(self.supervisor)
        if not isinstance(table, _Table):
            return None
        return table.pid_for(self.key)

    def register_name(self, pid: Pid) -> None:
        raise TypeError("otpy.partition(...) routes to a partition; it cannot be used as name=")

    def unregister_name(self) -> None:
        raise TypeError("otpy.partition(...) routes to a partition; it cannot be unregistered")


Partition.__module__ = "otpy"


def partition(name: object, key: Any) -> Partition:
    """The partition of PartitionSupervisor ``name`` that ``key`` routes to, as a destination.

    Example::

        otpy.GenServer.call(otpy.partition("workers", order_id), ("process", order))
    """
    return Partition(name, key)


class _PartitionServer(_SupervisorServer):
    kind = "PartitionSupervisor"

    def init(self, module: Any, arg: Any, on_start: Any = None) -> None:
        table = _Table(len(arg.children))
        core.set_data(table)
        super().init(None, arg, table.update)


class PartitionSupervisor:
    """Starts one child per partition and routes requests to them; see the module docs."""

    __module__ = "otpy"

    @staticmethod
    def start_link(
        *,
        child_spec: object,
        name: object,
        partitions: int | None = None,
        with_arguments: Callable[[tuple[Any, ...], int], tuple[Any, ...]] | None = None,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
    ) -> Pid:
        """Start the partitions, linked to the caller.

        Raises:
            otpy.StartError: a partition failed to start (``.child_id`` is its number).
            ValueError / TypeError: a bad option.
        """
        if name is None:
            raise ValueError(
                "a PartitionSupervisor needs a name=, which otpy.partition() routes through"
            )
        if partitions is None:
            partitions = os.cpu_count() or 1
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"partitions must be an int >= 1 or None; got {partitions!r}")
        if with_arguments is not None and not callable(with_arguments):
            raise TypeError(
                f"with_arguments must be a function (args, partition) -> args; got {with_arguments!r}"
            )
        base = child_spec_of(child_spec)
        children = []
        for index in range(partitions):
            fn, args, kwargs = base.start
            if with_arguments is not None:
                args = tuple(with_arguments(args, index))
            children.append(base.replace(id=index, start=(fn, args, kwargs)))
        spec = supervise(
            children, strategy=strategy, max_restarts=max_restarts, max_seconds=max_seconds
        )
        return start_server(_PartitionServer, (None, spec), name, link=True)

    @staticmethod
    def child_spec(*, id: Any = None, **options: Any) -> ChildSpec:
        """A child spec to run a partition supervisor under another supervisor."""
        return ChildSpec(
            id=PartitionSupervisor if id is None else id,
            start=(PartitionSupervisor.start_link, (), options),
            type="supervisor",
        )

    @staticmethod
    def partitions(sup: object) -> int:
        """How many partitions ``sup`` runs."""
        table = core.data_of(sup)
        if not isinstance(table, _Table):
            raise NoProcError(sup, "PartitionSupervisor.partitions")
        return len(table)

    @staticmethod
    def which_children(sup: object) -> list[ChildInfo]:
        """The partitions' children; their ids are the partition numbers."""
        return Supervisor.which_children(sup)

    @staticmethod
    def count_children(sup: object) -> ChildCount:
        return Supervisor.count_children(sup)

    @staticmethod
    def stop(sup: object, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop every partition, then the supervisor."""
        GenServer.stop(sup, reason, timeout)
