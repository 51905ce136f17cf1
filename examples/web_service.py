"""A small web service on an otpy supervision tree: Starlette + uvicorn, drained on SIGTERM.

The HTTP endpoints are coroutines; they talk to otpy processes through ``otpy.aio``, so a
request that waits for a GenServer or a task holds no thread and never blocks the event loop:

* ``PUT /items/{key}`` (a JSON body) and ``GET /items/{key}``: a key-value store, the
  ``Store`` GenServer registered as ``"store"`` (``await otpy.aio.call("store", ...)``);
  every write bumps the item's version;
* ``POST /jobs`` (``{"n": 1000, "ms": 100}``): a short computation that waits ``ms``
  milliseconds (``otpy.sleep``, as a call to a slow backend would), then sums the squares
  below ``n``; it runs under the ``"jobs"`` TaskSupervisor
  (``otpy.TaskSupervisor.async_nolink``) and the request awaits it with
  ``otpy.aio.await_``; ``"fail": true`` makes the job crash, which answers 500 and
  harms nothing else;
* ``GET /health``: ``{"status": "ok", "in_flight": N}``, the other requests in progress.

Run it from the repository root::

    pip install -e '.[examples]'
    python examples/web_service.py --port 8000      # --port 0 picks a free port

    curl -X PUT localhost:8000/items/apple -d '{"price": 3}'
    curl localhost:8000/items/apple
    curl -X POST localhost:8000/jobs -d '{"n": 1000, "ms": 150}'

The tree, started with ``otpy.run``::

    web (one_for_one)
    ├── Store        "store"   the items
    ├── TaskSupervisor "jobs"  the jobs, at most 100 at a time (503 beyond)
    └── HttpServer             uvicorn, in a thread with its own event loop

On SIGTERM (or Ctrl-C) ``otpy.run`` stops the tree in reverse start order. The HTTP server
goes first: it stops accepting (new connections are refused), lets every request in
progress finish (those still running after ``--drain`` seconds are cancelled), and only
then does it end; the jobs supervisor and the store stop after it, so the requests being
drained can still use them. The process then exits with status 0.

Why a thread: uvicorn runs an event loop of its own and ``otpy.run`` owns the signals in
the main thread. So ``HttpServer`` is a supervised GenServer that binds the socket (a port
that is taken fails the start), runs ``uvicorn.Server.serve`` in a thread (uvicorn installs
no signal handlers outside the main thread), and drains it in ``terminate``; it traps exits
so that ``terminate`` runs when its supervisor stops it. If the server stops on its own,
the GenServer crashes and its supervisor starts a fresh one.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import socket
import sys
import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import otpy
import otpy.aio

MAX_JOBS = 100
"""How many jobs may run at once; the TaskSupervisor refuses more (the request gets 503)."""

MAX_N = 1_000_000
MAX_MS = 5_000


# -- the store ------------------------------------------------------------------------------


class Store(otpy.GenServer):
    """The items: ``key -> (value, version)``, owned by this one process.

    Example::

        Store.start_link(name="store")
        otpy.GenServer.call("store", ("put", "apple", {"price": 3}))   # -> 1, the version
        otpy.GenServer.call("store", ("get", "apple"))                 # -> ({"price": 3}, 1)
    """

    def init(self) -> None:
        otpy.trap_exits(True)  # so that terminate runs when the supervisor stops us
        self.items: dict[str, tuple[Any, int]] = {}

    def handle_call(self, request: Any, caller: Any) -> Any:
        match request:
            case ("get", key):
                return self.items.get(key)
            case ("put", key, value):
                version = self.items[key][1] + 1 if key in self.items else 1
                self.items[key] = (value, version)
                return version
            case _:
                raise ValueError(f"unknown store request {request!r}: expected get or put")

    def terminate(self, reason: Any) -> None:
        print(f"store: stopped with {len(self.items)} item(s)", flush=True)


# -- the jobs -------------------------------------------------------------------------------


def crunch(n: int, seconds: float, fail: bool) -> int:
    """A job: wait ``seconds`` (as for a slow backend), then sum the squares below ``n``."""
    otpy.sleep(seconds)
    if fail:
        raise RuntimeError("the job failed on purpose")
    return sum(i * i for i in range(n))


# -- the HTTP application -------------------------------------------------------------------


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class BadRequest(Exception):
    """The request's body is not what the endpoint takes; answered with 400."""


async def json_body(request: Request) -> Any:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        raise BadRequest(f"the body must be JSON: {exc}") from None


def bounded_int(body: dict[str, Any], field: str, default: int, high: int) -> int:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise BadRequest(f"{field!r} must be an integer from 0 to {high}; got {value!r}")
    return value


class WebApp:
    """The ASGI application: the Starlette routes, plus a count of the requests in progress.

    ``in_flight`` is read and written only on the server's event loop (one thread), in the
    coroutines of the requests and in :meth:`HttpServer.terminate`'s drain, which it runs
    there too.

    Example::

        uvicorn.run(WebApp())   # with the store and the jobs supervisor running
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self.routes = Starlette(
            routes=[
                Route("/items/{key}", self.get_item, methods=["GET"]),
                Route("/items/{key}", self.put_item, methods=["PUT"]),
                Route("/jobs", self.run_job, methods=["POST"]),
                Route("/health", self.health, methods=["GET"]),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.routes(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.routes(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def get_item(self, request: Request) -> JSONResponse:
        key = request.path_params["key"]
        try:
            found = await otpy.aio.call("store", ("get", key), timeout=5.0)
        except (otpy.NoProcError, otpy.ExitError, otpy.Timeout) as exc:
            return error(503, f"the store is not available: {exc}")
        if found is None:
            return error(404, f"no item {key!r}")
        value, version = found
        return JSONResponse({"key": key, "value": value, "version": version})

    async def put_item(self, request: Request) -> JSONResponse:
        key = request.path_params["key"]
        try:
            value = await json_body(request)
        except BadRequest as exc:
            return error(400, str(exc))
        try:
            version = await otpy.aio.call("store", ("put", key, value), timeout=5.0)
        except (otpy.NoProcError, otpy.ExitError, otpy.Timeout) as exc:
            return error(503, f"the store is not available: {exc}")
        return JSONResponse({"key": key, "value": value, "version": version})

    async def run_job(self, request: Request) -> JSONResponse:
        try:
            body = await json_body(request)
            if not isinstance(body, dict):
                raise BadRequest(f"the body must be a JSON object; got {body!r}")
            n = bounded_int(body, "n", 1000, MAX_N)
            ms = bounded_int(body, "ms", 100, MAX_MS)
            fail = body.get("fail", False)
            if not isinstance(fail, bool):
                raise BadRequest(f"'fail' must be true or false; got {fail!r}")
        except BadRequest as exc:
            return error(400, str(exc))
        try:
            # Asking the supervisor for a task is a short blocking call; the wait is not.
            task = otpy.TaskSupervisor.async_nolink("jobs", crunch, n, ms / 1000, fail)
        except otpy.MaxChildrenError:
            return error(503, f"too many jobs running (at most {MAX_JOBS}); try again")
        except otpy.NoProcError:
            return error(503, "the jobs supervisor is not available")
        try:
            result = await otpy.aio.await_(task, timeout=MAX_MS / 1000 + 5.0)
        except otpy.Timeout:
            task.shutdown(otpy.BRUTAL_KILL)
            return error(504, "the job took too long")
        except otpy.ExitError as exc:  # the job crashed; with async_nolink it reaches us only here
            return error(500, f"the job failed: {exc.reason!r}")
        return JSONResponse({"n": n, "ms": ms, "result": result})

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "in_flight": self.in_flight - 1})


# -- the HTTP server as a supervised child --------------------------------------------------


class HttpServer(otpy.GenServer):
    """Serves :class:`WebApp` with uvicorn in a thread of its own; drains it on shutdown.

    Example::

        otpy.run([..., HttpServer.child_spec("127.0.0.1", 8000, 10, shutdown=12.0)])

    ``drain`` bounds how long requests in progress may take to finish once the server
    stops; give the child spec a ``shutdown`` a little longer, so that uvicorn cancels
    the stragglers itself before the supervisor would kill the server.
    """

    def init(self, host: str, port: int, drain: int) -> None:
        otpy.trap_exits(True)  # so that terminate (the drain) runs when the supervisor stops us
        self.drain = drain
        self.app = WebApp()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))  # a port that is taken fails the start here
            sock.listen(2048)
        except OSError as exc:
            sock.close()
            raise otpy.Stop(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            lifespan="off",
            log_config=None,  # uvicorn's records go to the logging otpy.run set up
            access_log=False,
            timeout_graceful_shutdown=drain,
        )
        self.server = uvicorn.Server(config)
        started: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()
        self.thread = threading.Thread(
            target=serve,
            args=(self.server, sock, started, otpy.self()),
            name=f"http {host}:{port}",
            daemon=True,
        )
        self.thread.start()
        self.loop = started.result(timeout=10.0)
        shown = f"[{host}]" if ":" in host else host  # an IPv6 address goes in brackets
        print(f"listening on http://{shown}:{port}", flush=True)

    def handle_cast(self, request: Any) -> None:
        match request:
            case ("stopped", reason):  # the server ended by itself: crash, to be restarted
                raise RuntimeError(f"the HTTP server stopped by itself: {reason}")

    def terminate(self, reason: Any) -> None:
        if self.thread.is_alive():
            try:
                future = asyncio.run_coroutine_threadsafe(
                    stop_accepting(self.server, self.app), self.loop
                )
                in_flight = future.result(timeout=5.0)
            except Exception as exc:  # the loop ended meanwhile (or hangs): nothing to drain
                print(f"http: could not start the drain: {exc!r}", flush=True)
            else:
                print(
                    f"http: draining {in_flight} request(s) in flight; new connections are refused",
                    flush=True,
                )
            self.thread.join(self.drain + 1.0)
        print("http: stopped" if not self.thread.is_alive() else "http: still running", flush=True)


async def stop_accepting(server: uvicorn.Server, app: WebApp) -> int:
    """On the server's loop: close the listening socket, ask uvicorn to finish; the requests left."""
    for listener in getattr(server, "servers", ()):  # absent if uvicorn has not started yet
        listener.close()
    server.should_exit = True  # uvicorn then waits for the requests in progress (at most `drain`)
    return app.in_flight


def serve(
    server: uvicorn.Server,
    sock: socket.socket,
    started: concurrent.futures.Future[asyncio.AbstractEventLoop],
    owner: otpy.Pid,
) -> None:
    """The HTTP thread's body: run uvicorn on a loop of its own until it stops."""

    async def main() -> None:
        started.set_result(asyncio.get_running_loop())
        await server.serve(sockets=[sock])

    reason: object = "normal"
    try:
        asyncio.run(main())
    except BaseException as exc:  # also the SystemExit uvicorn raises when its start fails
        reason = exc
    finally:
        sock.close()
        if not started.done():
            started.set_exception(RuntimeError(f"the HTTP server did not start: {reason!r}"))
    otpy.GenServer.cast(owner, ("stopped", reason))  # ignored if it is terminating already


# -- main -----------------------------------------------------------------------------------


def children(host: str = "127.0.0.1", port: int = 8000, drain: int = 10) -> list[Any]:
    """The tree under the root supervisor, in start order (it stops in reverse)."""
    return [
        Store.child_spec(name="store"),
        otpy.TaskSupervisor.child_spec(name="jobs", max_children=MAX_JOBS),
        HttpServer.child_spec(host, port, drain, shutdown=drain + 2.0),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to bind (default: loopback)"
    )
    parser.add_argument("--port", type=int, default=8000, help="the port; 0 picks a free one")
    parser.add_argument(
        "--drain",
        type=int,
        default=10,
        help="seconds the requests in progress may take to finish on SIGTERM (default 10)",
    )
    args = parser.parse_args(argv)
    if args.drain < 0:
        parser.error(f"--drain must be a number of seconds >= 0; got {args.drain}")
    try:
        return otpy.run(
            children(args.host, args.port, args.drain), shutdown=args.drain + 5.0, name="web"
        )
    except otpy.StartError as exc:  # e.g. the port is taken
        print(f"web_service: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
