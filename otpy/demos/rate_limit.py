"""Fetch 40 URLs through a token bucket, retrying only what is worth retrying.

Run it::

    python -m otpy demo rate_limit             # or: python examples/rate_limit.py
    python -m otpy demo rate_limit --seed 3    # another draw of which URL fails how
    python -m otpy demo rate_limit --rate 10 --capacity 2 --urls 20

A local ``http.server`` (on 127.0.0.1, a free port, in a background thread) misbehaves on
purpose: most paths answer 200, some answer 500 once or twice before a 200, some 429 with a
``Retry-After`` header once, some stall past the client's timeout once, some answer 404 or 400
every time, one answers 503 every time, and one URL points at a port where nothing listens.
The client fetches every URL with ``urllib.request`` and prints, per URL, what happened.

What it shows:

* **A token bucket in front of the requests.** ``TokenBucket.start_link(rate=25, capacity=5)``
  allows 25 requests a second with bursts of 5. Every attempt, retries included, takes a token
  first (``TokenBucket.acquire``, which waits its turn first come, first served). The demo ends
  with the rate it achieved, requests sent over the elapsed time, next to the most the bucket
  allows over that time: ``rate + capacity / elapsed`` (the burst is spent once).
* **Bounded concurrency.** ``Task.async_stream(urls, check, max_concurrency=8)`` runs eight
  fetches at a time, each in a task of its own, and yields the results in input order as they
  come. The bucket, not the concurrency, sets the pace: eight workers could go much faster.
* **Selective retry.** ``otpy.retry.call(fetch_once, client, url, tried, policy=POLICY)``
  retries under a ``RetryPolicy`` whose ``on`` is a function (:func:`is_transient`): 5xx,
  timeouts and refused connections are retried with exponential backoff; a 429 is retried
  after exactly the ``Retry-After`` the server sent (``on`` returns that many seconds); every
  other 4xx is final at once, because asking again would get the same answer. At most 4
  attempts within 5 seconds; then the last exception propagates, and the URL's line says
  "gave up".
  (A ``Retry-After`` longer than the time left gives up at once, rather than wait in vain.)
* **Results as values.** ``check`` returns each URL's story (its attempts and final outcome)
  instead of raising, so one dead URL does not end the stream: ``async_stream``'s tasks are
  linked to the caller, and an exception in one would crash it. That is also why the retries
  are inside ``check`` rather than ``async_stream(..., retry=POLICY)``, which retries the same
  way but makes an item that fails for good a crash (an ``otpy.ExitError`` here, or
  ``("exit", exc)`` plus a crash report with ``TaskSupervisor.async_stream_nolink``).
* **Telemetry.** One handler counts the ``("otpy", "retry", "scheduled")`` events (a retry is
  about to wait), ``("otpy", "retry", "exhausted")`` (a policy gave up) and
  ``("otpy", "ratelimit", "reject")``. The bucket emits a reject when ``try_acquire`` finds it
  empty; ``fetch_once`` tries that first only so the demo can count how often the bucket held
  a request back (``acquire`` alone would do). The handler is detached at the end.

For one ``--seed`` every line is the same on every run except timings: the ``[ 0.42s]``
stamps, the throttling count and the rate lines. The server keeps a hit count per path, under
a lock (its request threads run at once), so a flaky path fails its first ``n`` hits whatever
the timing; results come in input order.

Retry-After is normally whole seconds (or a date); this server sends ``0.1`` to keep the run
short, and the client parses it as a float.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import otpy
import otpy.retry
from otpy import telemetry
from otpy.ratelimit import TokenBucket
from otpy.retry import RetryPolicy

Kind = Literal["ok", "flaky", "busy", "slow", "missing", "bad", "broken", "refused"]

REQUEST_TIMEOUT = 1.5
"""Seconds the client waits for an answer before it calls the request timed out.

Generous for a server on the same machine, so that only the stalled requests time out, even on
a busy machine.
"""
STALL = 2.5
"""How long a "slow" path keeps its first request waiting: well past REQUEST_TIMEOUT."""
RETRY_AFTER = 0.1
"""The Retry-After a "busy" path sends with its 429, in seconds."""

SCHEDULED = ("otpy", "retry", "scheduled")
EXHAUSTED = ("otpy", "retry", "exhausted")
REJECT = ("otpy", "ratelimit", "reject")


# -- the plan: which path misbehaves how ----------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A URL of the demo and what the server will do with it."""

    number: int
    kind: Kind
    failures: int
    """How many first requests fail before a 200 (flaky: 1 or 2; busy and slow: 1; else 0)."""

    @property
    def path(self) -> str:
        return f"/item/{self.number:02d}"

    @property
    def shown(self) -> str:
        """The URL as printed: the port is random, so only the path (and a closed port's note)."""
        return f"{self.path} (closed port)" if self.kind == "refused" else self.path


def kind_counts(count: int) -> dict[Kind, int]:
    """How many URLs of each kind a run of ``count`` URLs has (at least one of each)."""
    special: dict[Kind, int] = {
        "flaky": max(1, count // 8),
        "busy": max(1, count // 12),
        "slow": max(1, count // 20),
        "missing": max(1, count // 12),
        "bad": 1,
        "broken": 1,
        "refused": 1,
    }
    return {"ok": count - sum(special.values()), **special}


def plan_targets(count: int, seed: int) -> list[Target]:
    """Draw which URL is which kind, and how often each flaky one fails, from ``seed``."""
    rng = random.Random(seed)
    kinds = [kind for kind, n in kind_counts(count).items() for _ in range(n)]
    rng.shuffle(kinds)
    targets = []
    for number, kind in enumerate(kinds, start=1):
        failures = rng.choice((1, 2)) if kind == "flaky" else int(kind in ("busy", "slow"))
        targets.append(Target(number, kind, failures))
    return targets


# -- the server -----------------------------------------------------------------------------


class PlannedServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` on 127.0.0.1 that answers each path as the plan says.

    Each request runs in a thread of its own; ``hits`` counts the requests per path under
    ``lock``, so the n-th request to a path gets the n-th answer of its plan.
    """

    daemon_threads = False  # server_close() joins the request threads: none outlives the demo

    def __init__(self, targets: list[Target]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.plan = {target.path: target for target in targets}  # read-only once serving
        self.lock = threading.Lock()
        # lock guards hits: path -> requests received so far.
        self.hits: Counter[str] = Counter()
        self.stopping = threading.Event()  # set at shutdown: a stalled request stops waiting

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def answer(self, path: str) -> tuple[int, dict[str, str], bool]:
        """``(status, extra headers, stall first)`` for the next request to ``path``."""
        with self.lock:
            self.hits[path] += 1
            hit = self.hits[path]
        target = self.plan.get(path)
        if target is None:
            return 404, {}, False
        failing = hit <= target.failures
        match target.kind:
            case "flaky" if failing:
                return 500, {}, False
            case "busy" if failing:
                return 429, {"Retry-After": f"{RETRY_AFTER:g}"}, False
            case "slow" if failing:
                return 200, {}, True
            case "missing":
                return 404, {}, False
            case "bad":
                return 400, {}, False
            case "broken":
                return 503, {}, False
        return 200, {}, False

    def received(self) -> int:
        """Requests the server has received, over all paths."""
        with self.lock:
            return sum(self.hits.values())


class _Handler(BaseHTTPRequestHandler):
    server: PlannedServer

    def do_GET(self) -> None:
        status, headers, stall = self.server.answer(self.path)
        if stall and self.server.stopping.wait(STALL):
            return
        body = f"{status} {self.path}\n".encode()
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except ConnectionError:  # the client timed out and hung up (a stalled request)
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Keep quiet: the demo prints its own account of every request."""


@contextlib.contextmanager
def serving(targets: list[Target]) -> Iterator[tuple[PlannedServer, dict[str, str]]]:
    """Run the server in a background thread; yield it and each path's full URL.

    The "refused" target's URL names a port that is bound but not listening, so connecting
    to it is refused. On exit the server stops, its thread and request threads are joined,
    and the sockets are closed.
    """
    server = PlannedServer(targets)
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="rate_limit server"
    )
    try:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        closed_port = closed.getsockname()[1]
        urls = {
            t.path: f"http://127.0.0.1:{closed_port if t.kind == 'refused' else server.port}"
            f"{t.path}"
            for t in targets
        }
        thread.start()
        yield server, urls
    finally:
        server.stopping.set()
        if thread.is_alive():
            server.shutdown()  # returns once serve_forever has returned
            thread.join()
        server.server_close()  # joins the request threads
        closed.close()


# -- the client -----------------------------------------------------------------------------


class FetchError(Exception):
    """A request that did not get a 2xx answer; ``label`` names the failure in the output."""

    label: str


class HTTPStatusError(FetchError):
    """The server answered with a status that is not 2xx."""

    def __init__(self, url: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"{url}: HTTP {status}")
        self.url = url
        self.status = status
        self.retry_after = retry_after  # seconds, from a Retry-After header, if any
        self.label = str(status)


class NetworkError(FetchError):
    """No answer at all: the request timed out, or the connection failed."""

    def __init__(self, url: str, label: str, transient: bool) -> None:
        super().__init__(f"{url}: {label}")
        self.url = url
        self.label = label  # "timeout", "refused", ...
        self.transient = transient  # worth trying again


def is_transient(exc: Exception) -> bool | float:
    """The retry policy's ``on``: retry this failure? A number: retry after that many seconds.

    Retried: 5xx, timeouts, refused and reset connections, and 429 (after its Retry-After, if
    it sent one). Not retried: other 4xx (the same request would get the same answer), and
    anything that is not a :class:`FetchError` (a bug, or the bucket's ``otpy.Timeout``).
    """
    if isinstance(exc, HTTPStatusError):
        if exc.status == 429:
            return True if exc.retry_after is None else exc.retry_after
        return exc.status >= 500
    if isinstance(exc, NetworkError):
        return exc.transient
    return False


POLICY = RetryPolicy(
    on=is_transient,
    attempts=4,
    timeout=5.0,
    wait_initial=0.05,
    wait_max=0.5,
    wait_jitter=0.05,
)
"""Retry what :func:`is_transient` selects: at most 4 attempts, waits from 0.05 s, within 5 s."""


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header's seconds (None: no header, or a date, which is left to the policy)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:  # an HTTP date: use the policy's own wait
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _network_error(url: str, exc: BaseException) -> NetworkError:
    if isinstance(exc, TimeoutError):
        return NetworkError(url, "timeout", transient=True)
    if isinstance(exc, ConnectionRefusedError):
        return NetworkError(url, "refused", transient=True)
    if isinstance(exc, ConnectionError):
        return NetworkError(url, "connection lost", transient=True)
    return NetworkError(url, type(exc).__name__, transient=False)


@dataclass(frozen=True)
class Attempt:
    """One request: its status or failure label, and the Retry-After it came with."""

    label: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Client:
    """What every fetch needs: the bucket, and an opener that ignores proxy settings."""

    bucket: otpy.Pid
    acquire_timeout: float
    opener: urllib.request.OpenerDirector = field(
        default_factory=lambda: urllib.request.build_opener(urllib.request.ProxyHandler({}))
    )


def fetch_once(client: Client, url: str, tried: list[Attempt]) -> int:
    """One attempt: take a token, GET ``url``, note the attempt in ``tried``.

    Returns:
        The 2xx status.

    Raises:
        HTTPStatusError: any other status.
        NetworkError: no answer (timed out, refused, ...).
        otpy.Timeout: no token within ``client.acquire_timeout`` (never retried).
    """
    # try_acquire first only to make the bucket count a reject when it is empty; then wait.
    if not TokenBucket.try_acquire(client.bucket):
        TokenBucket.acquire(client.bucket, timeout=client.acquire_timeout)
    error: FetchError
    try:
        with client.opener.open(url, timeout=REQUEST_TIMEOUT) as response:
            response.read()
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        error = HTTPStatusError(url, exc.code, _retry_after(exc.headers.get("Retry-After")))
        exc.close()
    except urllib.error.URLError as exc:  # connecting failed; the reason is an OSError
        reason = exc.reason
        error = _network_error(url, reason if isinstance(reason, BaseException) else exc)
    except OSError as exc:  # a timeout (or reset) while waiting for the answer
        error = _network_error(url, exc)
    else:
        tried.append(Attempt(str(status)))
        return status
    retry_after = error.retry_after if isinstance(error, HTTPStatusError) else None
    tried.append(Attempt(error.label, retry_after))
    raise error


@dataclass(frozen=True)
class Result:
    """A URL's story: every attempt in order, and the error it ended with (None: a 2xx)."""

    target: Target
    tried: list[Attempt]
    error: FetchError | None

    def story(self) -> str:
        """E.g. ``"500 -> retried 2x -> 200"`` or ``"404 -> not retried"``."""
        failed = self.tried if self.error is not None else self.tried[:-1]
        if not failed:
            return self.tried[-1].label
        retries = len(self.tried) - 1
        first = ", ".join(dict.fromkeys(a.label for a in failed))
        if self.error is not None and not is_transient(self.error):
            if retries == 0:
                return f"{first} -> not retried"
            end = f"{self.error.label} (not retried)"
        elif self.error is not None:
            end = f"gave up after {len(self.tried)} attempts"
        else:
            end = self.tried[-1].label
        waits = [a.retry_after for a in failed]
        if all(w is not None for w in waits):  # every retry waited as Retry-After said
            step = f"waited {sum(w or 0.0 for w in waits):.2f} s (Retry-After)"
        else:
            step = f"retried {retries}x"
        return f"{first} -> {step} -> {end}"

    @property
    def outcome(self) -> str:
        """One of: "ok", "ok after retries", "not retried", "gave up"."""
        if self.error is None:
            return "ok" if len(self.tried) == 1 else "ok after retries"
        return "gave up" if is_transient(self.error) else "not retried"


def check(client: Client, target: Target, url: str) -> Result:
    """Fetch ``url`` under :data:`POLICY`; return its story, whatever happened."""
    tried: list[Attempt] = []  # this task's own list: only its process appends to it
    try:
        otpy.retry.call(fetch_once, client, url, tried, policy=POLICY)
    except FetchError as exc:
        return Result(target, tried, exc)
    return Result(target, tried, None)


# -- telemetry --------------------------------------------------------------------------------


class Tally:
    """Counts from the telemetry handler, which runs in whichever process emits the event."""

    def __init__(self, bucket: otpy.Pid) -> None:
        self.bucket = bucket
        self.lock = threading.Lock()
        # lock guards retries (failure label -> retries scheduled), exhausted and rejects.
        self.retries: Counter[str] = Counter()
        self.exhausted = 0
        self.rejects = 0

    def snapshot(self) -> tuple[Counter[str], int, int]:
        with self.lock:
            return Counter(self.retries), self.exhausted, self.rejects


def on_event(
    event: tuple[str, ...],
    measurements: Mapping[str, Any],
    metadata: Mapping[str, Any],
    tally: Tally,
) -> None:
    """Count this demo's retries, give-ups and rejects (other code's events are ignored)."""
    if event == REJECT:
        if metadata["limiter"] == tally.bucket:
            with tally.lock:
                tally.rejects += 1
        return
    exc = metadata["exception"]
    if not isinstance(exc, FetchError):
        return
    with tally.lock:
        if event == SCHEDULED:
            tally.retries[exc.label] += 1
        elif event == EXHAUSTED:
            tally.exhausted += 1


# -- the run --------------------------------------------------------------------------------


PLAN_TEXT: dict[Kind, str] = {
    "ok": "200 at once",
    "flaky": "500 once or twice, then 200",
    "busy": f"429 with Retry-After: {RETRY_AFTER:g} once, then 200",
    "slow": f"stall {STALL:g} s once (the client waits {REQUEST_TIMEOUT:g} s), then 200",
    "missing": "404 every time",
    "bad": "400 every time",
    "broken": "503 every time",
    "refused": "a port that refuses connections",
}
"""What the server does with each kind of URL, as the demo's header prints it."""


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {text}")
        return value

    return parse


def main(argv: list[str]) -> int:
    """Serve, fetch every URL through the bucket, print each story, the counts and the rate."""
    parser = argparse.ArgumentParser(
        prog="python -m otpy demo rate_limit",
        description="Fetch URLs from a misbehaving local server through a token bucket, "
        "with selective retries.",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the server's plan (7)")
    parser.add_argument(
        "--urls", type=_int_at_least(10), default=40, help="how many URLs, at least 10 (40)"
    )
    parser.add_argument(
        "--rate", type=_positive_float, default=25.0, help="bucket: requests per second (25)"
    )
    parser.add_argument(
        "--capacity", type=_positive_float, default=5.0, help="bucket: largest burst (5)"
    )
    parser.add_argument(
        "--concurrency", type=_int_at_least(1), default=8, help="fetches at a time (8)"
    )
    args = parser.parse_args(argv)
    if args.capacity < 1:
        parser.error("--capacity must be at least 1: every request takes one token")

    targets = plan_targets(args.urls, args.seed)
    print(
        f"rate_limit demo: seed {args.seed}, {len(targets)} URLs, {args.concurrency} at a time, "
        f"through a token bucket of {args.rate:g}/s (burst {args.capacity:g})"
    )
    print("the local server's plan (how many URLs: what they get):")
    for kind, n in kind_counts(args.urls).items():
        print(f"  {n:3d} {PLAN_TEXT[kind]}")
    print(
        "retry policy: 5xx, timeouts and refused connections with backoff; 429 after its "
        f"Retry-After; no other 4xx; at most {POLICY.attempts} attempts within {POLICY.timeout:g} s"
    )

    with otpy.Runtime(), serving(targets) as (server, urls):
        bucket = TokenBucket.start_link(rate=args.rate, capacity=args.capacity)
        # Long enough for every worker ahead in the queue to get its token first.
        client = Client(bucket, acquire_timeout=5.0 + args.concurrency / args.rate)
        tally = Tally(bucket)
        handler_id = ("otpy.demos.rate_limit", id(tally))
        telemetry.attach_many(handler_id, [SCHEDULED, EXHAUSTED, REJECT], on_event, config=tally)
        try:
            results: list[Result] = []
            start = time.monotonic()
            stream = otpy.Task.async_stream(
                targets,
                lambda t: check(client, t, urls[t.path]),
                max_concurrency=args.concurrency,
                # Each item is bounded already: the policy's timeout bounds its retries, each
                # request has REQUEST_TIMEOUT and each acquire its own timeout.
                timeout=None,
            )
            # Every item yields ("ok", its Result): check returns its failures, and with
            # timeout=None nothing is killed. (A bug in check would raise otpy.ExitError here.)
            for _, res in stream:
                results.append(res)
                at = time.monotonic() - start
                print(
                    f"  [{at:5.2f}s] GET {res.target.shown:<24} attempts={len(res.tried)}  "
                    f"{res.story()}",
                    flush=True,
                )
            elapsed = time.monotonic() - start
        finally:
            telemetry.detach(handler_id)
        TokenBucket.stop(bucket)
        received = server.received()

    outcomes = Counter(result.outcome for result in results)
    statuses = Counter(
        result.error.label for result in results if result.error and result.outcome == "not retried"
    )
    print(
        f"outcomes: {outcomes['ok']} ok at once, {outcomes['ok after retries']} ok after "
        f"retries, {outcomes['not retried']} not retried "
        f"({', '.join(f'{n} x {label}' for label, n in sorted(statuses.items()))}), "
        f"{outcomes['gave up']} gave up"
    )
    retries, exhausted, rejects = tally.snapshot()
    print(
        f"telemetry: {sum(retries.values())} retries scheduled "
        f"({', '.join(f'{label}: {n}' for label, n in sorted(retries.items()))}), "
        f"{exhausted} runs exhausted"
    )
    print(f"throttled: the bucket was empty for {rejects} requests, which then queued for a token")
    sent = sum(len(result.tried) for result in results)
    print(
        f"requests: {sent} sent in {elapsed:.3f} s, {received} of them reached the server "
        f"(the rest went to the closed port)"
    )
    allowed = args.rate + args.capacity / elapsed
    print(
        f"rate: {sent / elapsed:.1f} requests/s achieved; the bucket allows {args.rate:g}/s plus "
        f"a burst of {args.capacity:g}, at most {allowed:.1f}/s over {elapsed:.3f} s"
    )
    steady = max(0.0, sent - args.capacity) / elapsed
    print(
        f"  after the first burst of {args.capacity:g}: {steady:.1f} requests/s "
        f"(at most {args.rate:g})"
    )
    return 0
