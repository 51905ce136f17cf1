"""RedisStreamProducer against a real Redis: reads, demand, acks, claims, dead letters, drain, outages."""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import socket
import subprocess
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from brokers import require_redis
from conftest import WAIT, nothing_pending, recv, wait_until
from redis.backoff import NoBackoff
from redis.retry import Retry

import otpy
import otpy.pipeline as pl
import otpy.stage as stage
from otpy import telemetry
from otpy.pipeline._redis import RedisStreamProducer, _Reader, validate_options

pytestmark = pytest.mark.timeout(60)

FAST = {"block": 0.05}
"""Short reads, so that stopping a producer takes milliseconds."""


@pytest.fixture
def url() -> str:
    return require_redis()


@pytest.fixture
def r(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def stream(r: redis.Redis) -> Iterator[str]:
    """A fresh stream name (and its dead-letter stream), deleted afterwards."""
    name = f"otpy-test-{uuid.uuid4().hex}"
    yield name
    r.delete(name, f"{name}:dead", f"{name}:graveyard")


def add(r: redis.Redis, stream: str, n: int, start: int = 0) -> list[str]:
    """Add entries {"n": str(i)} for i in start..start+n-1; return their ids."""
    pipe = r.pipeline(transaction=False)
    for i in range(start, start + n):
        pipe.xadd(stream, {"n": str(i)})
    return pipe.execute()


def pending(r: redis.Redis, stream: str, group: str = "g") -> int:
    return int(r.xpending(stream, group)["pending"])


class Acker(stage.Consumer):
    """Acks what it gets (failing those ``fail`` selects) and reports every batch to ``observer``.

    With ``manual=True`` it asks for nothing until cast ``("ask", n)``.
    """

    def init(
        self,
        observer: otpy.Pid,
        fail: Callable[[pl.Message], Any] | None = None,
        manual: bool = False,
        ack: bool = True,
    ) -> None:
        self.observer = observer
        self.fail = fail
        self.manual = manual
        self.ack = ack
        self.upstream: Any = None

    def handle_subscribe(self, kind: str, opts: dict[str, Any], from_: Any) -> str:
        self.upstream = from_
        return "manual" if self.manual else "automatic"

    def handle_cast(self, request: Any) -> None:
        match request:
            case ("ask", n):
                stage.ask(self.upstream, n)

    def handle_events(self, events: list[pl.Message], from_: Any) -> None:
        ok, bad = [], []
        for message in events:
            verdict = self.fail(message) if self.fail is not None else None
            if verdict:
                bad.append(verdict if isinstance(verdict, pl.Message) else message)
            else:
                ok.append(message)
        bad = [m if m.status != "ok" else m.failed(ValueError("bad entry")) for m in bad]
        if self.ack:
            pl.ack_messages(ok, bad)
        otpy.send(self.observer, ("got", otpy.self(), events))


def start(stream: str, url: str, consumer_opts: dict[str, Any] | None = None, **options: Any):
    """A producer on ``stream`` (group "g") and an Acker subscribed to it."""
    producer = RedisStreamProducer.start_link(
        {"stream": stream, "group": "g", "url": url, **FAST, **options}
    )
    consumer_opts = dict(consumer_opts or {})
    subscription = consumer_opts.pop("subscription", {"max_demand": 10})
    acker = Acker.start_link(otpy.self(), subscribe_to=[(producer, subscription)], **consumer_opts)
    return producer, acker


def collect(count: int, timeout: float = WAIT) -> list[pl.Message]:
    """Receive Acker reports until ``count`` messages arrived; return them."""
    got: list[pl.Message] = []
    while len(got) < count:
        _, _, events = recv(lambda m: type(m) is tuple and m[0] == "got", timeout=timeout)
        got.extend(events)
    return got


def stop(*pids: otpy.Pid) -> None:
    for pid in pids:
        otpy.GenServer.stop(pid)


def no_more_reports(timeout: float = 0.3) -> bool:
    """Nothing more reaches the test process for ``timeout`` seconds."""
    try:
        otpy.receive(timeout=timeout, match=lambda m: type(m) is tuple and m[0] == "got")
    except otpy.Timeout:
        return True
    return False


class TestOptions:
    def test_defaults_are_filled_in(self):
        options = validate_options({"stream": "s", "group": "g"})
        assert options == {
            "stream": "s",
            "group": "g",
            "consumer": None,
            "url": "redis://localhost:6379/0",
            "group_start_id": "0",
            "block": 1.0,
            "claim_idle": 60.0,
            "max_deliveries": 5,
            "on_failure": "retry",
            "dead_letter_stream": "s:dead",
        }

    def test_internal_index_is_accepted(self):
        assert validate_options({"stream": "s", "group": "g", "_index": 2})["stream"] == "s"

    @pytest.mark.parametrize(
        ("options", "error", "text"),
        [
            ({"stream": "s", "group": "g", "blok": 1}, ValueError, "'blok'"),
            ({"group": "g"}, ValueError, "'stream'"),
            ({"stream": "s"}, ValueError, "'group'"),
            ({"stream": "", "group": "g"}, ValueError, "'stream'"),
            ({"stream": b"s", "group": "g"}, TypeError, "'stream'"),
            ({"stream": "s", "group": "g", "block": "1"}, TypeError, "'block'"),
            ({"stream": "s", "group": "g", "block": 0}, ValueError, "'block'"),
            ({"stream": "s", "group": "g", "claim_idle": -1.0}, ValueError, "'claim_idle'"),
            ({"stream": "s", "group": "g", "claim_idle": float("inf")}, ValueError, "'claim_idle'"),
            ({"stream": "s", "group": "g", "max_deliveries": 0}, ValueError, "'max_deliveries'"),
            ({"stream": "s", "group": "g", "max_deliveries": 2.0}, TypeError, "'max_deliveries'"),
            ({"stream": "s", "group": "g", "on_failure": "drop"}, ValueError, "'on_failure'"),
            ({"stream": "s", "group": "g", "dead_letter_stream": "s"}, ValueError, "differ"),
            ({"stream": "s", "group": "g", "url": "localhost:6379"}, ValueError, "'url'"),
            ({"stream": "s", "group": "g", "url": "redis://h:port/0"}, ValueError, "'url'"),
            ({"stream": "s", "group": "g", "url": "redis://h/zero"}, ValueError, "database"),
            ({"stream": "s", "group": "g", "url": "redis://h/0?colour=1"}, ValueError, "colour"),
            ({"stream": "s", "group": "g", "_index": "1"}, TypeError, "'_index'"),
            ({"stream": "s", "group": "g", "_default_prefetch": -1}, ValueError, "prefetch"),
            ({"stream": "s", "group": "g", "_index": -1}, ValueError, "'_index'"),
            (["stream", "s"], TypeError, "dict"),
        ],
    )
    def test_bad_options_are_named(self, options, error, text):
        with pytest.raises(error, match=text):
            validate_options(options)

    def test_a_url_that_does_not_parse_fails_the_start(self, runtime):
        with pytest.raises(otpy.StartError) as info:
            RedisStreamProducer.start({"stream": "s", "group": "g", "url": "http://x"})
        assert isinstance(info.value.reason, ValueError)
        assert "'url'" in str(info.value.reason)

    def test_the_lazy_export_is_the_producer(self):
        assert pl.RedisStreamProducer is RedisStreamProducer
        assert RedisStreamProducer.__module__ == "otpy.pipeline"


class TestGroupAndReading:
    def test_the_group_is_created_with_the_stream(self, runtime, r, url, stream):
        producer, acker = start(stream, url)
        wait_until(lambda: r.exists(stream) and r.xinfo_groups(stream))
        assert [g["name"] for g in r.xinfo_groups(stream)] == ["g"]
        add(r, stream, 3)
        got = collect(3)
        assert [m.data for m in got] == [{"n": "0"}, {"n": "1"}, {"n": "2"}]
        stop(acker, producer)

    def test_what_the_stream_holds_is_read_with_its_metadata(self, runtime, r, url, stream):
        ids = add(r, stream, 25)
        producer, acker = start(stream, url)
        got = collect(25)
        assert [m.metadata for m in got] == [
            {"id": i, "stream": stream, "deliveries": 1} for i in ids
        ]
        assert [m.data["n"] for m in got] == [str(i) for i in range(25)]
        wait_until(lambda: pending(r, stream) == 0)
        stop(acker, producer)

    def test_an_existing_group_is_used_as_it_is(self, runtime, r, url, stream):
        add(r, stream, 5)
        r.xgroup_create(stream, "g", id="$")  # the group has seen the first five already
        producer, acker = start(stream, url)
        add(r, stream, 2, start=5)
        assert [m.data["n"] for m in collect(2)] == ["5", "6"]
        assert no_more_reports(0.2)
        stop(acker, producer)

    def test_group_start_id_dollar_skips_what_is_there(self, runtime, r, url, stream):
        add(r, stream, 5)
        producer, acker = start(stream, url, group_start_id="$")
        wait_until(lambda: r.xinfo_groups(stream))
        add(r, stream, 1, start=5)
        assert [m.data["n"] for m in collect(1)] == ["5"]
        stop(acker, producer)

    def test_reads_never_exceed_the_demand(self, runtime, r, url, stream):
        add(r, stream, 100)
        producer, acker = start(stream, url, consumer_opts={"manual": True, "ack": False})
        assert nothing_pending(lambda m: type(m) is tuple and m[0] == "got")
        otpy.GenServer.cast(acker, ("ask", 10))
        assert len(collect(10)) == 10
        assert no_more_reports(0.3)  # the reader had time to over-read, if it would
        assert pending(r, stream) == 10
        otpy.GenServer.cast(acker, ("ask", 7))
        assert len(collect(7)) == 7
        assert no_more_reports(0.3)
        assert pending(r, stream) == 17
        stop(acker, producer)

    def test_a_pipeline_prefetch_reads_that_many_ahead_of_demand(self, runtime, r, url, stream):
        add(r, stream, 100)
        producer, acker = start(
            stream, url, _default_prefetch=10, consumer_opts={"manual": True, "ack": False}
        )
        wait_until(lambda: r.xinfo_groups(stream) and pending(r, stream) == 10)  # read ahead, held
        assert nothing_pending(lambda m: type(m) is tuple and m[0] == "got")
        otpy.GenServer.cast(acker, ("ask", 10))
        got = collect(10)
        wait_until(lambda: pending(r, stream) == 20)
        assert no_more_reports(0.3)
        assert pending(r, stream) == 20  # demand (10) + prefetch (10), no more
        otpy.GenServer.cast(acker, ("ask", 5))
        got += collect(5)
        wait_until(lambda: pending(r, stream) == 25)
        assert no_more_reports(0.3)
        assert pending(r, stream) == 25
        assert [m.data["n"] for m in got] == [str(i) for i in range(15)]  # in stream order
        stop(acker, producer)

    def test_the_pipeline_hooks_are_there(self):
        assert RedisStreamProducer.validate_options is validate_options
        assert {"_index", "_pipeline", "_default_prefetch"} <= RedisStreamProducer.pipeline_options

    def test_the_default_consumer_name_is_unique_and_removed_when_idle(
        self, runtime, r, url, stream
    ):
        add(r, stream, 4)
        one = RedisStreamProducer.start_link(
            {"stream": stream, "group": "g", "url": url, **FAST, "_index": 3}
        )
        two = RedisStreamProducer.start_link({"stream": stream, "group": "g", "url": url, **FAST})
        opts = {"manual": True, "ack": False}
        a = Acker.start_link(otpy.self(), subscribe_to=[(one, {"max_demand": 2})], **opts)
        b = Acker.start_link(otpy.self(), subscribe_to=[(two, {"max_demand": 2})], **opts)
        otpy.GenServer.cast(a, ("ask", 2))
        otpy.GenServer.cast(b, ("ask", 2))
        got = collect(4)  # two each: both have read
        consumers = {c["name"] for c in r.xinfo_consumers(stream, "g")}
        assert len(consumers) == 2
        host = f"{socket.gethostname()}-"
        assert all(name.startswith(host) for name in consumers)
        assert any("-3-" in name for name in consumers)
        assert sorted(m.data["n"] for m in got) == ["0", "1", "2", "3"]
        pl.ack_messages(got, [])
        wait_until(lambda: pending(r, stream) == 0)
        stop(a, b, one, two)
        wait_until(lambda: r.xinfo_consumers(stream, "g") == [])

    def test_a_named_consumer_stays_in_the_group(self, runtime, r, url, stream):
        add(r, stream, 1)
        producer, acker = start(stream, url, consumer="worker-1")
        assert collect(1)[0].metadata["deliveries"] == 1
        wait_until(lambda: pending(r, stream) == 0)
        stop(acker, producer)
        assert [c["name"] for c in r.xinfo_consumers(stream, "g")] == ["worker-1"]


class CountingClient:
    """Wraps a redis client: counts XACK commands and script calls, delegates the rest."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.xacks: list[int] = []  # ids per XACK call
        self.scripts = 0

    def xack(self, stream, group, *ids):
        self.xacks.append(len(ids))
        return self.client.xack(stream, group, *ids)

    def evalsha(self, *args):
        # Counted once it ran: with Redis's script cache empty (a fresh server, or
        # SCRIPT FLUSH), redis-py's first try gets NOSCRIPT, loads it and tries again.
        result = self.client.evalsha(*args)
        self.scripts += 1
        return result

    def __getattr__(self, name):
        return getattr(self.client, name)


class TestAcks:
    def test_one_xack_per_ack_group(self, runtime, r, url, stream):
        add(r, stream, 30)
        producer, acker = start(stream, url, consumer_opts={"ack": False})
        got = collect(30)
        acknowledger = got[0].acknowledger[0]
        counting = CountingClient(acknowledger.client)
        acknowledger.client = counting
        retry = [m.failed("x") for m in got[20:25]]  # on_failure="retry": left pending
        assert pl.ack_messages(got[:20], retry) == 1  # one group: one call
        wait_until(lambda: pending(r, stream) == 10)  # the flusher thread sends the XACK
        assert counting.xacks == [20]
        assert counting.scripts == 0
        dead = [m.configure_ack(on_failure="dead_letter").failed("x") for m in got[25:27]]
        pl.ack_messages(got[20:25] + got[27:], dead)
        assert counting.xacks == [20]  # dead letters and acks: one script call, at once
        assert counting.scripts == 1
        assert pending(r, stream) == 0
        assert r.xlen(f"{stream}:dead") == 2
        stop(acker, producer)

    def test_retry_leaves_failed_entries_pending(self, runtime, r, url, stream):
        add(r, stream, 10)
        odd = lambda m: int(m.data["n"]) % 2  # noqa: E731
        producer, acker = start(stream, url, consumer_opts={"fail": odd})
        collect(10)
        wait_until(lambda: pending(r, stream) == 5)
        left = r.xpending_range(stream, "g", "-", "+", 10)
        assert sorted(
            r.xrange(stream, e["message_id"], e["message_id"])[0][1]["n"] for e in left
        ) == ["1", "3", "5", "7", "9"]
        stop(acker, producer)

    def test_on_failure_ack_acks_failed_entries(self, runtime, r, url, stream):
        add(r, stream, 10)
        producer, acker = start(
            stream, url, on_failure="ack", consumer_opts={"fail": lambda m: True}
        )
        collect(10)
        wait_until(lambda: pending(r, stream) == 0)
        assert r.xlen(f"{stream}:dead") == 0
        stop(acker, producer)

    def test_dead_letter_moves_failed_entries_with_their_fields(self, runtime, r, url, stream):
        ids = add(r, stream, 6)
        r.xadd(stream, {"n": "6", "extra": "x"})
        bad = lambda m: m.data["n"] in ("2", "6")  # noqa: E731
        producer, acker = start(
            stream,
            url,
            on_failure="dead_letter",
            dead_letter_stream=f"{stream}:graveyard",
            consumer_opts={"fail": bad},
        )
        collect(7)
        wait_until(lambda: pending(r, stream) == 0)
        dead = [fields for _, fields in r.xrange(f"{stream}:graveyard")]
        assert len(dead) == 2
        assert dead[0] == {
            "n": "2",
            "otpy_error": "ValueError: bad entry",
            "otpy_stream": stream,
            "otpy_group": "g",
            "otpy_id": ids[2],
            "otpy_deliveries": "1",
        }
        assert dead[1]["n"] == "6"
        assert dead[1]["extra"] == "x"
        assert r.xlen(stream) == 7  # the entries stay in the stream; only the group is done
        stop(acker, producer)

    def test_the_dead_letter_keeps_the_original_fields_when_data_changed(
        self, runtime, r, url, stream
    ):
        add(r, stream, 1)
        spoil = lambda m: m.update_data(lambda d: {"parsed": True}).failed("nope")  # noqa: E731
        producer, acker = start(
            stream, url, on_failure="dead_letter", consumer_opts={"fail": spoil}
        )
        collect(1)
        wait_until(lambda: r.xlen(f"{stream}:dead") == 1)
        fields = r.xrange(f"{stream}:dead")[0][1]
        assert fields["n"] == "0"
        assert "parsed" not in fields
        assert fields["otpy_error"] == "nope"
        stop(acker, producer)

    def test_configure_ack_chooses_per_message(self, runtime, r, url, stream):
        add(r, stream, 3)

        def choose(message):
            mode = ["ack", "dead_letter", "retry"][int(message.data["n"])]
            return message.configure_ack(on_failure=mode).failed("no")

        producer, acker = start(stream, url, on_failure="ack", consumer_opts={"fail": choose})
        collect(3)
        wait_until(lambda: r.xlen(f"{stream}:dead") == 1 and pending(r, stream) == 1)
        assert r.xrange(f"{stream}:dead")[0][1]["n"] == "1"
        left = r.xpending_range(stream, "g", "-", "+", 10)[0]["message_id"]
        assert r.xrange(stream, left, left)[0][1]["n"] == "2"
        stop(acker, producer)

    def test_configure_ack_rejects_unknown_options(self, runtime, r, url, stream):
        add(r, stream, 1)
        producer, acker = start(stream, url, consumer_opts={"ack": False})
        message = collect(1)[0]
        with pytest.raises(ValueError, match="'requeue'"):
            message.configure_ack(requeue=True)
        with pytest.raises(ValueError, match="'later'"):
            message.configure_ack(on_failure="later")
        pl.ack_messages([message], [])
        stop(acker, producer)

    def test_an_ack_that_cannot_reach_redis_logs_and_leaves_the_entries_pending(
        self, runtime, r, url, stream, caplog
    ):
        add(r, stream, 3)
        producer, acker = start(stream, url, consumer_opts={"ack": False})
        got = collect(3)
        acknowledger = got[0].acknowledger[0]
        real = acknowledger.client
        acknowledger.client = redis.Redis(port=unused_port(), retry=Retry(NoBackoff(), 0))
        with caplog.at_level(logging.DEBUG, logger="otpy.pipeline"):
            pl.ack_messages(got[:1], [])  # must not raise
            wait_until(lambda: any("could not ack" in x.getMessage() for x in caplog.records))
            pl.ack_messages(got[1:2], [])
            wait_until(
                lambda: len([x for x in caplog.records if "could not ack" in x.getMessage()]) == 2
            )
        failures = [rec for rec in caplog.records if "could not ack" in rec.getMessage()]
        assert [rec.levelno for rec in failures] == [
            logging.WARNING,
            logging.DEBUG,
        ]  # once per outage
        warnings = failures[:1]
        assert "redis://" in warnings[0].getMessage()
        assert pending(r, stream) == 3
        acknowledger.client.close()
        acknowledger.client = real
        pl.ack_messages(got, [])
        wait_until(lambda: pending(r, stream) == 0)
        stop(acker, producer)


class TestClaims:
    def test_entries_of_a_dead_consumer_are_claimed(self, runtime, r, url, stream):
        add(r, stream, 5)
        r.xgroup_create(stream, "g", id="0")
        r.xreadgroup("g", "ghost", {stream: ">"}, count=5)  # read, never acked
        add(r, stream, 2, start=5)
        producer, acker = start(stream, url, claim_idle=0.2)
        got = collect(7)
        by_n = {m.data["n"]: m.metadata["deliveries"] for m in got}
        assert by_n == {"0": 2, "1": 2, "2": 2, "3": 2, "4": 2, "5": 1, "6": 1}
        wait_until(lambda: pending(r, stream) == 0)
        assert no_more_reports(0.3)
        stop(acker, producer)

    def test_claims_are_sized_by_demand(self, runtime, r, url, stream):
        add(r, stream, 30)
        r.xgroup_create(stream, "g", id="0")
        r.xreadgroup("g", "ghost", {stream: ">"}, count=30)
        producer, acker = start(
            stream, url, claim_idle=0.1, consumer_opts={"manual": True, "ack": False}
        )
        otpy.GenServer.cast(acker, ("ask", 4))
        assert [m.metadata["deliveries"] for m in collect(4)] == [2] * 4
        assert no_more_reports(0.3)
        ghost = {c["name"]: c["pending"] for c in r.xinfo_consumers(stream, "g")}["ghost"]
        assert ghost == 26
        stop(acker, producer)

    def test_a_poison_entry_is_dead_lettered_after_max_deliveries(self, runtime, r, url, stream):
        add(r, stream, 2)
        poison = lambda m: m.data["n"] == "1"  # noqa: E731
        producer, acker = start(
            stream, url, claim_idle=0.1, max_deliveries=3, consumer_opts={"fail": poison}
        )
        wait_until(lambda: r.xlen(f"{stream}:dead") == 1)
        wait_until(lambda: pending(r, stream) == 0)
        seen: list[tuple[str, int]] = []
        while True:
            try:
                _, _, events = otpy.receive(
                    timeout=0, match=lambda m: type(m) is tuple and m[0] == "got"
                )
            except otpy.Timeout:
                break
            seen.extend((m.data["n"], m.metadata["deliveries"]) for m in events)
        assert sorted(seen) == [("0", 1), ("1", 1), ("1", 2), ("1", 3)]
        dead = r.xrange(f"{stream}:dead")[0][1]
        assert dead["n"] == "1"
        assert dead["otpy_deliveries"] == "3"
        assert "max_deliveries=3" in dead["otpy_error"]
        stop(acker, producer)


class Drainable(RedisStreamProducer):
    """A RedisStreamProducer that drains on call, as a pipeline would (Broadway's order)."""

    def handle_call(self, request, caller):
        if request == "drain":
            return stage.Reply("drained", self.prepare_for_draining())
        if request == "ping":  # after a drain's events went out
            return "pong"
        return super().handle_call(request, caller)


class TestDrain:
    @pytest.mark.parametrize("prefetch", [0, 30])
    def test_a_drain_leaves_nothing_pending(self, runtime, r, url, stream, prefetch):
        add(r, stream, 3000)
        producer = Drainable.start_link(
            {
                "stream": stream,
                "group": "g",
                "url": url,
                "block": 0.2,
                "_default_prefetch": prefetch,
            }
        )
        ackers = [
            Acker.start_link(otpy.self(), subscribe_to=[(producer, {"max_demand": 20})])
            for _ in range(3)
        ]
        got = collect(500)
        assert otpy.GenServer.call(producer, "drain") == "drained"
        otpy.GenServer.call(producer, "ping")  # what the drain returned went out
        read = int(r.xinfo_groups(stream)[0]["entries-read"])  # nothing is read after a drain
        got.extend(collect(read - len(got)))  # what was read ahead reaches the consumers too
        stop(*ackers)
        stop(producer)  # the acks it queued go out before it is gone
        assert pending(r, stream) == 0
        assert int(r.xinfo_groups(stream)[0]["entries-read"]) == read
        assert read == len(got) == len({m.metadata["id"] for m in got})
        assert len(got) < 3000

    def test_a_drain_returns_what_the_reader_read_meanwhile(self, runtime, r, url, stream):
        producer = Drainable.start_link({"stream": stream, "group": "g", "url": url, "block": 0.5})
        acker = Acker.start_link(otpy.self(), subscribe_to=[(producer, {"max_demand": 10})])
        wait_until(lambda: r.exists(stream) and r.xinfo_groups(stream))
        # The reader is (or soon will be) blocked in XREADGROUP; an entry added now is read
        # while the drain waits for it, and must still be emitted.
        add(r, stream, 1)
        otpy.GenServer.call(producer, "drain")
        otpy.GenServer.call(producer, "ping")
        assert [m.data for m in collect(1)] == [{"n": "0"}]
        wait_until(lambda: pending(r, stream) == 0)
        add(r, stream, 1, start=1)
        assert no_more_reports(0.3)  # nothing is read after a drain
        stop(acker, producer)


@contextlib.contextmanager
def own_redis(port: int, directory) -> Iterator[redis.Redis]:
    """A redis-server of the test's own on ``port`` (nothing saved), stopped at the end."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, decode_responses=True, retry=Retry(NoBackoff(), 0))
    try:
        wait_until(lambda: _answers(client))
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(WAIT)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestOutages:
    def test_a_broker_that_is_down_is_retried_and_logged_once(self, runtime, caplog):
        url = f"redis://127.0.0.1:{unused_port()}/0"
        with caplog.at_level(logging.DEBUG, logger="otpy.pipeline"):
            producer, acker = start("s", url)
            wait_until(
                lambda: sum("still failing" in rec.getMessage() for rec in caplog.records) >= 2
            )
            assert otpy.is_alive(producer)
            stop(acker, producer)
        warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert url in warnings[0].getMessage()
        assert "retrying with backoff" in warnings[0].getMessage()

    def test_a_broker_that_comes_up_late_and_restarts_is_read(self, runtime, caplog, tmp_path):
        port = unused_port()
        url = f"redis://127.0.0.1:{port}/0"
        with caplog.at_level(logging.INFO, logger="otpy.pipeline"):
            producer, acker = start("late", url)
            wait_until(lambda: any(x.levelno == logging.WARNING for x in caplog.records))
            with own_redis(port, tmp_path) as client:
                add(client, "late", 3)
                assert [m.data["n"] for m in collect(3)] == ["0", "1", "2"]
                assert any("again" in x.getMessage() for x in caplog.records)
                wait_until(lambda: pending(client, "late") == 0)
            # the server is gone: a second outage, logged once again
            wait_until(lambda: sum(x.levelno == logging.WARNING for x in caplog.records) == 2)
            assert otpy.is_alive(producer)
            with own_redis(port, tmp_path) as client:  # a new, empty server
                wait_until(lambda: client.exists("late"))  # the group is made again
                add(client, "late", 2, start=3)
                assert [m.data["n"] for m in collect(2)] == ["3", "4"]
                wait_until(lambda: pending(client, "late") == 0)
                stop(acker, producer)

    def test_a_password_is_not_logged(self, runtime, caplog):
        url = f"redis://user:s3cret@127.0.0.1:{unused_port()}/0"
        with caplog.at_level(logging.WARNING, logger="otpy.pipeline"):
            producer, acker = start("s", url)
            wait_until(lambda: caplog.records)
            stop(acker, producer)
        text = caplog.records[0].getMessage()
        assert "s3cret" not in text
        assert "user:***@127.0.0.1" in text

    def test_reading_goes_on_after_the_connection_is_killed(self, runtime, r, url, stream, caplog):
        name = f"otpy-reader-{uuid.uuid4().hex[:8]}"
        producer, acker = start(stream, f"{url}?client_name={name}")
        add(r, stream, 5)
        collect(5)
        for _ in range(3):
            for client in r.client_list():
                if client["name"] == name:
                    r.client_kill_filter(_id=client["id"])
            add(r, stream, 5)
            collect(5)
        wait_until(lambda: pending(r, stream) == 0)
        stop(acker, producer)

    def test_a_deleted_stream_is_made_again(self, runtime, r, url, stream):
        producer, acker = start(stream, url)
        add(r, stream, 2)
        collect(2)
        r.delete(stream)
        wait_until(lambda: r.exists(stream) and r.xinfo_groups(stream), timeout=WAIT)
        add(r, stream, 1, start=2)
        assert [m.data["n"] for m in collect(1)] == ["2"]
        stop(acker, producer)

    def test_an_unexpected_error_in_the_reader_crashes_the_producer(
        self, runtime, r, url, stream, monkeypatch
    ):
        def broken(self, n):
            raise RuntimeError("a bug")

        monkeypatch.setattr(_Reader, "_read", broken)
        producer = RedisStreamProducer.start({"stream": stream, "group": "g", "url": url, **FAST})
        ref = otpy.monitor(producer)
        acker = Acker.start(otpy.self(), subscribe_to=[(producer, {"max_demand": 5})])
        down = recv(lambda m: isinstance(m, otpy.Down) and m.ref == ref)
        assert isinstance(down.reason, RuntimeError)
        assert str(down.reason) == "a bug"
        wait_until(lambda: not otpy.is_alive(acker))  # its producer went away: it stops too

    def test_a_killed_producer_stops_its_reader(self, runtime, r, url, stream):
        producer = RedisStreamProducer.start({"stream": stream, "group": "g", "url": url, **FAST})
        ref = otpy.monitor(producer)
        otpy.exit(producer, "kill")
        recv(lambda m: isinstance(m, otpy.Down) and m.ref == ref)
        # the runtime fixture checks that the reader thread is gone


# -- in a pipeline ----------------------------------------------------------------------------


class Record:
    """A pipeline's context: who handled which entry, shared by its stages (under a lock)."""

    def __init__(self, observer: otpy.Pid, total: int) -> None:
        self.observer = observer
        self.total = total
        # _lock guards handled, completed, killed and told.
        self._lock = threading.Lock()
        self.handled: dict[str, list[tuple[otpy.Pid, int]]] = defaultdict(list)
        self.completed: dict[str, list[otpy.Pid]] = defaultdict(list)
        self.killed: set[otpy.Pid] = set()
        self.told = False

    def message(self, message: pl.Message) -> None:
        with self._lock:
            self.handled[message.metadata["id"]].append(
                (otpy.self(), message.metadata["deliveries"])
            )

    def batch(self, messages: list[pl.Message]) -> None:
        me = otpy.self()
        with self._lock:
            for message in messages:
                self.completed[message.metadata["id"]].append(me)
            tell = not self.told and len(self.completed) >= self.total
            self.told = self.told or tell
        if tell:
            otpy.send(self.observer, "all completed")

    def kill(self, pid: otpy.Pid) -> None:
        with self._lock:
            self.killed.add(pid)
        otpy.exit(pid, "kill")

    def count(self) -> int:
        with self._lock:
            return len(self.completed)


class Recorded(pl.Pipeline):
    def handle_message(self, processor, message, context):
        context.message(message)
        return message

    def handle_batch(self, batcher, messages, batch_info, context):
        context.batch(messages)
        return messages


def start_pipeline(name: str, stream: str, url: str, record: Record, **producer: Any) -> otpy.Pid:
    return Recorded.start_link(
        name=name,
        producer={
            "module": (
                pl.RedisStreamProducer,
                {"stream": stream, "group": "g", "url": url, "block": 0.1, **producer},
            )
        },
        processors={"default": {"concurrency": 4, "max_demand": 10}},
        batchers={"default": {"concurrency": 2, "batch_size": 50, "batch_timeout": 0.02}},
        context=record,
        max_restarts=10_000,
        max_seconds=1.0,
        resubscribe_interval=0.02,
    )


def chaos(record: Record, names: list[str], seed: int) -> None:
    """Kill one of ``names`` at random every 50-150 ms until told "stop"."""
    rng = random.Random(seed)
    while True:
        try:
            otpy.receive(timeout=rng.uniform(0.05, 0.15), match=lambda m: m == "stop")
            return
        except otpy.Timeout:
            pid = otpy.whereis(rng.choice(names))
            if pid is not None:
                record.kill(pid)


class TestInAPipeline:
    def test_chaos_loses_nothing_and_duplicates_only_what_killed_stages_held(
        self, runtime, r, url, stream
    ):
        total = 50_000
        for start_at in range(0, total, 10_000):
            add(r, stream, 10_000, start=start_at)
        record = Record(otpy.self(), total)
        name = f"chaos-{uuid.uuid4().hex[:6]}"
        start_pipeline(name, stream, url, record, claim_idle=0.5, max_deliveries=100)
        victims = [f"{name}.Processor_default_{i}" for i in range(4)]
        victims += [f"{name}.Batcher_default"]
        victims += [f"{name}.BatchProcessor_default_{i}" for i in range(2)]
        monkey, ref = otpy.spawn_monitor(chaos, record, victims, 7)
        wait_until(lambda: record.count() >= total * 0.9, timeout=30)
        otpy.send(monkey, "stop")
        recv(lambda m: isinstance(m, otpy.Down) and m.ref == ref)
        recv(lambda m: m == "all completed", timeout=30)  # what the killed held is claimed
        wait_until(lambda: pending(r, stream) == 0, timeout=10)
        pl.Pipeline.stop(name)
        assert pending(r, stream) == 0
        assert len(record.completed) == total  # every entry, at least once
        assert len(record.killed) >= 10
        redelivered = 0
        for entry_id, handlings in record.handled.items():
            deliveries = [n for _, n in handlings]
            assert len(set(deliveries)) == len(deliveries), (
                entry_id,
                handlings,
            )  # no delivery twice
            if len(handlings) > 1:
                redelivered += 1
            # Completed twice by batch processors that were never killed: a duplicate that
            # no kill explains.
            survivors = [pid for pid in record.completed[entry_id] if pid not in record.killed]
            assert len(survivors) <= 1, (entry_id, handlings, record.completed[entry_id])
            if len(handlings) > 1:
                assert max(deliveries) >= 2
        assert redelivered > 0  # the kills did cost something: the test tested claims

    def test_a_drain_in_the_middle_loses_nothing_and_leaves_nothing_unacked(
        self, runtime, r, url, stream
    ):
        total = 20_000
        add(r, stream, 10_000)
        add(r, stream, 10_000, start=10_000)
        stops: list[dict[str, Any]] = []
        telemetry.attach(
            "redis-drain-test",
            ("otpy", "pipeline", "drain", "stop"),
            lambda event, measurements, metadata, config: stops.append(measurements),
        )
        try:
            first = Record(otpy.self(), total)
            name = f"drain-{uuid.uuid4().hex[:6]}"
            start_pipeline(name, stream, url, first)
            wait_until(lambda: first.count() >= 5_000, timeout=20)
            pl.Pipeline.stop(name)
            assert pending(r, stream) == 0
            assert stops[-1]["unacked"] == 0
            read = int(r.xinfo_groups(stream)[0]["entries-read"])
            assert read == len(first.completed) == len(first.handled) < total
            assert all(len(pids) == 1 for pids in first.completed.values())

            second = Record(otpy.self(), total - read)
            start_pipeline(f"{name}-again", stream, url, second)
            recv(lambda m: m == "all completed", timeout=20)
            pl.Pipeline.stop(f"{name}-again")
        finally:
            telemetry.detach("redis-drain-test")
        assert pending(r, stream) == 0
        assert not set(first.completed) & set(second.completed)
        assert len(first.completed) + len(second.completed) == total
        assert all(len(pids) == 1 for pids in second.completed.values())

    def test_a_pipeline_whose_broker_is_down_starts_and_stops(self, runtime, caplog):
        url = f"redis://127.0.0.1:{unused_port()}/0"
        name = f"down-{uuid.uuid4().hex[:6]}"
        with caplog.at_level(logging.WARNING, logger="otpy.pipeline"):
            start_pipeline(name, "s", url, Record(otpy.self(), 1))
            wait_until(lambda: caplog.records)
            producer = otpy.whereis(f"{name}.Producer_0")
            pl.Pipeline.stop(name)  # the drain wakes the reader from its backoff wait
        assert producer is not None
        assert all(name in x.getMessage() for x in caplog.records)  # the pipeline is named
        assert len(caplog.records) == 1  # the producer never crashed, nor restarted

    def test_a_bad_option_is_raised_by_the_pipelines_start_link(self, runtime):
        with pytest.raises(ValueError, match="'blok'"):
            Recorded.start_link(
                name="never",
                producer={
                    "module": (pl.RedisStreamProducer, {"stream": "s", "group": "g", "blok": 1})
                },
                processors={"default": {}},
            )
        with pytest.raises(ValueError, match="'url'"):
            Recorded.start_link(
                name="never",
                producer={
                    "module": (pl.RedisStreamProducer, {"stream": "s", "group": "g", "url": "x:1"})
                },
                processors={"default": {}},
            )
        assert otpy.whereis("never") is None
