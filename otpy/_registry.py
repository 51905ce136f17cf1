"""Registry: a local key-value store of processes, for names, properties and pubsub.

Example::

    otpy.Registry.start_link(keys="unique", name="sessions")

    class Session(otpy.GenServer):
        def init(self, user):
            self.user = user

        def handle_call(self, request, caller):
            return (self.user, request)

    pid = Session.start_link("ann", name=otpy.via("sessions", "ann"))
    otpy.GenServer.call(otpy.via("sessions", "ann"), "hi")      # ('ann', 'hi')
    otpy.Registry.lookup("sessions", "ann")                      # [(pid, None)]

    otpy.Registry.start_link(keys="duplicate", name="topics")   # a pubsub
    otpy.Registry.register("topics", "news", "any value")        # each subscriber, for itself
    otpy.Registry.dispatch(
        "topics", "news", lambda entries: [otpy.send(p, "extra!") for p, _ in entries]
    )

Each entry is a ``(pid, value)`` pair under a key. A process registers only
itself (``Registry.register`` from the process being registered; ``via``
names are registered by the runtime on behalf of the process being started),
and its entries go when it unregisters them or dies.

Keys (``keys=``, default ``"unique"``):

* ``"unique"``: a key has at most one entry. Registering a key that a live
  process holds raises ``otpy.AlreadyRegisteredError`` with ``.pid`` the
  holder (also when the holder is the caller itself). Only unique registries
  give ``via`` names and support ``update_value``.
* ``"duplicate"``: any number of entries per key, also several from one
  process (``keys(reg, pid)`` then lists the key once per entry). Use it for
  properties and pubsub.

Partitions (``partitions=``, default 1): the table is split into that many
partitions, each with its own lock, so that processes using different
partitions never wait for each other. Unique registries partition by key
(a lookup reads one partition); duplicate registries by pid (a registration
touches one partition, a lookup reads them all), as Elixir does. Keys that are
ints, strs, bytes or tuples of them land in the same partition in every run.
A good value for a busy registry is ``os.cpu_count()``.

Listeners (``listeners=``, default ``()``): names or pids of processes that get
``("register", registry, key, pid, value)`` after every registration and
``("unregister", registry, key, pid)`` after every ``unregister`` that removed
something, where ``registry`` is the registry's name (its pid if it has no
name). No message is sent when an owner dies: a listener that cares monitors
the pid. A dead or unknown listener is skipped.

Meta (``meta=``, default none): a mapping stored with the registry, read with
``meta(reg, key)`` (``None`` when absent) and changed with ``put_meta`` and
``delete_meta``.

Names: ``otpy.via(reg, key)`` (optionally ``value=``, stored as the entry's
value) is a name for ``name=`` of ``GenServer.start_link`` & co., and a
destination for ``otpy.send``, ``GenServer.call`` and ``GenServer.cast``. A
taken key makes the start raise ``otpy.AlreadyStartedError``.

When entries go: an entry is removed by ``unregister`` or when its process
dies, after the process is dead and *before* its links and monitors fire. So
a process that has received the ``Down`` (or ``Exit``) of an owner never finds
that owner in a later lookup; reads also skip the entries of a process that
is already dead (``count`` counts them until they are removed, an instant
later). When the registry process exits, its table goes with it; every
function then raises ``otpy.NoProcError``. Unlike Elixir, registering does not
link the caller to the registry (cleanup does not need a link), so a registry
that crashes does not take the registered processes with it; put the
registry before its users under a ``"rest_for_one"`` supervisor if they must
start again with it.

Which process does the work: all of it happens in the calling process.
Lookups, registrations and dispatch read and write the shared table under
per-partition locks; they never wait for the registry's process, which only
owns the table's lifetime, so readers scale. Functions you pass
(``match``'s predicate, ``dispatch``'s callback, ``update_value``'s function)
run in the caller with no lock held.

Errors: an unknown or dead registry raises ``otpy.NoProcError``. A live
process that is not a registry, and an operation that the registry's kind
does not support (``via`` names and ``update_value`` in a duplicate
registry), raise ``TypeError``: Elixir raises ``ArgumentError`` there, but
``GenServer.cast`` must never raise, and it lets ``TypeError`` pass quietly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Literal

import attrs

from . import _core as core
from ._child_spec import ChildSpec, spec_with
from ._core import Pid
from ._exceptions import AlreadyRegisteredError, AlreadyStartedError, NoProcError, NotFoundError
from ._gen_server import GenServer
from ._hashing import equal_keys_hash

__all__ = ["Keys", "Registry", "Via", "via"]

Keys = Literal["unique", "duplicate"]
_KEYS = ("unique", "duplicate")

Entry = tuple[Pid, Any]


# -- the table -------------------------------------------------------------------------------
#
# A registry's state is a _Table reached from any process with core.data_of(registry): no
# message goes to the registry's process. The table is cut into partitions; each partition
# has one lock guarding everything in it. Code never holds two partition locks at once and
# never calls out (on_exit, sends, user functions) while holding one.
#
# An entry lives in its *key partition* (unique: chosen by the key; duplicate: by the pid).
# Each registered process has an _Owner in its *pid partition* (chosen by the pid): every
# key it holds in the registry, and the exit hook (the _Owner itself) that removes them.
#
# Why entries are gone before a Down: core.on_exit runs the hook after the process is
# marked dead and before its links and monitors fire. A registration therefore (1) records
# the key in the owner (under the pid partition's lock), (2) installs the hook if the owner
# is new, and (3) inserts the entry under the key partition's lock *after checking, under
# that lock, that the process is alive*. If the process is marked dead after (3) checked,
# its hook runs later, finds the key in the owner and removes the entry. If it was marked
# dead before, (3) inserts nothing; and if its hook already ran, the hook released the key
# partition's lock after the mark, so (3) sees the mark. Unregistering goes the other way:
# entry first, then the owner's record of it.


class _Partition:
    __slots__ = ("by_key", "lock", "owners", "size")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # lock guards by_key, owners and size.
        # by_key, unique registry: key -> (pid, value).
        # by_key, duplicate registry: key -> {pid: [value, ...]} (registration order).
        self.by_key: dict[Any, Any] = {}
        self.owners: dict[Pid, _Owner] = {}  # the processes whose pid partition this is
        self.size = 0  # entries in by_key


class _Owner:
    """One process's stake in one registry; called as its exit hook.

    ``keys`` maps each key to the number of entries the process holds (or is
    about to hold) under it; guarded by the lock of the process's pid partition.
    """

    __slots__ = ("keys", "table")

    def __init__(self, table: _Table) -> None:
        self.table = table
        self.keys: dict[Any, int] = {}

    def __call__(self, pid: Pid, reason: Any) -> None:
        self.table.drop_owner(pid, self)


class _Dead(Exception):
    """The process being registered died meanwhile."""


class _Table:
    __slots__ = ("closed", "ident", "listeners", "meta", "meta_lock", "n", "parts", "unique")

    def __init__(
        self,
        ident: str | Pid,
        unique: bool,
        partitions: int,
        listeners: tuple[str | Pid, ...],
        meta: dict[Any, Any],
    ) -> None:
        self.ident = ident  # the registry's name, else its pid (in messages and errors)
        self.unique = unique
        self.n = partitions
        self.parts = tuple(_Partition() for _ in range(partitions))
        self.listeners = listeners
        self.meta_lock = threading.Lock()
        self.meta = meta  # guarded by meta_lock
        # Set once by close(), then read under partition locks: a section that takes a
        # partition lock after close() cleared that partition sees it.
        self.closed = False

    # -- where things live --------------------------------------------------------

    def key_part(self, key: Any, pid: Pid) -> _Partition:
        if self.n == 1:
            return self.parts[0]
        if self.unique:
            return self.parts[equal_keys_hash(key) % self.n]
        return self.parts[pid.id % self.n]

    def unique_part(self, key: Any) -> _Partition:
        return self.parts[0] if self.n == 1 else self.parts[equal_keys_hash(key) % self.n]

    def pid_part(self, pid: Pid) -> _Partition:
        return self.parts[pid.id % self.n]

    def gone(self, what: str) -> NoProcError:
        return NoProcError(self.ident, what)

    # -- registering ----------------------------------------------------------------

    def register(self, pid: Pid, key: Any, value: Any, what: str) -> None:
        """Add an entry for ``pid`` (alive, and not running concurrently).

        Raises:
            AlreadyRegisteredError: a unique key is held by a live process.
            _Dead: ``pid`` died.
            NoProcError: the registry died.
        """
        opart = self.pid_part(pid)
        new: _Owner | None = None
        with opart.lock:
            if self.closed:
                raise self.gone(what)
            owner = opart.owners.get(pid)
            if owner is None:
                owner = new = opart.owners[pid] = _Owner(self)
            owner.keys[key] = owner.keys.get(key, 0) + 1
        if new is not None and not core.on_exit(pid, new):
            self.release(pid, key, 1, owner)
            raise _Dead()
        kpart = self.key_part(key, pid)
        holder: Pid | None = None
        with kpart.lock:
            closed = self.closed
            alive = not closed and core.is_alive(pid)
            if not alive:
                pass
            elif self.unique:
                held = kpart.by_key.get(key)
                if held is not None and (held[0] == pid or core.is_alive(held[0])):
                    holder = held[0]
                else:  # free, or held by a dead process whose exit hook has not run yet
                    kpart.by_key[key] = (pid, value)
                    if held is None:
                        kpart.size += 1
            else:
                entries = kpart.by_key.get(key)
                if entries is None:
                    kpart.by_key[key] = {pid: [value]}
                else:
                    values = entries.get(pid)
                    if values is None:
                        entries[pid] = [value]
                    else:
                        values.append(value)
                kpart.size += 1
        if not alive or holder is not None:
            self.release(pid, key, 1, owner)
            if closed:
                raise self.gone(what)
            if not alive:
                raise _Dead()
            raise AlreadyRegisteredError(holder, key)
        self.notify(("register", self.ident, key, pid, value))

    def unregister(self, pid: Pid, key: Any) -> None:
        kpart = self.key_part(key, pid)
        with kpart.lock:
            removed = self.remove(kpart, key, pid)
        if removed:
            self.release(pid, key, removed, None)
            self.notify(("unregister", self.ident, key, pid))

    def remove(self, part: _Partition, key: Any, pid: Pid) -> int:
        """Remove ``pid``'s entries under ``key``; the caller holds ``part.lock``."""
        if self.unique:
            held = part.by_key.get(key)
            if held is None or held[0] != pid:
                return 0
            del part.by_key[key]
            part.size -= 1
            return 1
        entries = part.by_key.get(key)
        if entries is None:
            return 0
        values = entries.pop(pid, None)
        if values is None:
            return 0
        if not entries:
            del part.by_key[key]
        part.size -= len(values)
        return len(values)

    def release(self, pid: Pid, key: Any, count: int, owner: _Owner | None) -> None:
        """Forget ``count`` entries of ``pid`` under ``key``; unhook a process left with none."""
        opart = self.pid_part(pid)
        with opart.lock:
            if owner is None:
                owner = opart.owners.get(pid)
                if owner is None:
                    return
            left = owner.keys.get(key, 0) - count
            if left > 0:
                owner.keys[key] = left
            else:
                owner.keys.pop(key, None)
            empty = not owner.keys
            if empty and opart.owners.get(pid) is owner:
                del opart.owners[pid]
        if empty:
            core.cancel_on_exit(pid, owner)

    def drop_owner(self, pid: Pid, owner: _Owner) -> None:
        """The exit hook: ``pid`` is dead; remove all its entries."""
        opart = self.pid_part(pid)
        with opart.lock:
            if opart.owners.get(pid) is owner:
                del opart.owners[pid]
            keys = list(owner.keys)
            owner.keys.clear()
            if not self.unique:  # a duplicate registry keeps a pid's entries in its pid partition
                for key in keys:
                    self.remove(opart, key, pid)
                return
        for key in keys:
            kpart = self.unique_part(key)
            with kpart.lock:
                self.remove(kpart, key, pid)

    def close(self, pid: Pid, reason: Any) -> None:
        """The registry's own exit hook: empty the table and unhook every owner."""
        self.closed = True
        owners: list[tuple[Pid, _Owner]] = []
        for part in self.parts:
            with part.lock:
                owners.extend(part.owners.items())
                part.owners = {}
                part.by_key = {}
                part.size = 0
        with self.meta_lock:
            self.meta = {}
        for owner_pid, owner in owners:
            core.cancel_on_exit(owner_pid, owner)

    def notify(self, message: tuple[Any, ...]) -> None:
        for listener in self.listeners:
            core.send_quiet(listener, message)

    # -- reading ----------------------------------------------------------------------
    #
    # Reads also skip entries of processes that are already dead: the exit hook removes
    # them before any Down is sent, but monitor() on a process that has just died sends
    # Down(noproc) at once, maybe before its hook ran. Dead is set before either Down.

    def lookup_unique(self, key: Any) -> Entry | None:
        part = self.unique_part(key)
        with part.lock:
            held: Entry | None = part.by_key.get(key)
        return held if held is not None and core.is_alive(held[0]) else None

    def partition_entries(self, key: Any) -> list[list[Entry]]:
        """The entries under ``key``, one list per partition that has some."""
        if self.unique:
            held = self.lookup_unique(key)
            return [] if held is None else [[held]]
        found = []
        for part in self.parts:
            with part.lock:
                entries = part.by_key.get(key)
                if not entries:
                    continue
                pairs = [(p, v) for p, values in entries.items() for v in values]
            pairs = [pair for pair in pairs if core.is_alive(pair[0])]
            if pairs:
                found.append(pairs)
        return found

    def lookup(self, key: Any) -> list[Entry]:
        if self.unique:
            held = self.lookup_unique(key)
            return [] if held is None else [held]
        return [entry for found in self.partition_entries(key) for entry in found]

    def keys(self, pid: Pid) -> list[Any]:
        if not core.is_alive(pid):
            return []
        opart = self.pid_part(pid)
        with opart.lock:
            owner = opart.owners.get(pid)
            if owner is None:
                return []
            if not self.unique:
                by_key = opart.by_key
                return [
                    key for key in owner.keys for _ in range(len(by_key.get(key, {}).get(pid, ())))
                ]
            reserved = list(owner.keys)
        # A key may be recorded in the owner while its registration is still under way.
        return [key for key in reserved if (held := self.lookup_unique(key)) and held[0] == pid]

    def values(self, key: Any, pid: Pid) -> list[Any]:
        if not core.is_alive(pid):
            return []
        kpart = self.key_part(key, pid)
        with kpart.lock:
            if self.unique:
                held = kpart.by_key.get(key)
                return [held[1]] if held is not None and held[0] == pid else []
            entries = kpart.by_key.get(key)
            return [] if entries is None else list(entries.get(pid, ()))

    def count(self) -> int:
        total = 0
        for part in self.parts:
            with part.lock:
                total += part.size
        return total

    def update_value(self, pid: Pid, key: Any, fn: Callable[[Any], Any]) -> tuple[Any, Any]:
        part = self.unique_part(key)
        with part.lock:
            held = part.by_key.get(key)
        if held is None or held[0] != pid:
            raise NotFoundError(key)
        old = held[1]
        new = fn(old)  # no lock held: only the owner changes its entry
        with part.lock:
            if part.by_key.get(key) is held:
                part.by_key[key] = (pid, new)
                return (new, old)
        raise NotFoundError(key)


# -- helpers -------------------------------------------------------------------------------

_stable_hash = equal_keys_hash  # its name before otpy._hashing held it


def _check_key(key: object) -> None:
    try:
        hash(key)
    except TypeError:
        raise TypeError(
            f"a Registry key must be hashable; got {key!r} of type {type(key).__name__}"
        ) from None


def _check_ref(reg: object, what: str) -> None:
    if not isinstance(reg, (str, Pid, core.NameResolver)):
        raise TypeError(
            f"{what} takes a registry: its name (str) or its pid; "
            f"got {reg!r} of type {type(reg).__name__}"
        )


def _table_of(reg: object, what: str) -> _Table:
    """The table of registry ``reg`` (a name or a pid).

    Raises:
        NoProcError: no live process is ``reg``.
        TypeError: ``reg`` is not a name or pid, or its process is not a Registry.
    """
    _check_ref(reg, what)
    table = core.data_of(reg)
    if type(table) is _Table:
        return table
    if isinstance(reg, Pid):
        alive = core.is_alive(reg)
    elif isinstance(reg, str):
        alive = core.whereis(reg) is not None
    else:
        alive = reg.whereis_name() is not None  # type: ignore[attr-defined]
    if alive:
        raise TypeError(f"{what}: {reg!r} is a process but not an otpy.Registry")
    raise NoProcError(reg, what)


def _check_fn(fn: object, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} needs a function; got {fn!r} of type {type(fn).__name__}")


def _unsupported(table: _Table, what: str) -> TypeError:
    return TypeError(
        f"{what} needs a registry with unique keys; {table.ident!r} has duplicate keys"
    )


def _options(
    keys: object,
    name: object,
    partitions: object = 1,
    listeners: object = (),
    meta: object = None,
) -> dict[str, Any]:
    """Check start_link's options; returns them as init's keyword arguments."""
    if keys not in _KEYS:
        raise ValueError(f"keys must be 'unique' or 'duplicate'; got {keys!r}")
    if name is not None and not isinstance(name, str):
        raise TypeError(
            f"a Registry's name must be a str or None; got {name!r} of type {type(name).__name__}"
        )
    if isinstance(partitions, bool) or not isinstance(partitions, int):
        raise TypeError(f"partitions must be an int >= 1; got {partitions!r}")
    if partitions < 1:
        raise ValueError(f"partitions must be an int >= 1; got {partitions!r}")
    if isinstance(listeners, (str, Pid)) or not isinstance(listeners, Iterable):
        raise TypeError(
            f"listeners must be a list of process names (str) or pids; got {listeners!r}"
        )
    listeners = tuple(listeners)
    for listener in listeners:
        if not isinstance(listener, (str, Pid)):
            raise TypeError(
                f"listeners must be a list of process names (str) or pids; "
                f"got {listener!r} of type {type(listener).__name__} in it"
            )
    if meta is not None and not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a mapping (or None); got {meta!r}")
    return {
        "keys": keys,
        "registry_name": name,
        "partitions": partitions,
        "listeners": listeners,
        "meta": dict(meta) if meta is not None else {},
    }


# -- the public API -----------------------------------------------------------------------------


class Registry(GenServer):
    """A local key-value store of processes; see the module documentation."""

    __module__ = "otpy"

    # -- starting and stopping -----------------------------------------------------

    @classmethod
    def start_link(  # type: ignore[override]
        cls,
        keys: Keys = "unique",
        name: str | None = None,
        *,
        partitions: int = 1,
        listeners: Iterable[str | Pid] = (),
        meta: Mapping[Any, Any] | None = None,
    ) -> Pid:
        """Start a registry linked to the caller.

        Args:
            keys: ``"unique"`` (default) or ``"duplicate"``.
            name: the registry's name (a str), or None to use it by pid only.
            partitions: number of partitions, an int >= 1 (default 1).
            listeners: names or pids told about registrations (default none).
            meta: initial metadata (default none).

        Returns:
            The registry's pid.

        Raises:
            ValueError: ``keys`` or ``partitions`` is out of range.
            TypeError: an option has the wrong type.
            otpy.AlreadyStartedError: ``name`` is taken.
        """
        options = _options(keys, name, partitions, listeners, meta)
        pid = super().start_link(name=name, **options)
        assert pid is not None
        return pid

    @classmethod
    def start(  # type: ignore[override]
        cls, keys: Keys = "unique", name: str | None = None, **options: Any
    ) -> Pid:
        """Like :meth:`start_link` (same options), without the link."""
        pid = super().start(name=name, **_options(keys, name, **options))
        assert pid is not None
        return pid

    @classmethod
    def child_spec(  # type: ignore[override]
        cls,
        keys: Keys = "unique",
        name: str | None = None,
        *,
        partitions: int = 1,
        listeners: Iterable[str | Pid] = (),
        meta: Mapping[Any, Any] | None = None,
        id: Any = None,
        restart: str | None = None,
        shutdown: Any = attrs.NOTHING,
    ) -> ChildSpec:
        """A child spec that starts a registry with these options.

        ``id`` defaults to ``name`` (to ``otpy.Registry`` without a name), as
        in Elixir; ``restart`` to ``"permanent"``; ``shutdown`` to 5.0.

        Raises:
            ValueError / TypeError: as :meth:`start_link`, at once.
        """
        options = _options(keys, name, partitions, listeners, meta)
        kwargs: dict[str, Any] = {
            "partitions": options["partitions"],
            "listeners": options["listeners"],
            "meta": options["meta"],
        }
        default_id = cls if name is None else name
        start = (cls.start_link, (keys, name), kwargs)
        return spec_with(
            default_id if id is None else id, start, restart=restart, shutdown=shutdown
        )

    @staticmethod
    def stop(reg: object, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the registry with ``reason`` and wait until it is gone (with its table).

        Raises:
            otpy.NoProcError: the registry is not alive.
            otpy.Timeout: it did not stop within ``timeout``.
            otpy.ExitError: it exited with a reason other than ``reason``.
        """
        GenServer.stop(reg, reason, timeout)

    # -- registering -------------------------------------------------------------------

    @staticmethod
    def register(reg: object, key: Hashable, value: Any = None) -> None:
        """Register the calling process under ``key`` with ``value``.

        Listeners get ``("register", registry, key, pid, value)``.

        Raises:
            otpy.AlreadyRegisteredError: a unique key is held by a live process
                (``.pid``: the holder, which may be the caller).
            otpy.NoProcError: the registry is not alive.
            TypeError: ``key`` is not hashable; ``reg`` is not a registry.
        """
        what = "Registry.register"
        _check_key(key)
        me = core.self()
        table = _table_of(reg, what)
        try:
            table.register(me, key, value, what)
        except _Dead:
            core.self()  # the caller was killed meanwhile: this unwinds its code
            raise NoProcError(me, what) from None

    @staticmethod
    def unregister(reg: object, key: Hashable) -> None:
        """Remove the calling process's entries under ``key`` (nothing if it has none).

        Listeners get ``("unregister", registry, key, pid)`` if something was removed.

        Raises:
            otpy.NoProcError: the registry is not alive.
        """
        me = core.self()
        _table_of(reg, "Registry.unregister").unregister(me, key)

    @staticmethod
    def update_value(reg: object, key: Hashable, fn: Callable[[Any], Any]) -> tuple[Any, Any]:
        """Replace the value of the caller's entry under ``key`` by ``fn(value)``.

        Unique registries only. ``fn`` runs in the caller, with no lock held.

        Returns:
            ``(new_value, old_value)``.

        Raises:
            otpy.NotFoundError: the caller holds no entry under ``key``.
            otpy.NoProcError: the registry is not alive.
            TypeError: the registry has duplicate keys; ``fn`` is not callable.
        """
        what = "Registry.update_value"
        _check_fn(fn, what)
        me = core.self()
        table = _table_of(reg, what)
        if not table.unique:
            raise _unsupported(table, what)
        return table.update_value(me, key, fn)

    # -- reading -----------------------------------------------------------------------

    @staticmethod
    def lookup(reg: object, key: Hashable) -> list[tuple[Pid, Any]]:
        """The ``(pid, value)`` entries under ``key`` (``[]`` if none), in registration order.

        Raises:
            otpy.NoProcError: the registry is not alive.
        """
        return _table_of(reg, "Registry.lookup").lookup(key)

    @staticmethod
    def match(
        reg: object, key: Hashable, predicate: Callable[[Any], object]
    ) -> list[tuple[Pid, Any]]:
        """The entries under ``key`` whose value satisfies ``predicate(value)``.

        Raises:
            otpy.NoProcError: the registry is not alive.
            TypeError: ``predicate`` is not callable.
        """
        what = "Registry.match"
        _check_fn(predicate, what)
        entries = _table_of(reg, what).lookup(key)
        return [(pid, value) for pid, value in entries if predicate(value)]

    @staticmethod
    def dispatch(reg: object, key: Hashable, fn: Callable[[list[tuple[Pid, Any]]], Any]) -> None:
        """Call ``fn(entries)`` with the ``(pid, value)`` entries under ``key``.

        As in Elixir, ``fn`` is called once per partition that holds entries
        for the key (so once at most for a unique or unpartitioned registry),
        and not at all if there are none. It runs in the caller.

        Raises:
            otpy.NoProcError: the registry is not alive.
            TypeError: ``fn`` is not callable.
        """
        what = "Registry.dispatch"
        _check_fn(fn, what)
        for entries in _table_of(reg, what).partition_entries(key):
            fn(entries)

    @staticmethod
    def keys(reg: object, pid: Pid) -> list[Any]:
        """The keys ``pid`` holds (in a duplicate registry, once per entry).

        Raises:
            otpy.NoProcError: the registry is not alive.
            TypeError: ``pid`` is not a Pid.
        """
        if not isinstance(pid, Pid):
            raise TypeError(f"Registry.keys takes an otpy.Pid; got {pid!r}")
        return _table_of(reg, "Registry.keys").keys(pid)

    @staticmethod
    def values(reg: object, key: Hashable, pid: Pid) -> list[Any]:
        """The values of ``pid``'s entries under ``key`` (at most one in a unique registry).

        Raises:
            otpy.NoProcError: the registry is not alive.
            TypeError: ``pid`` is not a Pid.
        """
        if not isinstance(pid, Pid):
            raise TypeError(f"Registry.values takes an otpy.Pid; got {pid!r}")
        return _table_of(reg, "Registry.values").values(key, pid)

    @staticmethod
    def count(reg: object) -> int:
        """The number of entries in the registry.

        Raises:
            otpy.NoProcError: the registry is not alive.
        """
        return _table_of(reg, "Registry.count").count()

    # -- metadata ----------------------------------------------------------------------

    @staticmethod
    def meta(reg: object, key: Hashable) -> Any:
        """The metadata stored under ``key``, or ``None``.

        Raises:
            otpy.NoProcError: the registry is not alive.
        """
        table = _table_of(reg, "Registry.meta")
        with table.meta_lock:
            return table.meta.get(key)

    @staticmethod
    def put_meta(reg: object, key: Hashable, value: Any) -> None:
        """Store ``value`` as metadata under ``key``.

        Raises:
            otpy.NoProcError: the registry is not alive.
            TypeError: ``key`` is not hashable.
        """
        _check_key(key)
        table = _table_of(reg, "Registry.put_meta")
        with table.meta_lock:
            table.meta[key] = value

    @staticmethod
    def delete_meta(reg: object, key: Hashable) -> None:
        """Remove the metadata under ``key``, if any.

        Raises:
            otpy.NoProcError: the registry is not alive.
        """
        table = _table_of(reg, "Registry.delete_meta")
        with table.meta_lock:
            table.meta.pop(key, None)

    # -- inside the registry's process ----------------------------------------------------

    def init(
        self,
        keys: Keys,
        registry_name: str | None,
        partitions: int,
        listeners: tuple[str | Pid, ...],
        meta: dict[Any, Any],
    ) -> None:
        me = core.self()
        ident = me if registry_name is None else registry_name
        table = _Table(ident, keys == "unique", partitions, listeners, meta)
        core.set_data(table)
        core.on_exit(me, table.close)


def _check_registry_attr(instance: Via, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, (str, Pid)):
        raise TypeError(
            "otpy.via takes a registry: its name (str) or its pid; "
            f"got {value!r} of type {type(value).__name__}"
        )


def _check_key_attr(instance: Via, attribute: attrs.Attribute[Any], value: object) -> None:
    _check_key(value)


@attrs.frozen(repr=False)
class Via:
    """A name held in a unique Registry: what :func:`via` returns.

    Implements the runtime's name protocol (``whereis_name``,
    ``register_name``, ``unregister_name``). Two of them are equal when they
    name the same key of the same registry, whatever their ``value``.
    """

    registry: str | Pid = attrs.field(validator=_check_registry_attr)
    key: Hashable = attrs.field(validator=_check_key_attr)
    value: Any = attrs.field(default=None, eq=False)

    def __repr__(self) -> str:
        value = "" if self.value is None else f", value={self.value!r}"
        return f"otpy.via({self.registry!r}, {self.key!r}{value})"

    def whereis_name(self) -> Pid | None:
        """The pid registered under the key, or None.

        Raises:
            otpy.NoProcError: the registry is not alive.
            TypeError: the registry has duplicate keys.
        """
        table = _table_of(self.registry, "otpy.via")
        if not table.unique:
            raise _unsupported(table, "otpy.via")
        held = table.lookup_unique(self.key)
        return None if held is None else held[0]

    def register_name(self, pid: Pid) -> None:
        """Register ``pid`` (a process being started) under the key, with ``value``.

        Raises:
            otpy.AlreadyStartedError: the key is taken (``.pid``: the holder).
            otpy.NoProcError: the registry or ``pid`` is not alive.
            TypeError: the registry has duplicate keys.
        """
        what = f"register_name of {self!r}"
        table = _table_of(self.registry, "otpy.via")
        if not table.unique:
            raise _unsupported(table, "otpy.via")
        try:
            table.register(pid, self.key, self.value, what)
        except AlreadyRegisteredError as exc:
            raise AlreadyStartedError(exc.pid, self) from None
        except _Dead:
            raise NoProcError(pid, what) from None

    def unregister_name(self) -> None:
        """Unregister the calling process's entry under the key."""
        Registry.unregister(self.registry, self.key)


def via(registry: str | Pid, key: Hashable, value: Any = None) -> Via:
    """A name for a process, kept in the unique registry ``registry`` under ``key``.

    Use it as ``name=`` when starting a GenServer (or Agent, ...) and as the
    destination of ``otpy.send``, ``GenServer.call`` and ``GenServer.cast``::

        Worker.start_link(name=otpy.via("workers", ("job", 7)))
        otpy.GenServer.call(otpy.via("workers", ("job", 7)), "status")

    ``value`` becomes the entry's value (``Registry.lookup`` returns it).

    Raises:
        TypeError: ``registry`` is not a name or pid, or ``key`` is not hashable.
    """
    return Via(registry, key, value)
