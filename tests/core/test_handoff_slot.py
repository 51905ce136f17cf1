"""The worker's hand-off slot: a process made runnable by a quick turn runs on the same thread after it.

The slot must never strand a process: it runs after the turn, or goes to the
run queue before the turn handles another message, before the worker blocks
in an otpy wait, before it runs another process's code inline, whenever the
sending process is not quick, and, when the turn blocks where otpy cannot
see it, by the slot watcher.
"""

from __future__ import annotations

import threading
import time

import pytest

import otpy
from otpy._core import _scheduler
from otpy.testing import assert_receive
from tests.conftest import WAIT


@pytest.fixture
def no_watcher(monkeypatch):
    """The slot watcher looks too rarely to rescue anything within a test: what the
    test shows is then the flush rule under test, not the watcher."""
    monkeypatch.setattr(_scheduler, "SLOT_WATCH", 60.0)

pytestmark = pytest.mark.timeout(60)


class Relay(otpy.GenServer):
    """Does what each cast asks; ``call`` answers "ok" (to wait until a turn has ended)."""

    def init(self, owner):
        self.owner = owner

    def handle_call(self, request, caller):
        return "ok"

    def handle_cast(self, request):
        match request:
            case ("cast_then_receive", target):
                # An otpy wait after the cast: the target must run meanwhile.
                otpy.GenServer.cast(target, ("ping", otpy.self()))
                got = otpy.receive(timeout=WAIT)
                otpy.send(self.owner, ("relay got", got))
            case ("cast_set", target, event):
                otpy.GenServer.cast(target, ("set", event))
            case ("block", event):
                # Blocks outside otpy: a slot kept across this would wait for it.
                otpy.send(self.owner, ("blocked", event.wait(WAIT)))
            case ("slow", seconds):
                time.sleep(seconds)  # noqa: SLEEP001 the slow handler is the behaviour under test
            case ("cast_then_block", target, event):
                otpy.GenServer.cast(target, ("set", event))
                otpy.send(self.owner, ("blocked", event.wait(WAIT)))
            case ("cast_then_call", target, server, event):
                otpy.GenServer.cast(target, ("set", event))
                otpy.send(self.owner, ("called", otpy.GenServer.call(server, event)))


class Target(otpy.GenServer):
    def handle_cast(self, request):
        match request:
            case ("ping", sender):
                otpy.send(sender, "pong")
            case ("set", event):
                event.set()


def test_the_slot_goes_to_the_queue_before_an_otpy_wait(runtime, no_watcher):
    relay = Relay.start(otpy.self())
    target = Target.start()
    otpy.GenServer.cast(relay, ("cast_then_receive", target))
    assert_receive(lambda m: m == ("relay got", "pong"), WAIT)


def test_the_slot_goes_to_the_queue_before_the_next_message(runtime, no_watcher):
    relay = Relay.start(otpy.self())
    target = Target.start()
    event = threading.Event()
    # One turn of a quick process: while "slow" runs the other two arrive. "cast_set"
    # puts the target in the slot; "block" waits outside otpy until the target has run,
    # which it can only do if the slot went to the queue before "block".
    otpy.GenServer.cast(relay, ("slow", 0.05))
    otpy.GenServer.cast(relay, ("cast_set", target, event))
    otpy.GenServer.cast(relay, ("block", event))
    assert_receive(lambda m: m == ("blocked", True), WAIT * 2)


def test_a_slow_process_does_not_use_the_slot(runtime, no_watcher):
    relay = Relay.start(otpy.self())
    target = Target.start()
    otpy.GenServer.cast(relay, ("slow", 0.05))
    assert otpy.GenServer.call(relay, "sync") == "ok"  # that turn ended: the relay is slow now
    assert otpy.process_info(relay) is not None
    event = threading.Event()
    otpy.GenServer.cast(relay, ("cast_then_block", target, event))
    assert_receive(lambda m: m == ("blocked", True), WAIT * 2)


def test_a_handler_that_blocks_outside_otpy_does_not_strand_the_slot(runtime):
    # A quick process (a fresh one) puts the target in its slot, then blocks on a
    # threading.Event that only the target sets: the slot watcher must queue the target.
    relay = Relay.start(otpy.self())
    target = Target.start()
    event = threading.Event()
    otpy.GenServer.cast(relay, ("cast_then_block", target, event))
    assert_receive(lambda m: m == ("blocked", True), WAIT * 2)


def test_an_inline_call_after_a_cast_does_not_hold_the_slot(runtime, no_watcher):
    class Waits(otpy.GenServer):
        def handle_call(self, event, caller):
            return event.wait(WAIT)  # runs inline, on the relay's thread

    relay = Relay.start(otpy.self())
    target = Target.start()
    event = threading.Event()
    otpy.GenServer.cast(relay, ("cast_then_call", target, Waits.start(), event))
    assert_receive(lambda m: m == ("called", True), WAIT * 2)


def test_a_quick_turn_runs_its_target_on_the_same_thread_after_it(runtime, no_watcher):
    threads = []

    class Where(otpy.GenServer):
        def handle_cast(self, request):
            threads.append(threading.get_ident())
            if request:
                otpy.GenServer.cast(request, None)
            else:
                otpy.send(owner, "done")

    owner = otpy.self()
    a, b = Where.start(), Where.start()
    for _ in range(3):  # a few quick turns first, so that both count as quick
        otpy.GenServer.cast(a, None)
        assert_receive(lambda m: m == "done", WAIT)
        otpy.GenServer.cast(b, None)
        assert_receive(lambda m: m == "done", WAIT)
    threads.clear()
    otpy.GenServer.cast(a, b)
    assert_receive(lambda m: m == "done", WAIT)
    assert len(threads) == 2 and threads[0] == threads[1]


def test_ring_with_many_tokens_loses_none(runtime):
    """Stress: 200 servers in a ring pass 50 tokens 20 laps each on a small pool."""
    size, tokens, laps = 200, 50, 20
    owner = otpy.self()

    class Node(otpy.GenServer):
        def init(self):
            self.next = None

        def handle_cast(self, request):
            if isinstance(request, otpy.Pid):
                self.next = request
                return
            token, hops = request
            if hops == 0:
                otpy.send(owner, ("token", token))
            else:
                otpy.GenServer.cast(self.next, (token, hops - 1))

    nodes = [Node.start() for _ in range(size)]
    for node, nxt in zip(nodes, nodes[1:] + nodes[:1], strict=True):
        otpy.GenServer.cast(node, nxt)
    for token in range(tokens):
        otpy.GenServer.cast(nodes[token % size], (token, size * laps))
    seen = sorted(
        assert_receive(lambda m: isinstance(m, tuple) and m[0] == "token", WAIT * 4)[1]
        for _ in range(tokens)
    )
    assert seen == list(range(tokens))


def test_messages_through_the_slot_keep_their_order(runtime):
    owner = otpy.self()

    class Sink(otpy.GenServer):
        def init(self):
            self.got = []

        def handle_cast(self, n):
            self.got.append(n)
            if n == 999:
                otpy.send(owner, list(self.got))

    class Source(otpy.GenServer):
        def handle_cast(self, sink):
            for n in range(1000):
                otpy.GenServer.cast(sink, n)

    sink = Sink.start()
    otpy.GenServer.cast(Source.start(), sink)
    assert assert_receive(lambda m: isinstance(m, list), WAIT) == list(range(1000))
