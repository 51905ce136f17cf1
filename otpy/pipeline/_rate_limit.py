"""The rate limiter of a pipeline: ``allowed_messages`` per ``interval`` across its producers.

Broadway's ``RateLimiter``, in two pieces. The allowance itself is a
lock-protected counter (:class:`~otpy.pipeline._shared.Allowance`) that every
producer of the pipeline takes from directly, without a message round trip,
each time it emits. This process refills it at the start of every interval
and then tells each producer (a ``Refill`` message), so that a producer that
held back messages or demand because the allowance ran out sends them on.
``Pipeline.update_rate_limiting`` retunes it through a call here.

Within one interval the producers together emit at most ``allowed_messages``
messages (messages from ``test_message``/``test_batch`` are not counted, as
in Broadway). An interval starts when the allowance is refilled and lasts
``interval`` seconds from then, so a late timer makes the interval longer,
never shorter; a new interval length starts a new interval at once.
"""

from __future__ import annotations

import time
from typing import Any

from .. import _core as core
from .._gen_server import GenServer
from ._shared import Shared

__all__ = ["RateLimiter", "Refill", "Retune"]


class Refill:
    """Sent to each producer when the allowance was refilled or retuned."""

    __slots__ = ()


_REFILL = Refill()


class _Tick:
    __slots__ = ("generation",)

    def __init__(self, generation: int) -> None:
        self.generation = generation


class Retune:
    """The call request of ``update_rate_limiting``."""

    __slots__ = ("allowed", "interval")

    def __init__(self, allowed: int | None, interval: float | None) -> None:
        self.allowed = allowed
        self.interval = interval


class RateLimiter(GenServer):
    """The process that refills a pipeline's allowance (see the module documentation)."""

    inline_calls = False

    # Owned by the process; no lock.
    _shared: Shared
    _generation: int  # ticks of an older schedule are ignored

    def init(self, shared: Shared) -> None:
        assert shared.allowance is not None
        self._shared = shared
        self._generation = 0
        shared.allowance.refill()
        self._schedule(time.monotonic())

    def _schedule(self, start: float) -> None:
        assert self._shared.allowance is not None
        _, interval = self._shared.allowance.limits()
        self._generation += 1
        self._next = start + interval
        core.send_after(
            max(0.0, self._next - time.monotonic()), core.self(), _Tick(self._generation)
        )

    def _refill(self) -> None:
        allowance = self._shared.allowance
        assert allowance is not None
        allowance.refill()
        self._notify()

    def _notify(self) -> None:
        """Tell the producers that the allowance changed: they send on what they held."""
        for name in self._shared.producer_names:
            pid = core.whereis(name)
            if pid is not None:
                core.send(pid, _REFILL)

    def handle_info(self, message: Any) -> None:
        if type(message) is _Tick:
            if message.generation == self._generation:
                self._refill()
                self._schedule(time.monotonic())
            return
        super().handle_info(message)

    def handle_call(self, request: Any, caller: Any) -> Any:
        allowance = self._shared.allowance
        assert allowance is not None
        if type(request) is Retune:
            if allowance.update(request.allowed, request.interval):
                self._refill()
                self._schedule(time.monotonic())
            else:
                self._notify()
            return allowance.limits()
        if request == "limits":
            return allowance.limits()
        return super().handle_call(request, caller)
