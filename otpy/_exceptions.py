"""The exceptions otpy raises.

Every exception derives from :class:`OtpError`; each builds its own message
from the fields it keeps, and subclasses the builtin whose meaning matches::

    OtpError (Exception)
    ├── Timeout (TimeoutError)          receive / call / await / shutdown waited too long
    ├── NoProcError (LookupError)       the target is dead or the name is not registered
    ├── ExitError                       the called process died before replying
    │   └── DeadlockError               a call would close a cycle of blocked calls
    ├── StartError                      init failed, or a child failed to start
    ├── AlreadyStartedError             the name is taken
    ├── AlreadyRegisteredError          a unique Registry key is taken
    ├── MaxChildrenError                a bounded supervisor is full
    ├── MailboxFullError                a send or call met a full bounded mailbox
    └── NotFoundError (LookupError)     no such child or key

Bad arguments raise the builtin ``ValueError`` / ``TypeError`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AlreadyRegisteredError",
    "AlreadyStartedError",
    "DeadlockError",
    "ExitError",
    "MailboxFullError",
    "MaxChildrenError",
    "NoProcError",
    "NotFoundError",
    "OtpError",
    "StartError",
    "Timeout",
]


class OtpError(Exception):
    """Base class of every error otpy raises."""

    __module__ = "otpy"


class Timeout(OtpError, TimeoutError):
    """A wait (receive, call, await, shutdown) took longer than its timeout.

    Attributes:
        what: what was waited for, e.g. ``"GenServer.call(<0.12.0>, 'pop')"``.
        timeout: the timeout in seconds.
    """

    __module__ = "otpy"

    def __init__(self, what: str, timeout: float | None) -> None:
        self.what = what
        self.timeout = timeout
        super().__init__(
            f"{what} got no answer within {timeout}s; "
            "pass a larger timeout= or make the other side answer sooner"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.what, self.timeout))


class NoProcError(OtpError, LookupError):
    """The target process is not alive, or no process is registered under the name.

    Attributes:
        target: the pid or name that was addressed.
        what: the operation, e.g. ``"call"`` or ``"send"``.
    """

    __module__ = "otpy"

    def __init__(self, target: object, what: str = "the operation") -> None:
        self.target = target
        self.what = what
        if isinstance(target, str):
            detail = f"no process is registered under the name {target!r}"
        else:
            detail = f"{target!r} is not alive"
        super().__init__(f"{what} failed: {detail}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.target, self.what))


class ExitError(OtpError):
    """A process exited while the caller depended on it.

    Raised by ``call`` when the server dies before replying, by
    ``Task.await_`` when the task crashed, and by the next otpy call of a plain
    thread whose process was killed (for example through a link).

    Attributes:
        reason: the exit reason (the exception object for a crash).
    """

    __module__ = "otpy"

    def __init__(self, reason: object, what: str | None = None) -> None:
        self.reason = reason
        self.what = what
        prefix = f"{what}: " if what else ""
        super().__init__(f"{prefix}process exited with reason {reason!r}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.reason, self.what))


class DeadlockError(ExitError):
    """A call would close a cycle of processes, each blocked in a call to the next.

    Raised at once in the caller that would close the cycle, instead of a
    ``Timeout`` later (or a hang with ``timeout=None``)::

        # A's handle_call calls B, and B's handle_call calls A
        otpy.GenServer.call(a, "ask_b")   # A's call to B raises DeadlockError in A

    Attributes:
        reason: ``("deadlock", [pids])``: the caller, its target, and so on
            along the chain back to the caller.
        cycle: the same list of pids.
    """

    __module__ = "otpy"

    def __init__(self, cycle: Sequence[object], what: str | None = None) -> None:
        self.cycle = list(cycle)
        self.reason = ("deadlock", self.cycle)
        self.what = what
        prefix = f"{what}: " if what else ""
        chain = " -> ".join(map(repr, [*cycle, cycle[0]])) if cycle else "?"
        OtpError.__init__(
            self,
            f"{prefix}deadlock: this call would close the cycle of blocked calls {chain}; "
            "answer with otpy.NOREPLY and GenServer.reply later, or cast instead of calling back",
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.cycle, self.what))


class MailboxFullError(OtpError):
    """A ``send`` or ``call`` met a full mailbox whose process has ``on_full="raise"``.

    Example::

        pid = otpy.spawn_opt(worker, mailbox_limit=100)
        try:
            otpy.send(pid, job)
        except otpy.MailboxFullError as full:
            print(f"{full.pid} has {full.limit} messages waiting; try later")

    Attributes:
        pid: the process whose mailbox is full.
        limit: its ``mailbox_limit``.
    """

    __module__ = "otpy"

    def __init__(self, pid: object, limit: int) -> None:
        self.pid = pid
        self.limit = limit
        super().__init__(
            f"the mailbox of {pid!r} is full ({limit} messages waiting, its mailbox_limit); "
            "the message was not delivered: retry later, or start it with on_full='block' or 'drop'"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.pid, self.limit))


class StartError(OtpError):
    """A process (or a supervisor's child) failed to start.

    Attributes:
        reason: why: the exception raised by ``init``, or the ``Stop`` reason.
        child_id: the failing child's id when a supervisor starts children, else ``None``.
    """

    __module__ = "otpy"

    def __init__(self, reason: object, child_id: object = None) -> None:
        self.reason = reason
        self.child_id = child_id
        who = f"child {child_id!r}" if child_id is not None else "process"
        super().__init__(f"{who} failed to start: {reason!r}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.reason, self.child_id))


class AlreadyStartedError(OtpError):
    """A name is already taken by a live process (or a supervisor's child id is in use).

    Attributes:
        pid: the process that holds the name (None for a child that is not running).
        name: the name (or child id).
    """

    __module__ = "otpy"

    def __init__(self, pid: object, name: object = None, what: str = "the name") -> None:
        self.pid = pid
        self.name = name
        self.what = what
        super().__init__(f"{what} {name!r} is already in use by {pid!r}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.pid, self.name, self.what))


class AlreadyRegisteredError(OtpError):
    """A key of a unique Registry is already taken.

    Attributes:
        pid: the process that holds the key.
        key: the key.
    """

    __module__ = "otpy"

    def __init__(self, pid: object, key: object = None) -> None:
        self.pid = pid
        self.key = key
        super().__init__(f"the key {key!r} is already registered to {pid!r}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.pid, self.key))


class MaxChildrenError(OtpError):
    """A supervisor with ``max_children`` is full."""

    __module__ = "otpy"

    def __init__(self, max_children: int) -> None:
        self.max_children = max_children
        super().__init__(
            f"the supervisor already runs max_children={max_children} children; "
            "stop one first or raise max_children"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.max_children,))


class NotFoundError(OtpError, LookupError):
    """No such child (or key)."""

    __module__ = "otpy"

    def __init__(self, what: object) -> None:
        self.what = what
        super().__init__(f"not found: {what!r}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.what,))
