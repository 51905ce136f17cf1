"""spawn_opt and bounded mailboxes: what counts, what is dropped, who waits."""

from __future__ import annotations

import threading

import pytest

import otpy
from otpy import telemetry
from otpy.testing import assert_receive
from tests.conftest import WAIT, down_of, in_thread, wait_until

pytestmark = pytest.mark.timeout(30)


def gated(gate: threading.Event, me: otpy.Pid):
    """A body that takes no message until ``gate`` is set, then echoes every message to ``me``."""

    def body():
        gate.wait(WAIT)
        while True:
            msg = otpy.receive()
            if msg == "stop":
                return
            otpy.send(me, ("got", msg))

    return body


def blocked(pid):
    """Whether ``pid``'s code is in an otpy wait on a thread (not merely not started yet)."""
    info = otpy.process_info(pid)
    return info is not None and info.status == "waiting" and info.thread is not None


def got(n):
    return [assert_receive(lambda m: type(m) is tuple and m[0] == "got", WAIT)[1] for _ in range(n)]


@pytest.fixture
def gate():
    event = threading.Event()
    yield event
    event.set()


class TestSpawnOpt:
    def test_it_starts_a_process_with_args_and_kwargs(self, runtime):
        me = otpy.self()
        otpy.spawn_opt(lambda a, b=0: otpy.send(me, a + b), args=(1,), kwargs={"b": 2})
        assert assert_receive(timeout=WAIT) == 3

    def test_monitor_returns_pid_and_ref(self, runtime):
        pid, ref = otpy.spawn_opt(lambda: None, monitor=True)
        assert assert_receive(down_of(ref), WAIT) == otpy.Down(ref, pid, "normal")

    def test_link_links_to_the_caller(self, runtime, trap):
        pid = otpy.spawn_opt(lambda: 1 / 0, link=True)
        exit_ = assert_receive(lambda m: isinstance(m, otpy.Exit), WAIT)
        assert exit_.pid == pid and isinstance(exit_.reason, ZeroDivisionError)

    def test_process_info_reports_the_limit(self, runtime, gate):
        pid = otpy.spawn_opt(gated(gate, otpy.self()), mailbox_limit=3)
        info = otpy.process_info(pid)
        assert (info.mailbox_limit, info.dropped) == (3, 0)
        assert otpy.process_info(otpy.self()).mailbox_limit is None

    @pytest.mark.parametrize(
        ("kwargs", "error", "words"),
        [
            ({"mailbox_limit": -1}, ValueError, "mailbox_limit must be None (unbounded) or an int >= 0; got -1"),
            ({"mailbox_limit": 1.5}, TypeError, "got 1.5 of type float"),
            ({"mailbox_limit": True}, TypeError, "got True of type bool"),
            ({"on_full": "wait"}, ValueError, "on_full must be one of 'raise', 'drop', 'block'; got 'wait'"),
            ({"args": 1}, TypeError, "args must be a tuple"),
            ({"kwargs": [1]}, TypeError, "kwargs must be a dict"),
        ],
    )
    def test_bad_options_raise_naming_the_value(self, runtime, kwargs, error, words):
        me = otpy.self()
        with pytest.raises(error) as info:
            otpy.spawn_opt(lambda: None, **kwargs)
        assert words in str(info.value)
        assert runtime.processes() == [me]

    def test_a_non_callable_raises_type_error(self, runtime):
        with pytest.raises(TypeError, match="spawn needs a callable"):
            otpy.spawn_opt(42)


class TestRaise:
    def test_a_send_to_a_full_mailbox_raises_and_delivers_nothing(self, runtime, gate):
        pid = otpy.spawn_opt(gated(gate, otpy.self()), mailbox_limit=2)
        otpy.send(pid, 1)
        otpy.send(pid, 2)
        with pytest.raises(otpy.MailboxFullError) as info:
            otpy.send(pid, 3)
        assert (info.value.pid, info.value.limit) == (pid, 2)
        assert "full" in str(info.value) and "mailbox_limit" in str(info.value)
        gate.set()
        assert got(2) == [1, 2]
        otpy.send(pid, 4)  # room again
        assert got(1) == [4]
        assert otpy.process_info(pid).dropped == 0  # a refused send is the sender's error, not a drop
        otpy.send(pid, "stop")

    def test_a_cast_to_a_full_mailbox_is_dropped_and_counted(self, runtime, gate):
        pid = otpy.spawn_opt(gated(gate, otpy.self()), mailbox_limit=1)
        otpy.GenServer.cast(pid, "a")
        otpy.GenServer.cast(pid, "b")  # never raises
        assert otpy.process_info(pid).dropped == 1
        gate.set()
        (envelope,) = got(1)
        assert envelope[1] == "a"  # the first cast got in; the second was dropped
        otpy.send(pid, "stop")

    def test_a_zero_limit_refuses_every_user_message(self, runtime, gate):
        pid = otpy.spawn_opt(gated(gate, otpy.self()), mailbox_limit=0)
        with pytest.raises(otpy.MailboxFullError):
            otpy.send(pid, 1)
        otpy.exit(pid, "kill")


class TestNeverCounted:
    def test_exit_signals_and_downs_get_into_a_full_mailbox_and_do_not_count(self, runtime, gate):
        me = otpy.self()
        seen = []

        def body():
            otpy.trap_exits(True)
            refs = [otpy.monitor(otpy.spawn(lambda: None)) for _ in range(5)]
            friend = otpy.spawn_link(lambda: otpy.receive(match=lambda m: m == "die") and 1 / 0)
            otpy.send(me, ("ready", friend))
            gate.wait(WAIT)
            for _ in range(5 + 1 + 2):
                seen.append(otpy.receive())
            otpy.send(me, "done")
            assert refs

        pid = otpy.spawn_opt(body, mailbox_limit=2)
        _, friend = assert_receive(lambda m: type(m) is tuple and m[0] == "ready", WAIT)
        otpy.send(pid, "a")
        otpy.send(pid, "b")
        with pytest.raises(otpy.MailboxFullError):
            otpy.send(pid, "c")
        otpy.send(friend, "die")
        wait_until(lambda: otpy.process_info(pid).message_queue_len >= 8)
        gate.set()
        assert assert_receive(timeout=WAIT) == "done"
        assert sum(isinstance(m, otpy.Down) for m in seen) == 5
        assert sum(isinstance(m, otpy.Exit) for m in seen) == 1
        assert [m for m in seen if isinstance(m, str)] == ["a", "b"]

    def test_a_bounded_server_still_gets_its_replies(self, runtime):
        class Echo(otpy.GenServer):
            def handle_call(self, request, caller):
                return request

        class Asker(otpy.GenServer):
            mailbox_limit = 0  # nothing may wait, yet its calls' replies still arrive

            def handle_call(self, request, caller):
                return otpy.GenServer.call(echo, request, timeout=0.5)  # via the mailbox

        echo = Echo.start()
        asker = Asker.start()
        assert Asker.call(asker, "hello", timeout=WAIT) == "hello"


class TestDrop:
    def test_drop_mode_drops_new_messages_and_reports_them(self, runtime, gate):
        events = []
        telemetry.attach("drops", ("otpy", "mailbox", "drop"), lambda *a: events.append(a[1:3]))
        try:
            pid = otpy.spawn_opt(gated(gate, otpy.self()), mailbox_limit=2, on_full="drop")
            for i in range(5):
                otpy.send(pid, i)  # never raises
        finally:
            telemetry.detach("drops")
        assert otpy.process_info(pid).dropped == 3
        assert events == [({"count": 1}, {"pid": pid, "limit": 2})] * 3
        gate.set()
        assert got(2) == [0, 1]  # the oldest stay, the new ones were dropped
        otpy.send(pid, "stop")

    @pytest.mark.parametrize("on_full", ["raise", "drop", "block"])
    def test_a_timer_message_that_finds_the_mailbox_full_is_dropped(self, runtime, gate, on_full):
        pid = otpy.spawn_opt(gated(gate, otpy.self()), mailbox_limit=1, on_full=on_full)
        otpy.send(pid, "first")
        otpy.send_after(0, pid, "late")
        wait_until(lambda: otpy.process_info(pid).dropped == 1)
        gate.set()
        assert got(1) == ["first"]
        otpy.send(pid, "stop")


class TestBlock:
    def test_a_blocked_sender_waits_for_room_and_loses_nothing(self, runtime):
        me = otpy.self()
        n = 300

        def consumer():
            for _ in range(n):
                otpy.send(me, ("got", otpy.receive()))

        pid = otpy.spawn_opt(consumer, mailbox_limit=3, on_full="block")
        senders = []
        for k in range(3):
            senders.append(
                otpy.spawn_monitor(lambda k=k: [otpy.send(pid, (k, i)) for i in range(n // 3)])
            )
        received = got(n)
        for k in range(3):  # per sender, in order
            assert [i for s, i in received if s == k] == list(range(n // 3))
        for _, ref in senders:
            assert assert_receive(down_of(ref), WAIT).reason == "normal"

    def test_the_mailbox_never_holds_more_than_its_limit(self, runtime, gate):
        pid = otpy.spawn_opt(gated(gate, otpy.self()), mailbox_limit=4, on_full="block")
        threads = [
            threading.Thread(target=lambda k=k: [otpy.send(pid, (k, i)) for i in range(50)])
            for k in range(4)
        ]
        for t in threads:
            t.start()
        wait_until(lambda: otpy.process_info(pid).message_queue_len == 4)
        peak = 0
        gate.set()
        for _ in range(200):
            peak = max(peak, otpy.process_info(pid).message_queue_len)
            assert_receive(lambda m: type(m) is tuple and m[0] == "got", WAIT)
        for t in threads:
            t.join(WAIT)
        assert peak <= 4
        otpy.send(pid, "stop")

    def test_a_blocked_sender_holds_no_slot_of_max_threads(self):
        with otpy.Runtime(max_threads=1):
            me = otpy.self()

            def target_body():
                # Waits in an otpy receive (holding no slot) for an exit signal, which
                # always gets into a full mailbox; then echoes.
                otpy.trap_exits(True)
                otpy.receive(match=lambda m: isinstance(m, otpy.Exit))
                for _ in range(2):
                    otpy.send(me, ("got", otpy.receive()))

            target = otpy.spawn_opt(target_body, mailbox_limit=1, on_full="block")
            otpy.send(target, "fills it")
            # Blocked on the full mailbox, as an otpy wait: the one slot is free for others.
            sender = otpy.spawn(lambda: otpy.send(target, "waits"))
            wait_until(lambda: blocked(sender))
            ok = otpy.Task.async_(lambda: "ran meanwhile").await_(WAIT)
            assert ok == "ran meanwhile"
            otpy.exit(target, "go")
            assert got(2) == ["fills it", "waits"]

    def test_a_call_waits_for_room_within_its_timeout(self, runtime):
        hold = threading.Event()

        class Slow(otpy.GenServer):
            mailbox_limit = 1
            on_full = "block"
            inline_calls = False

            def handle_call(self, request, caller):
                if request == "hold":
                    hold.wait(WAIT)
                return request

        pid = Slow.start()
        try:
            first = otpy.Task.async_(lambda: Slow.call(pid, "hold", timeout=WAIT))
            wait_until(lambda: otpy.process_info(pid).status == "running")
            second = otpy.Task.async_(lambda: Slow.call(pid, "queued", timeout=WAIT))
            wait_until(lambda: otpy.process_info(pid).message_queue_len == 1)
            with pytest.raises(otpy.Timeout, match="full mailbox"):
                Slow.call(pid, "blocked", timeout=0.2)
        finally:
            hold.set()
        assert [first.await_(WAIT), second.await_(WAIT)] == ["hold", "queued"]

    def test_a_blocked_call_gets_its_reply_once_there_is_room(self, runtime):
        hold = threading.Event()

        class Slow(otpy.GenServer):
            mailbox_limit = 1
            on_full = "block"
            inline_calls = False

            def handle_call(self, request, caller):
                if request == "hold":
                    hold.wait(WAIT)
                return request

        pid = Slow.start()
        first = otpy.Task.async_(lambda: Slow.call(pid, "hold", timeout=WAIT))
        wait_until(lambda: otpy.process_info(pid).status == "running")
        second = otpy.Task.async_(lambda: Slow.call(pid, "queued", timeout=WAIT))
        wait_until(lambda: otpy.process_info(pid).message_queue_len == 1)
        third = otpy.Task.async_(lambda: Slow.call(pid, "blocked", timeout=WAIT))
        wait_until(lambda: blocked(third.pid))
        hold.set()
        assert [t.await_(WAIT) for t in (first, second, third)] == ["hold", "queued", "blocked"]

    def test_a_sender_blocked_on_a_process_that_dies_goes_on(self, runtime, gate):
        me = otpy.self()
        target = otpy.spawn_opt(gated(gate, me), mailbox_limit=1, on_full="block")
        otpy.send(target, 1)
        sender, ref = otpy.spawn_monitor(lambda: (otpy.send(target, 2), otpy.send(me, "sent")))
        wait_until(lambda: blocked(sender))
        otpy.exit(target, "kill")
        assert assert_receive(timeout=WAIT) == "sent"  # a send to the dead is lost, as in Erlang
        assert assert_receive(down_of(ref), WAIT).reason == "normal"

    def test_a_blocked_sender_can_be_killed(self, runtime, gate):
        target = otpy.spawn_opt(gated(gate, otpy.self()), mailbox_limit=1, on_full="block")
        otpy.send(target, 1)
        sender, ref = otpy.spawn_monitor(lambda: otpy.send(target, 2))
        wait_until(lambda: blocked(sender))
        otpy.exit(sender, "kill")
        assert assert_receive(down_of(ref), WAIT).reason == "killed"
        gate.set()
        assert got(1) == [1]
        otpy.send(target, "stop")

    def test_a_process_sending_to_its_own_full_mailbox_gets_an_error_not_a_hang(self, runtime):
        me = otpy.self()

        def body():
            otpy.send(otpy.self(), 1)
            try:
                otpy.send(otpy.self(), 2)
            except otpy.MailboxFullError:
                otpy.send(me, "refused")

        otpy.spawn_opt(body, mailbox_limit=1, on_full="block")
        assert assert_receive(timeout=WAIT) == "refused"

    def test_a_plain_thread_blocks_too(self, runtime, gate):
        pid = otpy.spawn_opt(gated(gate, otpy.self()), mailbox_limit=1, on_full="block")
        otpy.send(pid, 1)
        done = threading.Event()

        def sender():
            otpy.send(pid, 2)
            done.set()

        thread = threading.Thread(target=sender)
        thread.start()
        assert not done.wait(0.1)  # noqa: SLEEP001 the thread must still be blocked
        gate.set()
        thread.join(WAIT)
        assert done.is_set()
        assert got(2) == [1, 2]
        otpy.send(pid, "stop")


class TestBehaviours:
    def test_a_gen_server_with_a_limit_refuses_calls_when_full(self, runtime):
        hold = threading.Event()

        class Busy(otpy.GenServer):
            mailbox_limit = 1
            inline_calls = False

            def handle_cast(self, request):
                hold.wait(WAIT)

            def handle_call(self, request, caller):
                return request

        pid = Busy.start()
        try:
            otpy.GenServer.cast(pid, "hold")
            wait_until(lambda: otpy.process_info(pid).status == "running")
            otpy.GenServer.cast(pid, "waits")
            with pytest.raises(otpy.MailboxFullError):
                Busy.call(pid, "x")
            otpy.GenServer.cast(pid, "dropped")
            assert otpy.process_info(pid).dropped == 1
        finally:
            hold.set()
        wait_until(lambda: otpy.process_info(pid).message_queue_len == 0)
        assert Busy.call(pid, "after") == "after"

    def test_an_agent_takes_the_class_attributes(self, runtime):
        class Bounded(otpy.Agent):
            mailbox_limit = 7
            on_full = "drop"

        agent = Bounded.start_link(lambda: 0)
        info = otpy.process_info(agent)
        assert info.mailbox_limit == 7
        assert Bounded.get(agent, lambda s: s + 1) == 1

    def test_a_stage_takes_the_class_attributes(self, runtime):
        import otpy.stage as stage

        class Sink(stage.Consumer):
            mailbox_limit = 100

            def handle_events(self, events, from_):
                return None

        pid = Sink.start_link()
        assert otpy.process_info(pid).mailbox_limit == 100

    def test_a_bad_class_attribute_fails_the_start(self, runtime):
        class Bad(otpy.GenServer):
            on_full = "explode"

        me = otpy.self()
        with pytest.raises(ValueError, match="on_full must be one of"):
            Bad.start()
        assert runtime.processes() == [me]


class TestStress:
    def test_many_threads_on_a_tiny_blocking_mailbox_deliver_everything(self, runtime):
        me = otpy.self()
        n, senders = 2_000, 4
        pid = otpy.spawn_opt(
            lambda: [otpy.send(me, otpy.receive()) for _ in range(n * senders)],
            mailbox_limit=2,
            on_full="block",
        )

        def send_all(k):
            for i in range(n):
                otpy.send(pid, (k, i))

        threads = [threading.Thread(target=send_all, args=(k,)) for k in range(senders)]
        for t in threads:
            t.start()
        received = [assert_receive(timeout=WAIT) for _ in range(n * senders)]
        for t in threads:
            t.join(WAIT)
        for k in range(senders):
            assert [i for s, i in received if s == k] == list(range(n))
        assert otpy.process_info(pid) is None or otpy.process_info(pid).dropped == 0

    def test_drop_mode_counts_exactly_what_it_dropped(self, runtime, gate):
        pid = otpy.spawn_opt(gated(gate, otpy.self()), mailbox_limit=10, on_full="drop")
        in_thread(lambda: [otpy.send(pid, i) for i in range(1_000)])
        threads = [
            threading.Thread(target=lambda: [otpy.send(pid, -1) for _ in range(500)])
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert otpy.process_info(pid).dropped == 1_000 + 2_000 - 10
        gate.set()
        assert got(10) == list(range(10))
        otpy.send(pid, "stop")
