"""The observer's HTTP server: the page, the JSON endpoints, one snapshot per refresh.

Threads: one runs ``serve_forever``, one short-lived thread answers each
connection, and one, the *sampler*, takes every snapshot and sends every
kill. The request threads never call otpy in a way that needs a process of
their own (``Runtime.processes`` and ``process_info`` need none), so serving
adds no process to the runtime it shows but the sampler's: the sampler is a
plain thread, and gets the process a plain thread gets in the runtime it
talks to when it first asks a supervisor for its children (its row reads
``thread otpy-observer-PORT``).

Caching: a request that needs a snapshot takes the latest one if it is
younger than ``refresh`` seconds; otherwise it asks the sampler for a new
one, and every request that comes meanwhile waits for that same one. So
however many pages are open, the runtime sees at most one snapshot per
``refresh`` seconds (counted from the end of the previous one).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, HTTPServer
from queue import SimpleQueue
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from typing_extensions import Self

import otpy

from . import _snapshot
from ._page import PAGE

__all__ = ["Server", "serve"]

_log = logging.getLogger("otpy.observer")

SNAPSHOT_WAIT = 10.0
"""How long a request waits for the sampler before it answers 503."""

_LOOPBACK_NAMES = frozenset(("localhost", "127.0.0.1", "::1"))
_PROCESS_PATH = re.compile(r"/api/processes/([^/]+)(/kill)?")


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _Job:
    """Work for the sampler thread: a snapshot (``pid`` None) or a kill."""

    __slots__ = ("future", "pid")

    def __init__(self, pid: otpy.Pid | None) -> None:
        self.pid = pid
        self.future: Future[Any] = Future()


class Server:
    """An observer serving one runtime's processes and supervision trees over HTTP.

    Made by :func:`otpy.observer.serve`; see there for the options.

    Example::

        with otpy.observer.serve(port=8123) as srv:
            print(srv.url)              # http://127.0.0.1:8123/
            ...                         # the page and /api/... answer meanwhile

    Attributes:
        url: the page's address, ``http://HOST:PORT/``.
        host, port: where it listens (``port`` is the real one when 0 was asked).
    """

    __module__ = "otpy.observer"

    def __init__(
        self,
        runtime: Callable[[], otpy.Runtime],
        *,
        host: str,
        port: int,
        token: str | None,
        allow_destructive: bool,
        refresh: float,
    ) -> None:
        self._runtime_of = runtime  # called by the sampler thread only
        self._token = token
        self.allow_destructive = allow_destructive
        self.refresh = refresh
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        # _lock guards _latest, _latest_at, _pending and _closed.
        self._lock = threading.Lock()
        self._latest: _snapshot.Snapshot | None = None
        self._latest_at = -math.inf
        self._pending: _Job | None = None
        self._closed = False
        try:
            self._httpd = _HTTPServer((host, port), _Handler, self)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"the observer cannot listen on {host}:{port}: {exc.strerror or exc}; "
                "pass port=0 for a free port, or stop what listens there",
            ) from exc
        self.host = host
        self.port: int = self._httpd.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        self._hosts = _allowed_hosts(host)
        self._sampler = threading.Thread(
            target=self._sample, name=f"otpy-observer-{self.port}", daemon=True
        )
        self._serving = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"otpy-observer-{self.port}-http",
            daemon=True,
        )
        self._sampler.start()
        self._serving.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.url
        return f"<otpy.observer.Server {state}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving: close the port, end open connections, join the threads. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._httpd.shutdown()  # serve_forever returns
        self._httpd.server_close()  # the port, then the open connections and their threads
        self._jobs.put(None)
        self._sampler.join()
        self._serving.join()

    # -- the sampler ------------------------------------------------------------------

    def _sample(self) -> None:
        """The sampler thread: takes snapshots and sends kills, one at a time."""
        while True:
            job = self._jobs.get()
            if job is None:  # close() puts it last: every job before it was answered
                return
            try:
                result: Any = self._kill(job.pid) if job.pid is not None else self._take()
            except BaseException as exc:  # an interrupted inline call included: keep sampling
                error = exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
                _log.error("otpy.observer: the sampler failed: %r", error, exc_info=error)
                if job.pid is None:
                    with self._lock:
                        self._pending = None
                job.future.set_exception(error)
                continue
            job.future.set_result(result)

    def _take(self) -> _snapshot.Snapshot:
        shot = _snapshot.take(self._runtime_of())
        with self._lock:
            self._latest = shot
            self._latest_at = time.monotonic()
            self._pending = None
        return shot

    def _kill(self, pid: otpy.Pid) -> bool:
        if not otpy.is_alive(pid):
            return False
        try:
            otpy.exit(pid, "kill")
        except otpy.ExitError:  # it was the sampler's own process: it is dead all the same
            pass
        with self._lock:
            self._latest_at = -math.inf  # the next request shows the death
        return True

    def _ask(self, job: _Job) -> Any:
        try:
            return job.future.result(timeout=SNAPSHOT_WAIT)
        except FutureTimeout:
            raise _HTTPError(
                503, f"the observer's sampler did not answer within {SNAPSHOT_WAIT}s"
            ) from None

    def _current(self) -> _snapshot.Snapshot:
        """The latest snapshot if younger than ``refresh`` seconds, else a new one."""
        with self._lock:
            if self._closed:
                raise _HTTPError(503, "the observer is closing")
            if self._latest is not None and time.monotonic() - self._latest_at < self.refresh:
                return self._latest
            job = self._pending
            if job is None:
                job = self._pending = _Job(None)
                self._jobs.put(job)
        shot: _snapshot.Snapshot = self._ask(job)
        return shot

    # -- answering requests -------------------------------------------------------------

    def _handle(self, request: _Handler, method: str) -> None:
        """Answer one request (on its connection's thread); never raises."""
        headers: dict[str, str] = {}
        try:
            status, ctype, body, headers = self._route(request, method)
        except _HTTPError as exc:
            status, ctype = exc.status, "application/json"
            body, headers = _json({"error": exc.message, "status": exc.status}), exc.headers
        except Exception as exc:
            _log.error("otpy.observer: %s %s failed", method, request.path, exc_info=True)
            status, ctype = 500, "application/json"
            body = _json({"error": f"the observer failed: {exc!r}", "status": 500})
        try:
            request.send_response(status)
            request.send_header("Content-Type", ctype)
            request.send_header("Content-Length", str(len(body)))
            request.send_header("Cache-Control", "no-store")
            request.send_header("X-Content-Type-Options", "nosniff")
            for key, value in headers.items():
                request.send_header(key, value)
            request.end_headers()
            if method != "HEAD":
                request.wfile.write(body)
        except OSError:  # the client went away
            pass

    def _route(self, request: _Handler, method: str) -> tuple[int, str, bytes, dict[str, str]]:
        parts = urlsplit(request.path)
        path = parts.path.rstrip("/") or "/"
        self._check_host(request)
        if path in ("/", "/index.html"):
            _allow(method, "GET", "HEAD")
            return 200, "text/html; charset=utf-8", PAGE.encode(), _PAGE_HEADERS
        self._check_token(request)
        query = parse_qs(parts.query, keep_blank_values=True)
        if path == "/api/system":
            _allow(method, "GET", "HEAD")
            shot = self._current()
            system = dict(shot.data["system"])
            system["refresh"] = self.refresh
            system["allow_destructive"] = self.allow_destructive
            return _ok(system)
        if path == "/api/tree":
            _allow(method, "GET", "HEAD")
            return _ok(self._current().data["tree"])
        if path == "/api/processes":
            _allow(method, "GET", "HEAD")
            sort, limit = _list_options(query)
            rows: list[dict[str, Any]] = self._current().data["processes"]
            if sort is not None:
                rows = _snapshot.sort_rows(rows, sort)
            return _ok(rows if limit is None else rows[:limit])
        found = _PROCESS_PATH.fullmatch(path)
        if found is None:
            raise _HTTPError(404, f"no such path {parts.path!r}; see GET / and /api/...")
        if found.group(2) is None:
            _allow(method, "GET", "HEAD")
            shot, pid = self._find(found.group(1))
            info = otpy.process_info(pid)
            if info is None:
                raise _HTTPError(404, f"process {found.group(1)} is not alive")
            names = {row["pid"]: row["name"] for row in shot.data["processes"] if row["name"]}
            return _ok(_snapshot.detail(info, names.get))
        _allow(method, "POST")
        self._check_origin(request)
        if not self.allow_destructive:
            raise _HTTPError(
                403, "this observer does not kill processes; serve it with allow_destructive=True"
            )
        _, pid = self._find(found.group(1))
        if not self._ask(self._queue(pid)):
            raise _HTTPError(404, f"process {found.group(1)} is not alive")
        return _ok({"pid": _snapshot.pid_text(pid), "killed": True})

    def _queue(self, pid: otpy.Pid) -> _Job:
        job = _Job(pid)
        with self._lock:
            if self._closed:
                raise _HTTPError(503, "the observer is closing")
            self._jobs.put(job)
        return job

    def _find(self, text: str) -> tuple[_snapshot.Snapshot, otpy.Pid]:
        """The latest snapshot and the live pid written ``text``; 400 or 404 otherwise."""
        try:
            runtime_id, number = _snapshot.parse_pid(text)
        except ValueError as exc:
            raise _HTTPError(400, str(exc)) from None
        shot = self._current()
        pid = shot.pids.get(f"{runtime_id}.{number}.0")
        if pid is None and runtime_id == shot.runtime.id:  # started since the snapshot
            pid = next((p for p in shot.runtime.processes() if p.id == number), None)
        if pid is None:
            raise _HTTPError(404, f"no process {text} in runtime {shot.runtime.id}")
        return shot, pid

    def _check_token(self, request: _Handler) -> None:
        if self._token is None:
            return
        given = request.headers.get("Authorization", "")
        scheme, _, credential = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credential.strip().encode(), self._token.encode()
        ):
            raise _HTTPError(
                401,
                "this observer wants the header 'Authorization: Bearer <token>' "
                "(the page takes the token from its address: URL#token=...)",
                {"WWW-Authenticate": 'Bearer realm="otpy observer"'},
            )

    def _check_host(self, request: _Handler) -> None:
        """On loopback, answer only requests addressed to loopback (no DNS rebinding)."""
        if self._hosts is None:
            return
        host = request.headers.get("Host")
        if host is not None and _hostname(host) not in self._hosts:
            raise _HTTPError(403, f"this observer serves loopback only, not Host {host!r}")

    def _check_origin(self, request: _Handler) -> None:
        """A kill must come from the observer's own page (or no page at all), never another site."""
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("Host"):
            raise _HTTPError(403, f"a kill from another site ({origin}) is not allowed")


_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}


def _ok(value: Any) -> tuple[int, str, bytes, dict[str, str]]:
    return 200, "application/json", _json(value), {}


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=repr).encode()


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise _HTTPError(
            405,
            f"{method} is not allowed here; use {' or '.join(allowed)}",
            {"Allow": ", ".join(allowed)},
        )


def _list_options(query: dict[str, list[str]]) -> tuple[str | None, int | None]:
    """``sort`` and ``limit`` of ``/api/processes`` (empty means not given); 400 if bad."""
    sort = query.get("sort", [""])[-1] or None
    if sort is not None and sort not in _snapshot.SORT_KEYS:
        raise _HTTPError(
            400, f"cannot sort by {sort!r}; sort by one of: {', '.join(_snapshot.SORT_KEYS)}"
        )
    text = query.get("limit", [""])[-1]
    if not text:
        return sort, None
    if not (text.isascii() and text.isdigit()):
        raise _HTTPError(400, f"limit must be a whole number >= 0; got {text!r}")
    return sort, int(text)


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:8123
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


def _allowed_hosts(host: str) -> frozenset[str] | None:
    """The Host names a loopback server answers to; None (any) for other addresses."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return _LOOPBACK_NAMES | {host} if loopback else None


class _HTTPServer(HTTPServer):
    """A thread per connection; ``server_close`` ends open connections and joins their threads."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], observer: Server) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.observer = observer
        # _conns_lock guards _conns: the open connections and the threads answering them.
        self._conns_lock = threading.Lock()
        self._conns: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer's own looks the host up in DNS (socket.getfqdn), which can take seconds.
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._answer,
            args=(request, client_address),
            name=f"otpy-observer-{self.server_port}-request",
            daemon=True,
        )
        with self._conns_lock:
            self._conns[thread] = request
        thread.start()

    def _answer(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.pop(threading.current_thread(), None)
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.debug("otpy.observer: a connection from %r failed", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        with self._conns_lock:
            conns = dict(self._conns)
        for conn in conns.values():
            try:
                conn.shutdown(socket.SHUT_RDWR)  # a client that sends nothing keeps no thread
            except OSError:
                pass
        for thread in conns:
            thread.join()


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"  # one request per connection
    server_version = "otpy-observer"
    timeout = 30.0  # seconds a connection may stay silent

    def do_GET(self) -> None:
        self.server.observer._handle(self, "GET")

    def do_HEAD(self) -> None:
        self.server.observer._handle(self, "HEAD")

    def do_POST(self) -> None:
        self.server.observer._handle(self, "POST")

    def do_PUT(self) -> None:
        self.server.observer._handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.observer._handle(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("otpy.observer: %s " + format, self.address_string(), *args)


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    runtime: otpy.Runtime | None = None,
    token: str | None = None,
    allow_destructive: bool = False,
    *,
    refresh: float = 1.0,
) -> Server:
    """Serve the observer (the page and its JSON API) for ``runtime`` in background threads.

    Example::

        srv = otpy.observer.serve(port=8123, token="s3cret")
        print(f"{srv.url}#token=s3cret")   # open this in a browser
        srv.close()

    Args:
        host: the address to listen on; loopback by default. On loopback it
            answers only requests whose ``Host`` is loopback too.
        port: the port; 0 (the default) picks a free one (see ``.url``).
        runtime: the runtime to show; default ``otpy.Runtime.current()``.
        token: if given, every ``/api/...`` request needs the header
            ``Authorization: Bearer <token>`` (401 otherwise). The page itself
            (``GET /``, no data in it) is served to anyone; it reads the token
            from its own address, ``URL#token=<token>`` (a fragment never
            reaches the server or its logs), and sends the header.
        allow_destructive: let ``POST /api/processes/<pid>/kill`` kill
            (``otpy.exit(pid, "kill")``); 403 otherwise. A kill must come from
            the page itself or from a client that sends no ``Origin``.
        refresh: seconds a snapshot is reused (and the page's refresh period).

    Returns:
        The :class:`Server`: ``.url``, ``.close()``, a context manager.

    Raises:
        OSError: the address cannot be bound (the message names ``host:port``).
        TypeError, ValueError: a bad argument.
    """
    if not isinstance(host, str) or not host:
        raise TypeError(f"host must be a non-empty str such as '127.0.0.1'; got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int from 0 to 65535; got {port!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be an int from 0 to 65535; got {port!r}")
    if token is not None and (not isinstance(token, str) or not token or token != token.strip()):
        raise ValueError("token must be None or a non-empty str without surrounding spaces")
    if not isinstance(allow_destructive, bool):
        raise TypeError(f"allow_destructive must be a bool; got {allow_destructive!r}")
    if isinstance(refresh, bool) or not isinstance(refresh, (int, float)) or not refresh > 0:
        raise ValueError(f"refresh must be a number of seconds > 0; got {refresh!r}")
    if runtime is None:
        runtime = otpy.Runtime.current()
    elif not isinstance(runtime, otpy.Runtime):
        raise TypeError(f"runtime must be an otpy.Runtime or None; got {runtime!r}")
    if runtime.closed:
        raise ValueError(f"{runtime!r} is shut down: there is nothing to observe")
    observed = runtime
    return Server(
        lambda: observed,
        host=host,
        port=port,
        token=token,
        allow_destructive=allow_destructive,
        refresh=float(refresh),
    )
