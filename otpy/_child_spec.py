"""ChildSpec: how a supervisor starts, restarts and stops one child."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, Literal

import attrs

__all__ = ["BRUTAL_KILL", "ChildSpec", "ChildType", "Restart"]

BRUTAL_KILL: Final = "brutal_kill"
"""A child's ``shutdown`` value: kill it at once instead of asking it to stop."""

Restart = Literal["permanent", "transient", "temporary"]
ChildType = Literal["worker", "supervisor"]

_RESTARTS = ("permanent", "transient", "temporary")
_TYPES = ("worker", "supervisor")


def _check_start(spec: ChildSpec, attribute: attrs.Attribute[Any], value: object) -> None:
    ok = (
        isinstance(value, tuple)
        and len(value) == 3
        and callable(value[0])
        and isinstance(value[1], tuple)
        and isinstance(value[2], dict)
    )
    if not ok:
        raise TypeError(
            "a child spec needs start=(fn, args, kwargs): a callable, a tuple and a dict; "
            f"got start={value!r}"
        )


def _check_restart(spec: ChildSpec, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in _RESTARTS:
        raise ValueError(f"restart must be one of {_RESTARTS}; got {value!r}")


def _check_type(spec: ChildSpec, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in _TYPES:
        raise ValueError(f"type must be one of {_TYPES}; got {value!r}")


def _check_shutdown(spec: ChildSpec, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None or value == BRUTAL_KILL:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or value < 0
    ):
        raise ValueError(
            "shutdown must be seconds >= 0, otpy.BRUTAL_KILL, or None (wait forever); "
            f"got {value!r}"
        )


def _default_shutdown(spec: ChildSpec) -> float | None:
    return None if spec.type == "supervisor" else 5.0


@attrs.frozen
class ChildSpec:
    """How a supervisor starts, restarts and stops one child.

    Example::

        spec = otpy.ChildSpec(id="cache", start=(Cache.start_link, (), {"name": "cache"}))
        spec = Cache.child_spec(name="cache")           # the same, from a GenServer class
        spec = Cache.child_spec(restart="transient")    # overrides

    Fields:
        id: the child's identity inside its supervisor (any hashable value).
        start: ``(fn, args, kwargs)``; ``fn(*args, **kwargs)`` must start a
            process linked to the caller and return its pid (or None to be ignored).
        restart: ``"permanent"`` (always restarted, the default),
            ``"transient"`` (only after an abnormal exit: anything but
            ``"normal"``, ``"shutdown"`` or ``("shutdown", term)``) or
            ``"temporary"`` (never restarted).
        shutdown: seconds to wait after a ``"shutdown"`` exit before
            ``"kill"`` (default 5.0 for workers), ``otpy.BRUTAL_KILL`` to kill
            at once, or ``None`` to wait forever (default for supervisors).
        type: ``"worker"`` (default) or ``"supervisor"``.
        backoff: an ``otpy.Backoff`` policy to restart the child after growing
            delays instead of at once (default None; see ``otpy.Supervisor``).
    """

    id: Any
    start: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] = attrs.field(
        validator=_check_start
    )
    restart: Restart = attrs.field(default="permanent", validator=_check_restart)
    # type comes before shutdown because shutdown's default depends on it.
    type: ChildType = attrs.field(default="worker", validator=_check_type, kw_only=True)
    shutdown: float | str | None = attrs.field(
        default=attrs.Factory(_default_shutdown, takes_self=True), validator=_check_shutdown
    )
    modules: Any = attrs.field(default=None, kw_only=True, eq=False)
    backoff: Any = attrs.field(default=None, kw_only=True)
    """An ``otpy.Backoff`` to restart this child with growing delays (see ``otpy.Supervisor``)."""

    def __attrs_post_init__(self) -> None:
        try:
            hash(self.id)
        except TypeError:
            raise TypeError(f"a child id must be hashable; got {self.id!r}") from None
        if self.backoff is not None and not hasattr(self.backoff, "delay"):
            raise TypeError(f"backoff must be an otpy.Backoff or None; got {self.backoff!r}")

    def replace(self, **changes: Any) -> ChildSpec:
        """A copy with some fields changed (``id=``, ``restart=``, ``shutdown=`` ...)."""
        return attrs.evolve(self, **changes)


ChildSpec.__module__ = "otpy"


def spec_with(
    id: Any,
    start: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]],
    *,
    restart: str | None = None,
    shutdown: Any = attrs.NOTHING,
    type: str = "worker",
) -> ChildSpec:
    """A ChildSpec, leaving ``restart`` and ``shutdown`` at their defaults unless given.

    What every ``child_spec(..., id=, restart=, shutdown=)`` classmethod builds.
    """
    changes: dict[str, Any] = {}
    if restart is not None:
        changes["restart"] = restart
    if shutdown is not attrs.NOTHING:
        changes["shutdown"] = shutdown
    return ChildSpec(id=id, start=start, type=type, **changes)  # type: ignore[arg-type]
