"""Value types of the runtime: Pid, Ref, the Exit and Down messages, reasons.

These are small immutable values. A :class:`Pid` keeps a hidden reference to its
process so that ``send`` needs no table lookup; that reference takes no part in
equality, hashing or printing.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from ._process import Process

__all__ = [
    "KILL",
    "KILLED",
    "NOPROC",
    "NORMAL",
    "SHUTDOWN",
    "TIMEOUT",
    "Down",
    "Exit",
    "Pid",
    "Ref",
    "check_timeout",
    "is_normal_exit",
]

NORMAL: Final = "normal"
SHUTDOWN: Final = "shutdown"
KILL: Final = "kill"
KILLED: Final = "killed"
TIMEOUT: Final = "timeout"
NOPROC: Final = "noproc"


@attrs.frozen(repr=False, order=True, hash=False)
class Pid:
    """A process identifier: hashable, comparable, printed as ``<runtime.id.0>``.

    Example::

        pid = otpy.spawn(print, "hi")
        pid == pid, hash(pid), repr(pid)   # (True, ..., '<1.7.0>')
    """

    runtime_id: int
    id: int
    _proc: Process | None = attrs.field(
        default=None, eq=False, order=False, hash=False, alias="proc"
    )

    def __hash__(self) -> int:
        # Pids key the dicts of every stage and supervisor: a hash of the two ints
        # without the tuple (and class marker) attrs' generated __hash__ builds.
        return self.id ^ (self.runtime_id << 40)

    def __repr__(self) -> str:
        return f"<{self.runtime_id}.{self.id}.0>"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        # A pid travels by value; the process reference does not.
        return (Pid, (self.runtime_id, self.id))


Pid.__module__ = "otpy"

_ref_ids = itertools.count(1)


@attrs.frozen(repr=False, eq=False)
class Ref:
    """A unique reference, as returned by ``monitor`` and ``send_after``.

    A reference equals only itself (as in Erlang, each ``Ref()`` is new), so
    its hash and equality are the object's identity, at C speed: refs key the
    subscription tables of every stage. A copy is the same reference.

    Example::

        ref = otpy.monitor(pid)
        match otpy.receive():
            case otpy.Down(ref=r) if r == ref:
                ...
    """

    id: int = attrs.field(factory=lambda: next(_ref_ids))

    def __repr__(self) -> str:
        return f"#Ref<0.{self.id}>"

    def __copy__(self) -> Ref:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Ref:
        return self


Ref.__module__ = "otpy"


@attrs.frozen
class Exit:
    """An exit signal turned into a message, for a process that traps exits.

    Example::

        otpy.trap_exits(True)
        otpy.spawn_link(lambda: 1 / 0)
        match otpy.receive():
            case otpy.Exit(pid=p, reason=ZeroDivisionError()):
                ...
    """

    pid: Pid
    reason: Any


Exit.__module__ = "otpy"


@attrs.frozen
class Down:
    """A monitored process ended (``reason="noproc"`` if it was already dead).

    Example::

        ref = otpy.monitor(pid)
        match otpy.receive():
            case otpy.Down(ref=r, reason=reason) if r == ref:
                ...
    """

    ref: Ref
    pid: Any
    reason: Any


Down.__module__ = "otpy"


def is_normal_exit(reason: object) -> bool:
    """True for the reasons a transient child is not restarted for.

    That is ``"normal"``, ``"shutdown"`` and ``("shutdown", term)``.
    """
    if reason == NORMAL or reason == SHUTDOWN:
        return True
    return type(reason) is tuple and len(reason) == 2 and reason[0] == SHUTDOWN


def check_timeout(timeout: object, name: str = "timeout") -> float | None:
    """Validate a timeout: ``None`` or a real number >= 0; ``inf`` means ``None``.

    Raises:
        TypeError: not a number.
        ValueError: negative or NaN.
    """
    if timeout is None:
        return None
    if type(timeout) is float and 0.0 <= timeout < math.inf:
        return timeout  # the common case, without the checks below (NaN fails the test)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"{name} must be None or a number of seconds >= 0; got {timeout!r} "
            f"of type {type(timeout).__name__}"
        )
    t = float(timeout)
    if math.isnan(t) or t < 0:
        raise ValueError(f"{name} must be None or a number of seconds >= 0; got {timeout!r}")
    if math.isinf(t):
        return None
    return t
