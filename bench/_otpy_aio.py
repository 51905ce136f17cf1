"""W15 and W16 on otpy: GenServers called from coroutines with ``await otpy.aio.call``.

(otpy's W1-W5 run from plain threads; ``cast`` is here for the protocol.)

The call is ``otpy.aio.call`` itself: ``otpy.aio.call(pid, request)`` (its
default timeout, 5 s) for W15, ``otpy.aio.call(pid, request, timeout)`` for
W16. The servers, by ``Serving``:

- ``"inline"``: ``_Host`` (``bench._otpy``), ``handle_call`` replies with
  ``logic.on_call``; an idle server's handler runs on the loop's thread.
- ``"mailbox"``: the same with ``inline_calls = False``: every call goes
  through the server's mailbox and a pool thread, and the reply wakes the
  loop with ``call_soon_threadsafe``.
- ``"timer"``: one request at a time, each answered ``delay`` after the server
  took it up, the OTP way, holding no thread: ``handle_call`` queues the
  request and its caller and returns ``NOREPLY``; ``send_after(delay)`` to
  itself starts the wait for the request at the head, and ``handle_info``
  replies to it (``GenServer.reply``) and starts the next one's.
- ``"sleep"``: ``handle_call`` calls ``otpy.sleep(delay)``, then replies, with
  ``inline_calls = False``, as ``otpy.aio``'s documentation asks of slow
  handlers: inline, the sleep would run on the loop's thread and block it.
  Each sleeping server holds a pool thread (the pool grows past
  ``max_threads`` for threads blocked in an otpy wait).

Servers are started unlinked, and stopped with ``GenServer.stop`` (which
blocks the loop for that moment, outside the clock). Only the public API is used.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import otpy
import otpy.aio

from ._contender import Logic, Serving
from ._otpy import _Host, started


class _MailboxHost(_Host):
    """``_Host`` whose calls always go through its mailbox."""

    inline_calls = False


class _Due:
    """The message a ``_Paced`` server sends itself when the head request's wait is over."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<bench due>"


_DUE = _Due()


class _Paced(otpy.GenServer):
    """``"timer"``: one request at a time, each replied to ``delay`` after it reached the head."""

    def init(self, logic: Logic, delay: float) -> None:
        self.logic = logic
        self.delay = delay
        self.waiting: deque[tuple[Any, Any]] = deque()
        """The requests not answered yet and their callers; the head's timer is running."""

    def handle_call(self, request: Any, caller: Any) -> Any:
        self.waiting.append((request, caller))
        if len(self.waiting) == 1:
            otpy.send_after(self.delay, otpy.self(), _DUE)
        return otpy.NOREPLY

    def handle_info(self, message: Any) -> None:
        if message is not _DUE:
            raise RuntimeError(f"a paced server received {message!r}; this is a bug in bench")
        request, caller = self.waiting.popleft()
        otpy.GenServer.reply(caller, self.logic.on_call(request))
        if self.waiting:
            otpy.send_after(self.delay, otpy.self(), _DUE)


class _Sleeper(otpy.GenServer):
    """``"sleep"``: ``otpy.sleep(delay)`` in ``handle_call``, then the reply (mailbox only)."""

    inline_calls = False

    def init(self, logic: Logic, delay: float) -> None:
        self.logic = logic
        self.delay = delay

    def handle_call(self, request: Any, caller: Any) -> Any:
        otpy.sleep(self.delay)
        return self.logic.on_call(request)


class OtpyAsyncServers:
    """W15-W16's servers on otpy."""

    call = staticmethod(otpy.aio.call)
    """``otpy.aio.call`` itself, with its default timeout (5 s)."""

    call_within = staticmethod(otpy.aio.call)

    cast = staticmethod(otpy.GenServer.cast)
    """``GenServer.cast`` itself: it never blocks, so coroutines call it as it is."""

    def start(self, logic: Logic, serving: Serving, delay: float) -> otpy.Pid:
        """Start an unlinked GenServer of the kind ``serving`` names; returns after ``init``."""
        if serving == "inline":
            return started(_Host.start(logic), "GenServer")
        if serving == "mailbox":
            return started(_MailboxHost.start(logic), "GenServer")
        if serving == "timer":
            return started(_Paced.start(logic, delay), "GenServer")
        if serving == "sleep":
            return started(_Sleeper.start(logic, delay), "GenServer")
        raise ValueError(f"unknown serving {serving!r}; one of inline, mailbox, timer, sleep")

    async def stop(self, server: otpy.Pid) -> None:
        """``GenServer.stop``: returns once the server has terminated (blocking the loop meanwhile)."""
        otpy.GenServer.stop(server)


servers = OtpyAsyncServers()
"""The otpy contender's ``aio``."""
