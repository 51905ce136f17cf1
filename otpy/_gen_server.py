"""GenServer: a process that keeps state and answers calls, casts and messages.

Example::

    class Counter(otpy.GenServer):
        def init(self, start=0):
            self.n = start

        def handle_call(self, request, caller):
            match request:
                case "get":
                    return self.n                   # the return value is the reply

        def handle_cast(self, request):
            match request:
                case ("add", k):
                    self.n += k

    pid = Counter.start_link(10, name="counter")
    otpy.GenServer.cast("counter", ("add", 5))
    Counter.call("counter", "get")                  # 15

Callbacks (all optional except what your server receives):

* ``init(*args, **kwargs)`` runs inside the new process before ``start_link``
  returns. Return ``None`` (or anything) to start, ``otpy.Continue(arg)`` to
  run ``handle_continue(arg)`` before any message, ``otpy.IGNORE`` to make
  ``start_link`` return ``None``; raise ``otpy.Stop(reason)`` or any exception
  to make it raise ``otpy.StartError``.
* ``handle_call(request, caller)``: the return value is the reply;
  ``otpy.NOREPLY`` answers later with ``otpy.GenServer.reply(caller, value)``
  (from any process); ``otpy.Continue(arg, reply=value)`` replies, then continues.
* ``handle_cast(request)``, ``handle_info(message)``,
  ``handle_continue(arg)``: may return ``otpy.Continue(arg)``.
* ``terminate(reason)``: runs when the server stops by ``Stop``, by
  ``GenServer.stop``, by a crash in a callback, and on a ``"shutdown"`` (or
  any) exit signal from its parent while it traps exits; never on ``"kill"``
  or on an exit signal it does not trap.

Stopping: ``raise otpy.Stop(reason, reply=value)`` in a callback stops
cleanly (the caller gets ``reply``, if given); any other exception crashes the
server with that exception as the exit reason, logged with its traceback on
the ``otpy.gen_server`` logger unless the reason is ``"normal"``,
``"shutdown"`` or ``("shutdown", term)``.

Which thread runs a callback: a pool thread, or, for a ``call`` with a
timeout of at least 1 s (the default is 5 s) to an idle server whose recent
callbacks were quick, the caller's own thread: no thread hand-off, a round
trip of a few microseconds. The server still sees itself as ``otpy.self()``,
but a handler must not rely on thread-locals. The cost: a handler running on
the caller's thread cannot be interrupted by the caller's timeout; if it
overruns after all, the caller gets ``otpy.Timeout`` when it returns. Calls
with a timeout below 1 s always go through the mailbox, where the timeout is
exact; so do calls to a server whose last callbacks were slow (more than
1/20 of the timeout) or blocked in an otpy wait. Set the class attribute
``inline_calls = False`` for a server whose every call must go through its
mailbox (for example, one whose handlers may block on I/O).

Bounded mailboxes: the class attributes ``mailbox_limit`` (default ``None``,
unbounded) and ``on_full`` (``"raise"``, ``"drop"`` or ``"block"``) bound how
many user messages (casts, call requests, sends) may wait, as
``otpy.spawn_opt`` does; Agent, supervisors and stages take them too::

    class Ingest(otpy.GenServer):
        mailbox_limit = 10_000
        on_full = "drop"            # a burst past 10,000 is dropped and counted

Context: ``init`` and every callback run in one copy of the starter's
``contextvars`` context, made at ``start``/``start_link`` and kept for the
server's life (a variable set in ``init`` is seen by later callbacks; nothing
leaks back to the starter).

State lives on the instance. Don't define ``__init__`` with parameters: the
runtime makes the instance with ``cls()`` and passes the start arguments to
``init``.
"""

from __future__ import annotations

import logging
import reprlib
from typing import Any, ClassVar, Final

import attrs

from . import _core as core
from ._child_spec import ChildSpec, spec_with
from ._core import Call, Exit, Pid, ProcessExit
from ._exceptions import ExitError

__all__ = ["IGNORE", "NOREPLY", "Continue", "From", "GenServer", "Stop"]

_log = logging.getLogger("otpy.gen_server")


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"otpy.{self._name}"

    def __reduce__(self) -> str:
        return self._name


NOREPLY: Final = _Sentinel("NOREPLY")
"""Returned by ``handle_call``: no reply now; answer later with ``GenServer.reply``."""

IGNORE: Final = _Sentinel("IGNORE")
"""Returned by ``init``: do not start; ``start_link`` returns ``None``."""

From = Call
Call.__module__ = "otpy"  # tracebacks and help() show otpy.From
Call.__name__ = Call.__qualname__ = "From"
"""The type of ``caller`` in ``handle_call``: has ``.pid``; answer it with ``GenServer.reply``."""


@attrs.frozen
class Continue:
    """Returned by a callback: run ``handle_continue(arg)`` before the next message.

    From ``handle_call``, ``Continue(arg, reply=value)`` replies first.
    """

    arg: Any
    reply: Any = NOREPLY


Continue.__module__ = "otpy"


class Stop(Exception):
    """Raised by a callback to stop the server cleanly with ``reason``.

    Example::

        def handle_call(self, request, caller):
            if request == "quit":
                raise otpy.Stop("normal", reply="bye")
    """

    __module__ = "otpy"

    def __init__(self, reason: Any = "normal", reply: Any = NOREPLY) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


_CAST: Final = b"<otpy cast>"
"""A cast travels as the tuple ``(_CAST, request)``: cheaper to make than an object.

Told apart by identity: this module's own bytes object (an equal literal
elsewhere is another object). A bytes object is not tracked by the garbage
collector, unlike an instance of a class, so the collector stops tracking a
cast's tuple the first time it sees that the request is not a container
either: a mailbox holding 200,000 queued casts then costs the collector
nothing (with a class instance as the tag, it cost a fan-in of casts about a
fifth of its time).
"""

_send_quiet = core.send_quiet  # looked up once: GenServer.cast is the hottest call there is
_INF = float("inf")


class _SysStop:
    __slots__ = ("reason",)

    def __init__(self, reason: Any) -> None:
        self.reason = reason


class _ContinueMsg:
    __slots__ = ("arg",)

    def __init__(self, arg: Any) -> None:
        self.arg = arg


def _check_name(name: object) -> None:
    if name is not None and not isinstance(name, (str, core.NameResolver)):
        raise TypeError(
            f"name must be a str or otpy.via(...); got {name!r} of type {type(name).__name__}"
        )


class GenServer:
    """Base class of generic servers; see the module documentation."""

    __module__ = "otpy"

    inline_calls: ClassVar[bool] = True
    """Whether callers may run this server's handlers on their own thread (see above)."""

    mailbox_limit: ClassVar[int | None] = None
    """At most this many user messages wait in the mailbox; ``None`` is unbounded (see above)."""

    on_full: ClassVar[str] = "raise"
    """What a message that finds the mailbox full does: ``"raise"``, ``"drop"`` or ``"block"``."""

    # Attributes the runtime keeps on the instance (prefixed to stay out of the user's way):
    # _otpy_name: its name, for crash reports.
    _otpy_name: object

    # -- starting ------------------------------------------------------------

    @classmethod
    def start_link(cls, *args: Any, name: object = None, **kwargs: Any) -> Pid | None:
        """Start the server linked to the caller; returns after ``init``.

        Returns:
            The pid, or ``None`` if ``init`` returned ``otpy.IGNORE``.

        Raises:
            otpy.StartError: ``init`` raised; ``.reason`` is the exception or the Stop reason.
            otpy.AlreadyStartedError: ``name`` is taken.
        """
        return cls._start(args, kwargs, name, link=True)

    @classmethod
    def start(cls, *args: Any, name: object = None, **kwargs: Any) -> Pid | None:
        """Like :meth:`start_link`, without the link."""
        return cls._start(args, kwargs, name, link=False)

    @classmethod
    def _start(
        cls, args: tuple[Any, ...], kwargs: dict[str, Any], name: object, link: bool
    ) -> Pid | None:
        return cls()._otpy_spawn(args, kwargs, name, link)

    def _otpy_spawn(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], name: object, link: bool
    ) -> Pid | None:
        """Start the process that this instance will be the state of."""
        _check_name(name)
        if name is not None:
            self._otpy_name = name
        cls = type(self)
        return core.spawn_reactive(
            self._otpy_handle,
            self._otpy_init,
            (args, kwargs),
            link=link,
            name=name,
            label=_label(cls),
            inline=cls.inline_calls,
            mailbox_limit=cls.mailbox_limit,
            on_full=cls.on_full,
            behaviour=_behaviour(cls),
        )

    @classmethod
    def child_spec(
        cls,
        *args: Any,
        id: Any = None,
        restart: str | None = None,
        shutdown: Any = attrs.NOTHING,
        **kwargs: Any,
    ) -> ChildSpec:
        """A child spec that starts this server with ``cls.start_link(*args, **kwargs)``.

        ``id`` defaults to the class; ``restart`` to ``"permanent"``,
        ``shutdown`` to 5.0 seconds; ``type`` is ``"worker"``. Override the
        method to change the defaults for a class.
        """
        start = (cls.start_link, args, kwargs)
        return spec_with(cls if id is None else id, start, restart=restart, shutdown=shutdown)

    # -- the client API ----------------------------------------------------------

    @staticmethod
    def call(dest: object, request: Any, timeout: float | None = 5.0) -> Any:
        """Send ``request`` and wait for the reply.

        Raises:
            otpy.Timeout: no reply within ``timeout`` seconds (a late reply is dropped).
            otpy.NoProcError: the server is not alive, or the name is unknown.
            otpy.ExitError: the server died before replying (``.reason`` says why).
        """
        # check_timeout's own fast path, without its call: most calls pass a plain float
        t = timeout if type(timeout) is float and 0.0 <= timeout < _INF else core.check_timeout(timeout)
        return core.call(dest, request, t, ("GenServer.call", dest, request))

    @staticmethod
    def cast(dest: object, request: Any) -> None:
        """Send ``request`` without waiting; never raises, whatever the target."""
        _send_quiet(dest, (_CAST, request))

    @staticmethod
    def reply(caller: From, value: Any) -> None:
        """Answer a ``handle_call`` that returned ``NOREPLY``; works from any process."""
        if not isinstance(caller, Call):
            raise TypeError(f"reply takes the caller handed to handle_call; got {caller!r}")
        caller.reply(value)

    @staticmethod
    def stop(dest: object, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the server with ``reason`` and wait until it is gone (terminate has run).

        Raises:
            otpy.NoProcError: the server is not alive.
            otpy.Timeout: it did not stop within ``timeout``.
            otpy.ExitError: it exited with a reason other than ``reason``.
        """
        t = core.check_timeout(timeout)
        what = "GenServer.stop"
        ok, outcome = core.call_until_exit(dest, _SysStop(reason), t, what)
        if ok or outcome != reason:  # it answered instead of stopping, or died otherwise
            raise ExitError(outcome if not ok else ("unexpected reply", outcome), what)

    # -- default callbacks ----------------------------------------------------------

    def init(self, *args: Any, **kwargs: Any) -> Any:
        """Set up the state; the default accepts no arguments."""
        if args or kwargs:
            raise TypeError(
                f"{type(self).__name__} was started with arguments {args!r} {kwargs!r} "
                "but defines no init() to take them"
            )
        return None

    def handle_call(self, request: Any, caller: From) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} got call {request!r} but defines no handle_call()"
        )

    def handle_cast(self, request: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} got cast {request!r} but defines no handle_cast()"
        )

    def handle_info(self, message: Any) -> Any:
        _log.warning(
            "%s %r received an unexpected message in handle_info(): %r",
            type(self).__name__,
            core.self(),
            message,
        )
        return None

    def handle_continue(self, arg: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} returned Continue({arg!r}) but defines no handle_continue()"
        )

    def terminate(self, reason: Any) -> None:
        return None

    # -- inside the process -----------------------------------------------------------

    def _otpy_init(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            result = self.init(*args, **kwargs)
        except Stop as stop:
            raise ProcessExit(stop.reason) from None
        except Exception as exc:
            self._log_crash(exc, _During("init()"))
            raise ProcessExit(exc) from None
        if result is IGNORE:
            raise core.StartIgnored()
        if type(result) is Continue:
            core.defer_front(_ContinueMsg(result.arg))

    def _otpy_handle(self, msg: Any) -> None:
        kind = type(msg)
        try:
            if kind is Call:
                request = msg.request
                if type(request) is _SysStop:
                    self._otpy_stop(request.reason, msg)
                result = self.handle_call(request, msg)
                if result is NOREPLY:
                    return
                if type(result) is Continue:
                    if result.reply is not NOREPLY:
                        msg.reply(result.reply)
                    self._otpy_continue(result.arg)
                    return
                msg.resolve(True, result)  # msg.reply(result), one call fewer
            elif kind is tuple and msg and msg[0] is _CAST:  # (_CAST, request): see cast
                result = self.handle_cast(msg[1])
                if type(result) is Continue:
                    self._otpy_continue(result.arg)
            elif kind is _ContinueMsg:
                self._otpy_continue(msg.arg)
            elif kind is Exit and msg.pid == core.parent():
                # Only a trapping process gets Exit messages; one from the parent means stop.
                self._otpy_stop(msg.reason, None)
            else:
                result = self.handle_info(msg)
                if type(result) is Continue:
                    self._otpy_continue(result.arg)
        except Stop as stop:
            if stop.reply is not NOREPLY and kind is Call:
                msg.reply(stop.reply)
            self._otpy_stop(stop.reason, None)
        except Exception as exc:
            self._otpy_crash(exc, msg)

    def _otpy_continue(self, arg: Any) -> None:
        while True:
            result = self.handle_continue(arg)
            if type(result) is not Continue:
                return
            arg = result.arg

    def _otpy_stop(self, reason: Any, sys_call: Call | None) -> None:
        """Run terminate and exit with ``reason`` (never returns)."""
        try:
            self.terminate(reason)
        except Exception as exc:
            self._log_crash(exc, _During("terminate()"))
            raise ProcessExit(exc) from None
        if not core.is_normal_exit(reason):
            self._log_crash(reason, _During("a callback"))
        raise ProcessExit(reason)

    def _otpy_crash(self, exc: Exception, msg: Any) -> None:
        self._log_crash(exc, msg)
        try:
            self.terminate(exc)
        except Exception as exc2:
            self._log_crash(exc2, _During("terminate()"))
            raise ProcessExit(exc2) from None
        raise ProcessExit(exc)

    def _log_crash(self, reason: Any, during: Any) -> None:
        """Log a crash report: who, in which callback (``during``: the message or a _During)."""
        if core.is_normal_exit(reason) or not _log.isEnabledFor(logging.ERROR):
            return
        name = getattr(self, "_otpy_name", None)
        who = f"{type(self).__name__} {core.self()!r}" + (f" ({name!r})" if name else "")
        exc_info = (
            (type(reason), reason, reason.__traceback__)
            if isinstance(reason, BaseException)
            else None
        )
        _log.error(
            "GenServer %s terminating in %s\n** Reason: %s",
            who,
            during if type(during) is _During else _describe_message(during),
            _short.repr(reason),
            exc_info=exc_info,
        )


class _During(str):
    """Names the callback a crash happened in when there is no message to show."""


_short = reprlib.Repr()
_short.maxstring = 200
_short.maxother = 200
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = 20
"""Shortens the messages and reasons that crash reports print (OTP caps them too)."""


_labels: dict[type, str] = {}


def _label(cls: type) -> str:
    """``"GenServer module.Class"``, computed once per class (a benign race at worst)."""
    label = _labels.get(cls)
    if label is None:
        label = _labels[cls] = f"{_kind(cls)} {core.describe(cls)}"
    return label


_behaviours: dict[type, str] = {}
_BEHAVIOUR_MODULES = frozenset(
    ("otpy", "otpy.stage", "otpy.pool", "otpy.ratelimit", "otpy.pipeline", "otpy.flow")
)


def _behaviour(cls: type) -> str:
    """What ``process_info(pid).behaviour`` says: the nearest public otpy class, or an override.

    A class sets ``_otpy_behaviour`` to name itself (the private supervisor servers do).
    """
    found = _behaviours.get(cls)
    if found is None:
        found = getattr(cls, "_otpy_behaviour", None)
        if found is None:
            found = "GenServer"
            for base in cls.__mro__:
                if (
                    base.__module__ in _BEHAVIOUR_MODULES
                    and base is not GenServer
                    and not base.__name__.startswith("_")
                ):
                    found = base.__name__
                    break
        _behaviours[cls] = found
    return found


def _kind(cls: type) -> str:
    for base in cls.__mro__:
        if base.__module__ == "otpy" and base is not GenServer:
            return base.__name__
    return "GenServer"


def _describe_message(msg: Any) -> str:
    kind = type(msg)
    if kind is Call:
        return f"handle_call({_short.repr(msg.request)})"
    if kind is tuple and len(msg) == 2 and msg[0] is _CAST:
        return f"handle_cast({_short.repr(msg[1])})"
    if kind is _ContinueMsg:
        return f"handle_continue({_short.repr(msg.arg)})"
    return f"handle_info({_short.repr(msg)})"
