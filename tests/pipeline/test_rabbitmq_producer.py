"""RabbitMQProducer against a real RabbitMQ: consume and ack, prefetch, on_failure modes,
declare, stale acks, connections closed by the broker, a broker that is down, options, drain."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.exceptions
import pytest
from brokers import require_rabbitmq
from conftest import WAIT, recv, tagged, wait_until

import otpy
import otpy.pipeline as pl
import otpy.stage as stage
from otpy.pipeline._rabbitmq import RabbitMQProducer, validate_options

pytestmark = pytest.mark.timeout(60)

Producer = RabbitMQProducer


# --- the broker, seen from the test ----------------------------------------------------------


class Broker:
    """Publishes and inspects queues, each time on a connection of its own (so that
    ``close_all_connections`` never breaks the test's side), and deletes its queues at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.queues: list[str] = []

    def _channel_do(self, fn: Callable[[Any], Any]) -> Any:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            return fn(connection.channel())
        finally:
            connection.close()

    def name(self) -> str:
        """A fresh queue name (not declared), deleted at the end of the test."""
        queue = f"otpy-test-{uuid.uuid4().hex}"
        self.queues.append(queue)
        return queue

    def queue(self, **declare: Any) -> str:
        """A fresh queue, declared now with ``declare``."""
        queue = self.name()
        self._channel_do(lambda ch: ch.queue_declare(queue, **declare))
        return queue

    def publish(self, queue: str, bodies: list[bytes], **properties: Any) -> None:
        props = pika.BasicProperties(**properties) if properties else None

        def publish(ch: Any) -> None:
            for body in bodies:
                ch.basic_publish("", queue, body, props)

        self._channel_do(publish)

    def ready(self, queue: str) -> int:
        """Messages ready in ``queue`` (not counting those delivered and unacked)."""
        return self._channel_do(
            lambda ch: ch.queue_declare(queue, passive=True).method.message_count
        )

    def exists(self, queue: str) -> bool:
        try:
            self.ready(queue)
        except pika.exceptions.ChannelClosedByBroker:
            return False
        return True

    def cleanup(self) -> None:
        def delete(ch: Any) -> None:
            for queue in self.queues:
                ch.queue_delete(queue)

        self._channel_do(delete)


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker(require_rabbitmq())
    yield b
    b.cleanup()


def rabbitmqctl(*args: str) -> str:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH: this test closes connections server-side")
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def close_all_connections() -> None:
    rabbitmqctl("close_all_connections", "test")


def ready_and_unacked(queue: str) -> tuple[int, int]:
    out = rabbitmqctl(
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    )
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    raise AssertionError(f"queue {queue!r} not listed by rabbitmqctl: {out!r}")


def bodies(n: int, prefix: str = "m") -> list[bytes]:
    return [f"{prefix}{i}".encode() for i in range(n)]


# --- stages subscribed to the producer --------------------------------------------------------


class Forward(stage.Consumer):
    """Acks nothing: sends every batch to the test as ("got", messages); the test acks.

    With ``ask=n`` it asks for ``n`` events once and no more (manual demand).
    """

    def init(self, observer: otpy.Pid, ask: int | None = None) -> None:
        self.observer = observer
        self.ask = ask

    def handle_subscribe(self, kind: str, opts: dict[str, Any], from_: Any) -> str:
        if self.ask is None:
            return "automatic"
        stage.ask(from_, self.ask)
        return "manual"

    def handle_events(self, events: list[pl.Message], from_: Any) -> None:
        otpy.send(self.observer, ("got", events))


class Acker(stage.Consumer):
    """Acks every batch itself (from its pool thread) and reports ("acked", ok, bad).

    ``fail(message)`` returns None (success), True (fail it) or a message to ack as
    failed (e.g. one with ``configure_ack``); ``configure(message)`` may return a
    reconfigured message for the success side. ``gate(count)`` runs before each
    ack with the number of messages acked so far (it may block).
    """

    def init(
        self,
        observer: otpy.Pid,
        fail: Callable[[pl.Message], Any] | None = None,
        configure: Callable[[pl.Message], pl.Message] | None = None,
        gate: Callable[[int], None] | None = None,
    ) -> None:
        self.observer = observer
        self.fail = fail
        self.configure = configure
        self.gate = gate
        self.count = 0

    def handle_events(self, events: list[pl.Message], from_: Any) -> None:
        ok, bad = [], []
        for message in events:
            verdict = self.fail(message) if self.fail is not None else None
            if verdict is None or verdict is False:
                ok.append(self.configure(message) if self.configure else message)
            else:
                failed = verdict if isinstance(verdict, pl.Message) else message
                bad.append(failed.failed(ValueError("bad message")))
        if self.gate is not None:
            self.gate(self.count)
        pl.ack_messages(ok, bad)
        self.count += len(events)
        otpy.send(self.observer, ("acked", ok, bad))


def start(
    queue: str,
    url: str,
    *,
    consumer: type = Acker,
    subscription: dict | None = None,
    consumer_args: tuple = (),
    **options: Any,
):
    """A producer on ``queue`` and a consumer subscribed to it (linked to the test)."""
    producer = Producer.start_link({"queue": queue, "url": url, **options})
    sub = subscription if subscription is not None else {"max_demand": 10}
    cons = consumer.start_link(otpy.self(), *consumer_args, subscribe_to=[(producer, sub)])
    return producer, cons


def stop(*pids: otpy.Pid) -> None:
    """Stop the stages in order (consumers first), unlinked so the test lives on."""
    for pid in pids:
        otpy.unlink(pid)
        if otpy.is_alive(pid):
            otpy.GenServer.stop(pid)


def collect_acked(count: int, timeout: float = WAIT) -> tuple[list[pl.Message], list[pl.Message]]:
    ok: list[pl.Message] = []
    bad: list[pl.Message] = []
    while len(ok) + len(bad) < count:
        _, o, b = recv(tagged("acked"), timeout=timeout)
        ok.extend(o)
        bad.extend(b)
    return ok, bad


def collect_got(count: int, timeout: float = WAIT) -> list[pl.Message]:
    got: list[pl.Message] = []
    while len(got) < count:
        got.extend(recv(tagged("got"), timeout=timeout)[1])
    return got


def nothing_more(tag: str, timeout: float = 0.3) -> bool:
    """No ``tag`` report arrives within ``timeout`` (a bounded wait for something that must not happen)."""
    try:
        otpy.receive(timeout=timeout, match=tagged(tag))
    except otpy.Timeout:
        return True
    return False


def stats(producer: otpy.Pid) -> dict[str, Any]:
    return Producer.stats(producer)


# --- consuming and acking ----------------------------------------------------------------------


class TestConsume:
    def test_messages_are_consumed_acked_and_the_queue_ends_empty(self, runtime, broker):
        queue = broker.queue()
        broker.publish(
            queue, bodies(100), headers={"k": "v"}, content_type="text/plain", message_id="id"
        )
        producer, acker = start(queue, broker.url, prefetch_count=20)
        ok, bad = collect_acked(100)
        assert bad == []
        assert sorted(m.data for m in ok) == sorted(bodies(100))
        first = ok[0]
        assert isinstance(first.data, bytes)
        assert first.metadata["redelivered"] is False
        assert first.metadata["routing_key"] == queue
        assert first.metadata["headers"] == {"k": "v"}
        assert first.metadata["content_type"] == "text/plain"
        assert first.metadata["message_id"] == "id"
        assert isinstance(first.metadata["delivery_tag"], int)
        assert len({m.metadata["delivery_tag"] for m in ok}) == 100
        assert broker.ready(queue) == 0
        assert stats(producer)["stale_acks"] == 0
        stop(acker, producer)
        assert broker.ready(queue) == 0  # nothing was left unacked (closing would requeue it)

    def test_messages_without_headers_have_empty_headers(self, runtime, broker):
        queue = broker.queue()
        broker.publish(queue, [b"plain"])
        producer, acker = start(queue, broker.url)
        ok, _ = collect_acked(1)
        assert ok[0].metadata["headers"] == {}
        assert ok[0].metadata["content_type"] is None
        stop(acker, producer)

    def test_killing_the_producer_ends_its_thread_and_rabbitmq_requeues_its_deliveries(
        self, runtime, broker
    ):
        queue = broker.queue()
        broker.publish(queue, bodies(5))
        producer, forward = start(queue, broker.url, consumer=Forward)
        collect_got(5)
        assert broker.ready(queue) == 0
        otpy.unlink(forward)
        otpy.unlink(producer)
        otpy.exit(producer, "kill")
        wait_until(
            lambda: not any(t.name == f"otpy-rabbitmq[{queue}]" for t in threading.enumerate())
        )
        wait_until(lambda: broker.ready(queue) == 5)
        stop(forward)


# --- back-pressure -------------------------------------------------------------------------------


class TestPrefetch:
    def test_prefetch_count_bounds_the_unacked_deliveries(self, runtime, broker):
        queue = broker.queue()
        broker.publish(queue, bodies(30))
        producer, forward = start(
            queue, broker.url, consumer=Forward, subscription={"max_demand": 100}, prefetch_count=5
        )
        held = collect_got(5)
        assert nothing_more("got")  # demand is 100, but RabbitMQ sends no more than 5 unacked
        assert ready_and_unacked(queue) == (25, 5)
        assert stats(producer)["buffered"] == 0
        seen = list(held)
        while len(seen) < 30:
            pl.ack_messages(held, [])  # from the test's thread: the acks travel to pika's thread
            held = collect_got(1)
            seen.extend(held)
            assert len(held) <= 5
        pl.ack_messages(held, [])
        assert sorted(m.data for m in seen) == sorted(bodies(30))
        wait_until(lambda: ready_and_unacked(queue) == (0, 0), timeout=10.0)
        stop(forward, producer)

    def test_the_pipeline_default_prefetch_applies_when_prefetch_count_is_not_given(
        self, runtime, broker
    ):
        assert validate_options({"queue": "q"})["prefetch_count"] == 50
        assert validate_options({"queue": "q", "_default_prefetch": 80})["prefetch_count"] == 80
        assert (
            validate_options({"queue": "q", "_default_prefetch": 80, "prefetch_count": 3})[
                "prefetch_count"
            ]
            == 3
        )
        queue = broker.queue()
        broker.publish(queue, bodies(10))
        producer, forward = start(
            queue,
            broker.url,
            consumer=Forward,
            subscription={"max_demand": 100},
            _default_prefetch=3,
        )
        held = collect_got(3)
        assert nothing_more("got")
        pl.ack_messages(held, [])
        rest = collect_got(3)
        pl.ack_messages(rest, [])
        stop(forward, producer)


# --- settling failures ------------------------------------------------------------------------------


def dead_lettered(broker: Broker) -> tuple[str, dict[str, Any]]:
    """A dead-letter queue, and the declare option of a queue that dead-letters into it."""
    dlq = broker.queue()
    declare = {"arguments": {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}}
    return dlq, declare


def deliveries(messages: list[pl.Message]) -> Counter:
    return Counter(m.data for m in messages)


class TestOnFailure:
    def test_reject_and_requeue_once_requeues_a_failure_once_then_dead_letters_it(
        self, runtime, broker
    ):
        dlq, declare = dead_lettered(broker)
        queue = broker.name()
        producer, acker = start(queue, broker.url, consumer_args=(lambda m: True,), declare=declare)
        wait_until(lambda: stats(producer)["connected"])
        broker.publish(queue, bodies(10))
        _, bad = collect_acked(20)
        assert deliveries(bad) == Counter({b: 2 for b in bodies(10)})
        assert sorted(m.metadata["redelivered"] for m in bad) == [False] * 10 + [True] * 10
        wait_until(lambda: broker.ready(dlq) == 10)
        assert nothing_more("acked")  # a poison message is not requeued a second time
        assert broker.ready(queue) == 0
        stop(acker, producer)
        assert broker.ready(queue) == 0

    def test_reject_dead_letters_a_failure_at_once(self, runtime, broker):
        dlq, declare = dead_lettered(broker)
        queue = broker.name()
        producer, acker = start(
            queue, broker.url, consumer_args=(lambda m: True,), declare=declare, on_failure="reject"
        )
        wait_until(lambda: stats(producer)["connected"])
        broker.publish(queue, bodies(10))
        _, bad = collect_acked(10)
        assert deliveries(bad) == Counter(bodies(10))
        wait_until(lambda: broker.ready(dlq) == 10)
        assert nothing_more("acked")
        stop(acker, producer)
        assert broker.ready(queue) == 0

    def test_reject_and_requeue_requeues_every_failure(self, runtime, broker):
        dlq, declare = dead_lettered(broker)
        queue = broker.name()
        seen: Counter = Counter()  # owned by the Acker's process

        def fail_twice(message: pl.Message) -> bool:
            seen[message.data] += 1
            return seen[message.data] <= 2

        producer, acker = start(
            queue,
            broker.url,
            consumer_args=(fail_twice,),
            declare=declare,
            on_failure="reject_and_requeue",
        )
        wait_until(lambda: stats(producer)["connected"])
        broker.publish(queue, bodies(5))
        ok, bad = collect_acked(15)
        assert deliveries(ok) == Counter(bodies(5))
        assert deliveries(bad) == Counter({b: 2 for b in bodies(5)})
        stop(acker, producer)
        assert broker.ready(queue) == 0
        assert broker.ready(dlq) == 0

    def test_ack_on_failure_drops_the_message(self, runtime, broker):
        dlq, declare = dead_lettered(broker)
        queue = broker.name()
        producer, acker = start(
            queue, broker.url, consumer_args=(lambda m: True,), declare=declare, on_failure="ack"
        )
        wait_until(lambda: stats(producer)["connected"])
        broker.publish(queue, bodies(5))
        _, bad = collect_acked(5)
        assert deliveries(bad) == Counter(bodies(5))
        assert nothing_more("acked")
        stop(acker, producer)
        assert (broker.ready(queue), broker.ready(dlq)) == (0, 0)

    def test_configure_ack_chooses_per_message(self, runtime, broker):
        dlq, declare = dead_lettered(broker)
        queue = broker.name()

        def fail(message: pl.Message) -> Any:
            if message.data == b"fail-reject":
                return message.configure_ack(on_failure="reject")
            return True if message.data == b"fail-default" else None

        def configure(message: pl.Message) -> pl.Message:
            return (
                message.configure_ack(on_success="reject")
                if message.data == b"ok-reject"
                else message
            )

        producer, acker = start(
            queue, broker.url, consumer_args=(fail, configure), declare=declare, on_failure="ack"
        )
        wait_until(lambda: stats(producer)["connected"])
        broker.publish(queue, [b"fail-reject", b"fail-default", b"ok-reject", b"ok-default"])
        collect_acked(4)
        wait_until(lambda: broker.ready(dlq) == 2)
        got = broker._channel_do(
            lambda ch: sorted(ch.basic_get(dlq, auto_ack=True)[2] for _ in range(2))
        )
        assert got == [b"fail-reject", b"ok-reject"]
        stop(acker, producer)
        assert broker.ready(queue) == 0

    def test_configure_ack_rejects_unknown_options_and_values(self, runtime, broker):
        queue = broker.queue()
        broker.publish(queue, [b"x"])
        producer, forward = start(queue, broker.url, consumer=Forward)
        [message] = collect_got(1)
        with pytest.raises(ValueError, match="'requeue'"):
            message.configure_ack(requeue=True)
        with pytest.raises(ValueError, match=r"'on_failure'.*'maybe'"):
            message.configure_ack(on_failure="maybe")
        configured = message.configure_ack(on_failure="reject", on_success="reject_and_requeue")
        assert configured.acknowledger[2].on_failure == "reject"
        # configure_ack made a new message; the original is unchanged
        assert message.acknowledger[2].on_failure is None
        pl.ack_messages([message], [])
        stop(forward, producer)
        assert broker.ready(queue) == 0


# --- declaring ----------------------------------------------------------------------------------------


class TestDeclare:
    def test_declare_creates_the_queue_with_its_arguments(self, runtime, broker):
        queue = broker.name()
        declare = {"durable": True, "arguments": {"x-max-length": 1000}}
        producer, acker = start(queue, broker.url, declare=declare)
        wait_until(lambda: stats(producer)["connected"])
        assert broker.exists(queue)
        broker._channel_do(lambda ch: ch.queue_declare(queue, **declare))  # same arguments: fine
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="PRECONDITION_FAILED"):
            broker._channel_do(lambda ch: ch.queue_declare(queue, durable=True))
        broker.publish(queue, [b"one"])
        ok, _ = collect_acked(1)
        assert ok[0].data == b"one"
        stop(acker, producer)

    def test_a_missing_queue_is_retried_until_it_exists(self, runtime, broker, caplog):
        caplog.set_level(logging.WARNING, logger="otpy.pipeline")
        queue = broker.name()
        producer, acker = start(queue, broker.url)  # declare=None: the queue must exist
        wait_until(lambda: stats(producer)["failures"] >= 2)
        assert not stats(producer)["connected"]
        warnings = [
            r for r in caplog.records if r.name == "otpy.pipeline" and queue in r.getMessage()
        ]
        assert len(warnings) == 1 and "NOT_FOUND" in warnings[0].getMessage()
        broker._channel_do(lambda ch: ch.queue_declare(queue))
        broker.publish(queue, [b"late"])
        ok, _ = collect_acked(1, timeout=10.0)
        assert ok[0].data == b"late"
        stop(acker, producer)


# --- reconnecting ---------------------------------------------------------------------------------------


class TestReconnect:
    def test_a_stale_ack_after_a_reconnect_is_counted_not_raised(self, runtime, broker):
        queue = broker.queue()
        broker.publish(queue, bodies(5))
        producer, forward = start(queue, broker.url, consumer=Forward, prefetch_count=5)
        first = collect_got(5)
        assert not any(m.metadata["redelivered"] for m in first)
        close_all_connections()
        again = collect_got(5, timeout=10.0)  # RabbitMQ redelivers what was unacked
        assert all(m.metadata["redelivered"] for m in again)
        assert deliveries(again) == deliveries(first)
        assert stats(producer)["connections"] == 2
        pl.ack_messages(first, [])  # their channel is gone: dropped and counted, never raised
        wait_until(lambda: stats(producer)["stale_acks"] == 5)
        pl.ack_messages(again, [])
        wait_until(lambda: ready_and_unacked(queue) == (0, 0), timeout=10.0)
        assert stats(producer)["stale_acks"] == 5
        stop(forward, producer)
        assert broker.ready(queue) == 0

    def test_connections_closed_server_side_mid_run_lose_no_message(self, runtime, broker):
        n = 5000
        queue = broker.queue()
        broker.publish(queue, bodies(n))
        paused = threading.Event()
        resume = threading.Event()

        def gate(acked: int) -> None:  # runs in the Acker: hold one batch across the first close
            if acked >= 1000 and not paused.is_set():
                paused.set()
                resume.wait(WAIT)

        producer, acker = start(
            queue,
            broker.url,
            consumer_args=(None, None, gate),
            subscription={"max_demand": 50},
            prefetch_count=100,
        )
        seen: Counter = Counter()
        closed_again = False
        assert paused.wait(WAIT)
        close_all_connections()  # the held batch's channel dies under it
        wait_until(lambda: stats(producer)["connections"] >= 2)
        resume.set()  # so its ack is for a connection known to be gone
        while len(seen) < n:
            _, ok, bad = recv(tagged("acked"), timeout=10.0)
            assert bad == []
            seen.update(m.data for m in ok)
            if not closed_again and len(seen) >= 3000:
                closed_again = True
                close_all_connections()  # while messages flow
        assert set(seen) == set(bodies(n))  # every message processed at least once
        assert sum(seen.values()) >= n
        wait_until(lambda: stats(producer)["connections"] >= 3)
        assert stats(producer)["stale_acks"] >= 1  # at least the held batch
        stop(acker, producer)
        assert broker.ready(queue) == 0  # and nothing was left unacked

    def test_a_queue_deleted_under_the_consumer_is_declared_again(self, runtime, broker):
        queue = broker.name()
        producer, acker = start(queue, broker.url, declare={})
        wait_until(lambda: stats(producer)["connected"])
        broker.publish(queue, [b"before"])
        assert collect_acked(1)[0][0].data == b"before"
        broker._channel_do(lambda ch: ch.queue_delete(queue))  # RabbitMQ cancels our consumer
        wait_until(lambda: stats(producer)["connections"] == 2 and stats(producer)["connected"])
        broker.publish(queue, [b"after"])
        assert collect_acked(1)[0][0].data == b"after"
        stop(acker, producer)

    def test_a_broker_down_at_start_is_retried_logged_once_and_stops_cleanly(self, runtime, caplog):
        caplog.set_level(logging.DEBUG, logger="otpy.pipeline")
        url = "amqp://guest:secret@127.0.0.1:5679/%2F"
        producer = Producer.start_link({"queue": "nowhere", "url": url})
        wait_until(lambda: stats(producer)["failures"] >= 3)
        info = stats(producer)
        assert not info["connected"] and info["connections"] == 0
        warnings = [
            r for r in caplog.records if r.name == "otpy.pipeline" and r.levelno >= logging.WARNING
        ]
        assert len(warnings) == 1
        text = warnings[0].getMessage()
        assert "127.0.0.1:5679" in text and "secret" not in text and "guest:***" in text
        stop(producer)
        assert not any(t.name == "otpy-rabbitmq[nowhere]" for t in threading.enumerate())


# --- options ------------------------------------------------------------------------------------------------


class TestOptions:
    def test_the_class_offers_the_checks_and_asks_for_the_pipeline_prefetch(self, runtime):
        assert Producer.validate_options is validate_options
        assert "_default_prefetch" in Producer.pipeline_options

    def test_defaults(self, runtime):
        assert validate_options({"queue": "orders"}) == {
            "queue": "orders",
            "url": "amqp://guest:guest@localhost:5672/%2F",
            "prefetch_count": 50,
            "declare": None,
            "on_success": "ack",
            "on_failure": "reject_and_requeue_once",
        }

    @pytest.mark.parametrize(
        ("options", "error", "match"),
        [
            ({}, ValueError, "'queue'"),
            (
                {"queue": "q", "prefetch": 5},
                ValueError,
                r"unknown RabbitMQProducer option\(s\) 'prefetch'",
            ),
            ({"queue": 7}, TypeError, "'queue' must be a str"),
            ({"queue": ""}, ValueError, "'declare'"),
            ({"queue": "q", "url": "http://host/"}, ValueError, "amqp://"),
            ({"queue": "q", "url": "amqp://h:port/"}, ValueError, "'url' is not a usable AMQP URL"),
            ({"queue": "q", "url": "amqp://h/?bogus=1"}, ValueError, "bogus"),
            ({"queue": "q", "url": 5}, TypeError, "'url' must be a str"),
            (
                {"queue": "q", "prefetch_count": 0},
                ValueError,
                "'prefetch_count' must be an int from 1",
            ),
            ({"queue": "q", "prefetch_count": 70000}, ValueError, "65535"),
            ({"queue": "q", "prefetch_count": 2.5}, TypeError, "'prefetch_count'"),
            ({"queue": "q", "prefetch_count": True}, TypeError, "'prefetch_count'"),
            ({"queue": "q", "_default_prefetch": 0}, ValueError, "'_default_prefetch'"),
            ({"queue": "q", "on_failure": "requeue"}, ValueError, "'on_failure' must be one of"),
            ({"queue": "q", "on_success": None}, ValueError, "'on_success' must be one of"),
            ({"queue": "q", "declare": True}, TypeError, "'declare' must be None"),
            ({"queue": "q", "declare": {"durible": True}}, ValueError, "'durible'"),
            ({"queue": "q", "declare": {"durable": "yes"}}, TypeError, "'durable' must be a bool"),
            (
                {"queue": "q", "declare": {"arguments": [1]}},
                TypeError,
                "'arguments' must be a dict",
            ),
            ("q", TypeError, "takes a dict of options"),
        ],
    )
    def test_bad_options_are_rejected_naming_them(self, runtime, options, error, match):
        with pytest.raises(error, match=match):
            validate_options(options)
        with pytest.raises(otpy.StartError) as info:
            Producer.start_link(options)
        assert isinstance(info.value.reason, error)

    def test_a_bad_url_never_shows_its_password(self, runtime):
        with pytest.raises(ValueError) as info:
            validate_options({"queue": "q", "url": "amqp://user:hunter2@h:port/"})
        assert "hunter2" not in str(info.value)

    def test_without_pika_the_error_names_the_extra(self, runtime):
        code = (
            "import sys; sys.modules['pika'] = None\n"
            "import otpy.pipeline as pl\n"
            "try:\n    pl.RabbitMQProducer\n"
            "except ImportError as exc:\n    print(exc)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
        )
        assert "otpy[rabbitmq]" in done.stdout, done.stderr


# --- draining ------------------------------------------------------------------------------------------------


class Drainable(RabbitMQProducer):
    """Lets the test call prepare_for_draining as a pipeline would, inside the producer."""

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "drain":
            return self.prepare_for_draining()
        return super().handle_call(request, caller)


class TestDrain:
    def test_prepare_for_draining_cancels_the_consumer_and_requeues_what_no_stage_got(
        self, runtime, broker
    ):
        queue = broker.queue()
        broker.publish(queue, bodies(20))
        producer = Drainable.start_link({"queue": queue, "url": broker.url, "prefetch_count": 10})
        forward = Forward.start_link(otpy.self(), 3, subscribe_to=[producer])
        held = collect_got(3)
        wait_until(lambda: stats(producer)["buffered"] == 7)
        assert otpy.GenServer.call(producer, "drain") == []
        assert stats(producer)["buffered"] == 0
        wait_until(lambda: broker.ready(queue) == 17)  # 10 never delivered + 7 requeued
        pl.ack_messages(held, [])  # what a stage got is still acked on the open channel
        broker.publish(queue, bodies(5, prefix="late"))
        wait_until(lambda: broker.ready(queue) == 22)
        wait_until(lambda: ready_and_unacked(queue) == (22, 0), timeout=10.0)
        assert stats(producer)["stale_acks"] == 0
        assert nothing_more("got")
        stop(forward, producer)
        assert broker.ready(queue) == 22


# --- in a pipeline -------------------------------------------------------------------------------------------


needs_pipeline = pytest.mark.skipif(
    not hasattr(pl, "Pipeline"), reason="otpy.pipeline.Pipeline is not written yet"
)


def _pipeline_class() -> type:
    class Orders(pl.Pipeline):
        def handle_message(self, processor, message, context):
            if message.data.endswith(b"7"):
                return message.failed("ends in 7")
            return message

        def handle_batch(self, batcher, messages, batch_info, context):
            otpy.send(context, ("batch", [m.data for m in messages]))
            return messages

    return Orders


@needs_pipeline
class TestInAPipeline:
    def test_a_pipeline_consumes_acks_dead_letters_and_drains(self, runtime, broker):
        dlq, declare = dead_lettered(broker)
        queue = broker.name()
        name = f"orders-{uuid.uuid4().hex[:8]}"
        Orders = _pipeline_class()
        pid = Orders.start_link(
            name=name,
            producer={
                "module": (
                    Producer,
                    {"queue": queue, "url": broker.url, "declare": declare, "on_failure": "reject"},
                ),
            },
            processors={"default": {"concurrency": 2, "max_demand": 5}},
            batchers={"default": {"batch_size": 20, "batch_timeout": 0.05}},
            context=otpy.self(),
            shutdown=10.0,
        )
        [producer] = pl.Pipeline.producer_names(name)
        # the processors' concurrency x max_demand, plus the open batches: 2 x 5 + 1 x 20
        assert stats(producer)["prefetch_count"] == 30
        wait_until(lambda: stats(producer)["connected"])
        broker.publish(queue, bodies(300))
        batched: list[bytes] = []
        expected = [b for b in bodies(300) if not b.endswith(b"7")]
        while len(batched) < len(expected):
            batched.extend(recv(tagged("batch"))[1])
        assert sorted(batched) == sorted(expected)
        wait_until(lambda: broker.ready(dlq) == 30)
        otpy.unlink(pid)
        pl.Pipeline.stop(name)
        assert broker.ready(queue) == 0  # every message acked; none left unacked

    def test_the_pipeline_checks_the_producer_options_at_start(self, runtime):
        Orders = _pipeline_class()
        with pytest.raises(ValueError, match="'prefetch'"):
            Orders.start_link(
                name="bad-options",
                producer={"module": (Producer, {"queue": "q", "prefetch": 10})},
                processors={"default": {}},
            )
