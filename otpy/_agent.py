"""Agent: a process that holds one value, read and changed with functions.

Example::

    counter = otpy.Agent.start_link(lambda: 0, name="counter")
    otpy.Agent.update("counter", lambda n: n + 1)
    otpy.Agent.get("counter", lambda n: n)                         # 1
    otpy.Agent.get_and_update("counter", lambda n: (n, n + 10))    # 1; the state is now 11
    otpy.Agent.cast("counter", lambda n: n * 2)                     # fire and forget
    otpy.Agent.stop("counter")

The functions run inside the agent's process, one at a time, so the state
needs no lock. A function that raises crashes the agent (the caller gets
``otpy.ExitError``), as in Elixir: keep expensive or risky work in the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._core import Call, Pid
from ._gen_server import GenServer

__all__ = ["Agent"]


def _check_fn(fn: object, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"Agent.{what} needs a function of the state; got {fn!r}")


class Agent(GenServer):
    """A GenServer whose state is one value; see the module documentation."""

    __module__ = "otpy"

    state: Any

    @classmethod
    def start_link(  # type: ignore[override]
        cls, fn: Callable[[], Any], /, *, name: object = None
    ) -> Pid:
        """Start an agent whose state is ``fn()``, linked to the caller."""
        _check_fn(fn, "start_link")
        pid = super().start_link(fn, name=name)
        assert pid is not None
        return pid

    @classmethod
    def start(cls, fn: Callable[[], Any], /, *, name: object = None) -> Pid:  # type: ignore[override]
        """Like :meth:`start_link`, without the link."""
        _check_fn(fn, "start")
        pid = super().start(fn, name=name)
        assert pid is not None
        return pid

    @staticmethod
    def get(agent: object, fn: Callable[[Any], Any], timeout: float | None = 5.0) -> Any:
        """``fn(state)``, computed in the agent."""
        _check_fn(fn, "get")
        return GenServer.call(agent, ("get", fn), timeout)

    @staticmethod
    def update(agent: object, fn: Callable[[Any], Any], timeout: float | None = 5.0) -> None:
        """Replace the state with ``fn(state)`` and wait until done."""
        _check_fn(fn, "update")
        GenServer.call(agent, ("update", fn), timeout)

    @staticmethod
    def get_and_update(
        agent: object, fn: Callable[[Any], tuple[Any, Any]], timeout: float | None = 5.0
    ) -> Any:
        """``fn(state)`` returns ``(reply, new_state)``; returns ``reply``."""
        _check_fn(fn, "get_and_update")
        return GenServer.call(agent, ("get_and_update", fn), timeout)

    @staticmethod
    def cast(agent: object, fn: Callable[[Any], Any]) -> None:
        """Replace the state with ``fn(state)`` without waiting; never raises for the target."""
        _check_fn(fn, "cast")
        GenServer.cast(agent, fn)

    # -- inside the agent --------------------------------------------------------

    def init(self, fn: Callable[[], Any]) -> None:
        self.state = fn()

    def handle_call(self, request: Any, caller: Call) -> Any:
        op, fn = request
        if op == "get":
            return fn(self.state)
        if op == "update":
            self.state = fn(self.state)
            return None
        if op == "get_and_update":
            result = fn(self.state)
            if not (isinstance(result, tuple) and len(result) == 2):
                raise TypeError(
                    f"Agent.get_and_update's function must return (reply, new_state); got {result!r}"
                )
            reply, self.state = result
            return reply
        raise ValueError(f"unknown Agent request {request!r}")

    def handle_cast(self, fn: Callable[[Any], Any]) -> None:
        self.state = fn(self.state)
