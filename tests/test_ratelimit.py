"""Acceptance tests for the "Rate limiting (otpy.ratelimit)" section of API.md."""

from __future__ import annotations

import math
import random
import threading
import time

import attrs
import pytest
from conftest import WAIT, down_of, tagged, wait_until

import otpy
from otpy import telemetry
from otpy.ratelimit import ConcurrencyLimiter, TokenBucket
from otpy.testing import assert_receive

pytestmark = pytest.mark.timeout(60)

EPS = 1e-6
"""Float slack for token arithmetic."""


# -- helpers --------------------------------------------------------------------------------


def queued_in(limiter, pid) -> bool:
    """Whether ``limiter`` monitors ``pid`` (a waiter it has queued, or a holder)."""
    info = otpy.process_info(limiter)
    return info is not None and pid in info.monitors


def spawn_acquirer(bucket, tokens, tag, timeout=WAIT, linger=False):
    """A process that acquires ``tokens`` and reports ``(tag, "ok", when)`` or the error.

    With ``linger`` it then stays alive until told "stop" (so no Down tells the bucket
    that it gave up).
    """
    me = otpy.self()

    def body():
        try:
            TokenBucket.acquire(bucket, tokens, timeout=timeout)
        except Exception as exc:  # reported to the test
            otpy.send(me, (tag, "error", exc))
        else:
            otpy.send(me, (tag, "ok", time.monotonic()))
        if linger:
            otpy.receive(match=lambda m: m == "stop")

    return otpy.spawn(body)


def drain(bucket) -> tuple[float, float]:
    """Empty the bucket; returns (before, after) monotonic times bracketing the drain."""
    before = time.monotonic()
    assert TokenBucket.try_acquire(bucket, TokenBucket.available(bucket) - EPS)
    after = time.monotonic()
    return before, after


@pytest.fixture
def rejects():
    """The ratelimit reject events, as (measurements, metadata) pairs."""
    events: list = []
    lock = threading.Lock()

    def handler(event, measurements, metadata, config):
        with lock:
            events.append((measurements, metadata))

    telemetry.attach("test-ratelimit-reject", ("otpy", "ratelimit", "reject"), handler)
    yield events
    telemetry.detach("test-ratelimit-reject")


# -- TokenBucket ------------------------------------------------------------------------------


class TestTokenBucketStart:
    def test_a_bucket_starts_full_and_capacity_defaults_to_rate(self, runtime):
        bucket = TokenBucket.start_link(rate=7.0)
        assert isinstance(bucket, otpy.Pid)
        assert TokenBucket.available(bucket) == 7.0
        assert TokenBucket.try_acquire(bucket, 7)
        assert not TokenBucket.try_acquire(bucket, 7)

    def test_the_defaults_are_rate_100_and_capacity_100(self, runtime):
        bucket = TokenBucket.start_link()
        assert TokenBucket.available(bucket) == 100.0
        with pytest.raises(ValueError):
            TokenBucket.try_acquire(bucket, 101)

    def test_an_explicit_capacity_is_the_starting_level_and_the_largest_request(self, runtime):
        bucket = TokenBucket.start_link(rate=1.0, capacity=3.5)
        assert TokenBucket.available(bucket) == 3.5
        assert TokenBucket.try_acquire(bucket, 3.5)
        with pytest.raises(ValueError, match="capacity"):
            TokenBucket.try_acquire(bucket, 4)

    def test_start_link_links_and_start_does_not(self, runtime):
        linked = TokenBucket.start_link(rate=1.0)
        alone = TokenBucket.start(rate=1.0)
        links = otpy.process_info(otpy.self()).links
        assert linked in links
        assert alone not in links
        TokenBucket.stop(alone)

    def test_a_named_bucket_is_used_by_name(self, runtime):
        bucket = TokenBucket.start_link(rate=5.0, name="api")
        assert otpy.whereis("api") == bucket
        assert TokenBucket.try_acquire("api", 2)
        assert TokenBucket.available("api") < 3.1
        TokenBucket.acquire("api", 1)
        TokenBucket.update("api", rate=6.0)
        TokenBucket.stop("api")
        assert otpy.whereis("api") is None

    def test_a_taken_name_raises_already_started_error(self, runtime):
        TokenBucket.start_link(rate=1.0, name="api")
        with pytest.raises(otpy.AlreadyStartedError):
            TokenBucket.start_link(rate=1.0, name="api")

    @pytest.mark.parametrize("rate", [0, -1.0, math.nan, math.inf, -math.inf])
    def test_a_rate_that_is_not_a_finite_positive_number_raises_value_error(self, runtime, rate):
        with pytest.raises(ValueError, match="rate"):
            TokenBucket.start_link(rate=rate)
        with pytest.raises(ValueError, match="rate"):
            TokenBucket.child_spec(rate=rate)

    @pytest.mark.parametrize("capacity", [0, -2.0, math.nan, math.inf])
    def test_a_bad_capacity_raises_value_error(self, runtime, capacity):
        with pytest.raises(ValueError, match="capacity"):
            TokenBucket.start_link(rate=1.0, capacity=capacity)

    @pytest.mark.parametrize("bad", ["10", None, True, [1]])
    def test_a_rate_that_is_not_a_number_raises_type_error(self, runtime, bad):
        with pytest.raises(TypeError, match="rate"):
            TokenBucket.start_link(rate=bad)

    def test_stop_ends_the_bucket_and_then_it_is_a_noproc(self, runtime):
        bucket = TokenBucket.start_link(rate=1.0)
        ref = otpy.monitor(bucket)
        TokenBucket.stop(bucket)
        assert assert_receive(down_of(ref), WAIT).reason == "normal"
        with pytest.raises(otpy.NoProcError):
            TokenBucket.try_acquire(bucket)
        with pytest.raises(otpy.NoProcError):
            TokenBucket.available(bucket)
        with pytest.raises(otpy.NoProcError):
            TokenBucket.try_acquire("no-such-bucket")

    def test_a_process_that_is_not_a_bucket_raises_type_error(self, runtime):
        agent = otpy.Agent.start_link(lambda: 0)
        with pytest.raises(TypeError, match="TokenBucket"):
            TokenBucket.try_acquire(agent)

    def test_the_class_reports_its_public_module(self, runtime):
        assert TokenBucket.__module__ == "otpy.ratelimit"
        assert ConcurrencyLimiter.__module__ == "otpy.ratelimit"
        assert ConcurrencyLimiter.Status.__module__ == "otpy.ratelimit"


class TestTokenBucketSupervision:
    def test_child_spec_starts_a_named_bucket_in_a_supervisor_that_restarts_it_full(self, runtime):
        spec = TokenBucket.child_spec(rate=2.0, capacity=4.0, name="mail")
        assert spec.id == "mail"
        sup = otpy.Supervisor.start_link([spec])
        first = otpy.whereis("mail")
        assert [c.pid for c in otpy.Supervisor.which_children(sup)] == [first]
        assert TokenBucket.try_acquire("mail", 4)
        ref = otpy.monitor(first)
        otpy.exit(first, "kill")
        assert_receive(down_of(ref), WAIT)
        wait_until(lambda: otpy.whereis("mail") not in (None, first))
        assert TokenBucket.available("mail") == 4.0
        otpy.Supervisor.stop(sup)

    def test_child_spec_id_defaults_to_the_class_without_a_name(self, runtime):
        assert TokenBucket.child_spec(rate=1.0).id is TokenBucket
        assert TokenBucket.child_spec(rate=1.0, id="x").id == "x"


class TestTryAcquire:
    def test_try_acquire_depletes_the_bucket_then_says_no(self, runtime):
        bucket = TokenBucket.start_link(rate=0.001, capacity=3.0)
        assert [TokenBucket.try_acquire(bucket) for _ in range(4)] == [True, True, True, False]
        assert TokenBucket.available(bucket) < 0.01

    def test_tokens_refill_continuously_at_rate(self, runtime):
        rate = 20.0
        bucket = TokenBucket.start_link(rate=rate, capacity=10.0)
        before, after = drain(bucket)
        time.sleep(0.2)  # noqa: SLEEP001 the refill over time is the behaviour under test
        start = time.monotonic()
        level = TokenBucket.available(bucket)
        end = time.monotonic()
        assert rate * (start - after) - EPS <= level <= rate * (end - before) + EPS

    def test_refill_stops_at_capacity(self, runtime):
        bucket = TokenBucket.start_link(rate=1000.0, capacity=2.0)
        drain(bucket)
        wait_until(lambda: TokenBucket.available(bucket) == 2.0)
        time.sleep(0.02)  # noqa: SLEEP001 time passing on a full bucket is the behaviour
        assert TokenBucket.available(bucket) == 2.0

    def test_fractional_tokens_are_allowed(self, runtime):
        bucket = TokenBucket.start_link(rate=0.001, capacity=1.0)
        assert TokenBucket.try_acquire(bucket, 0.25)
        assert TokenBucket.try_acquire(bucket, 0.75 - EPS)
        assert not TokenBucket.try_acquire(bucket, 0.25)

    def test_a_request_above_capacity_raises_value_error(self, runtime):
        bucket = TokenBucket.start_link(rate=1.0, capacity=2.0)
        with pytest.raises(ValueError, match=r"capacity 2\.0"):
            TokenBucket.try_acquire(bucket, 3)
        assert TokenBucket.available(bucket) == 2.0

    @pytest.mark.parametrize("tokens", [0, -1, math.nan, math.inf])
    def test_tokens_must_be_a_finite_positive_number(self, runtime, tokens):
        bucket = TokenBucket.start_link(rate=1.0, capacity=2.0)
        with pytest.raises(ValueError, match="tokens"):
            TokenBucket.try_acquire(bucket, tokens)
        with pytest.raises(ValueError, match="tokens"):
            TokenBucket.acquire(bucket, tokens)

    @pytest.mark.parametrize("tokens", ["1", None, True])
    def test_tokens_that_are_not_a_number_raise_type_error(self, runtime, tokens):
        bucket = TokenBucket.start_link(rate=1.0)
        with pytest.raises(TypeError, match="tokens"):
            TokenBucket.try_acquire(bucket, tokens)

    def test_try_acquire_does_not_overtake_a_waiting_acquire(self, runtime):
        bucket = TokenBucket.start_link(rate=10.0, capacity=10.0)
        assert TokenBucket.try_acquire(bucket, 8)
        waiter = spawn_acquirer(bucket, 5, "big")
        wait_until(lambda: queued_in(bucket, waiter))
        assert TokenBucket.available(bucket) >= 2.0
        assert not TokenBucket.try_acquire(bucket, 1)
        assert assert_receive(tagged("big"), WAIT)[1] == "ok"
        assert TokenBucket.try_acquire(bucket, 0.001)

    def test_a_refusal_emits_a_reject_event_and_a_grant_does_not(self, runtime, rejects):
        bucket = TokenBucket.start_link(rate=0.001, capacity=1.0, name="api")
        assert TokenBucket.try_acquire(bucket)
        assert rejects == []
        assert not TokenBucket.try_acquire(bucket, 0.5)
        assert rejects == [({"tokens": 0.5}, {"limiter": "api", "operation": "try_acquire"})]

    def test_the_reject_event_names_an_unnamed_bucket_by_pid(self, runtime, rejects):
        bucket = TokenBucket.start_link(rate=0.001, capacity=1.0)
        TokenBucket.try_acquire(bucket)
        TokenBucket.try_acquire(bucket)
        assert rejects[0][1]["limiter"] == bucket


class TestAcquire:
    def test_acquire_takes_available_tokens_at_once(self, runtime):
        bucket = TokenBucket.start_link(rate=0.001, capacity=5.0)
        TokenBucket.acquire(bucket, 3, timeout=0)
        assert 2.0 - EPS <= TokenBucket.available(bucket) <= 2.0 + EPS

    def test_acquire_waits_until_the_tokens_are_there(self, runtime):
        rate = 20.0
        bucket = TokenBucket.start_link(rate=rate, capacity=4.0)
        before, _ = drain(bucket)
        TokenBucket.acquire(bucket, 2, timeout=WAIT)
        # 2 tokens at 20/s cannot be there before 0.1 s after the drain.
        assert time.monotonic() - before >= 2 / rate - 0.001

    def test_waiters_are_served_first_come_first_served(self, runtime):
        bucket = TokenBucket.start_link(rate=50.0, capacity=10.0)
        drain(bucket)
        pids = []
        for i, size in enumerate([6, 1, 3]):  # the 1-token waiter must not overtake the 6
            pid = spawn_acquirer(bucket, size, ("fifo", i))
            wait_until(lambda pid=pid: queued_in(bucket, pid))
            pids.append(pid)
        served = []
        for _ in pids:
            msg = assert_receive(lambda m: type(m) is tuple and type(m[0]) is tuple and m[0][0] == "fifo", WAIT)
            assert msg[1] == "ok"
            served.append((msg[2], msg[0][1]))
        assert [i for _, i in served] == [0, 1, 2]

    def test_a_timed_out_acquire_takes_nothing_and_a_later_waiter_is_served(self, runtime, rejects):
        rate = 10.0
        bucket = TokenBucket.start_link(rate=rate, capacity=10.0, name="b")
        before, after = drain(bucket)
        with pytest.raises(otpy.Timeout):
            TokenBucket.acquire(bucket, 5, timeout=0.1)
        start = time.monotonic()
        level = TokenBucket.available(bucket)
        end = time.monotonic()
        assert rate * (start - after) - EPS <= level <= rate * (end - before) + EPS
        assert rejects == [({"tokens": 5}, {"limiter": "b", "operation": "acquire"})]
        wait_until(lambda: not queued_in(bucket, otpy.self()))
        TokenBucket.acquire(bucket, 1, timeout=WAIT)  # not held back by the one that gave up

    def test_a_timed_out_head_no_longer_holds_back_the_queue(self, runtime):
        bucket = TokenBucket.start_link(rate=10.0, capacity=10.0)
        drain(bucket)
        head = spawn_acquirer(bucket, 10, "head", timeout=0.1, linger=True)  # 10 tokens: 1 s
        wait_until(lambda: queued_in(bucket, head))
        small = spawn_acquirer(bucket, 2, "small")
        wait_until(lambda: queued_in(bucket, small))
        msg = assert_receive(tagged("head"), WAIT)
        assert msg[1] == "error" and isinstance(msg[2], otpy.Timeout)
        start = time.monotonic()
        assert assert_receive(tagged("small"), WAIT)[1] == "ok"
        assert time.monotonic() - start < 0.6  # 0.2 s of refill left, not the head's 0.9 s
        assert not queued_in(bucket, head)
        otpy.send(head, "stop")

    def test_timeout_zero_does_not_wait(self, runtime):
        bucket = TokenBucket.start_link(rate=0.001, capacity=1.0)
        TokenBucket.acquire(bucket, timeout=0)
        with pytest.raises(otpy.Timeout):
            TokenBucket.acquire(bucket, timeout=0)

    def test_a_request_above_capacity_raises_value_error_at_the_call(self, runtime):
        bucket = TokenBucket.start_link(rate=1.0, capacity=2.0)
        with pytest.raises(ValueError, match="capacity"):
            TokenBucket.acquire(bucket, 2.5)

    def test_grants_racing_timeouts_never_take_tokens_silently(self, runtime):
        # Timeouts around the moment the tokens arrive make grant and timeout cross. The
        # bucket never fills (capacity is large), so its level is exactly rate * elapsed
        # minus what the successful acquires took: a grant lost to a timeout that still
        # took tokens would show as missing tokens.
        rate = 400.0
        bucket = TokenBucket.start_link(rate=rate, capacity=10_000.0)
        before, after = drain(bucket)
        rng = random.Random(8)
        taken = timeouts = 0
        for _ in range(150):
            try:
                TokenBucket.acquire(bucket, 1, timeout=rng.uniform(0.0, 2 / rate))
            except otpy.Timeout:
                timeouts += 1
            else:
                taken += 1
        start = time.monotonic()
        level = TokenBucket.available(bucket)
        end = time.monotonic()
        assert taken and timeouts
        assert rate * (start - after) - taken - 0.01 <= level
        assert level <= rate * (end - before) - taken + 0.01

    def test_a_dead_waiter_is_dropped_from_the_queue(self, runtime):
        bucket = TokenBucket.start_link(rate=10.0, capacity=10.0)
        drain(bucket)
        doomed = spawn_acquirer(bucket, 10, "doomed")
        wait_until(lambda: queued_in(bucket, doomed))
        start = time.monotonic()
        otpy.exit(doomed, "kill")
        TokenBucket.acquire(bucket, 1, timeout=WAIT)
        assert time.monotonic() - start < 0.6  # not behind the dead one's 10 tokens (1 s)
        assert not queued_in(bucket, doomed)

    def test_stopping_the_bucket_fails_its_waiters_with_exit_error(self, runtime):
        bucket = TokenBucket.start_link(rate=0.001, capacity=1.0)
        drain(bucket)
        waiter = spawn_acquirer(bucket, 1, "w")
        wait_until(lambda: queued_in(bucket, waiter))
        TokenBucket.stop(bucket)
        msg = assert_receive(tagged("w"), WAIT)
        assert msg[1] == "error" and isinstance(msg[2], otpy.ExitError)


class TestUpdate:
    def test_raising_the_rate_serves_a_waiter_sooner(self, runtime):
        bucket = TokenBucket.start_link(rate=1.0, capacity=10.0)
        drain(bucket)
        waiter = spawn_acquirer(bucket, 5, "w", timeout=2.0)  # 5 s at the old rate
        wait_until(lambda: queued_in(bucket, waiter))
        TokenBucket.update(bucket, rate=100.0)
        assert assert_receive(tagged("w"), WAIT)[1] == "ok"

    def test_lowering_the_capacity_clamps_the_tokens(self, runtime):
        bucket = TokenBucket.start_link(rate=0.001, capacity=10.0)
        TokenBucket.update(bucket, capacity=3.0)
        assert TokenBucket.available(bucket) == 3.0
        with pytest.raises(ValueError, match=r"capacity 3\.0"):
            TokenBucket.try_acquire(bucket, 4)
        TokenBucket.update(bucket, capacity=6.0)
        assert TokenBucket.available(bucket) <= 3.01  # refills towards it, not jumps

    def test_a_waiter_larger_than_the_new_capacity_gets_value_error(self, runtime):
        bucket = TokenBucket.start_link(rate=0.001, capacity=10.0)
        drain(bucket)
        waiter = spawn_acquirer(bucket, 8, "w")
        wait_until(lambda: queued_in(bucket, waiter))
        TokenBucket.update(bucket, capacity=4.0)
        msg = assert_receive(tagged("w"), WAIT)
        assert msg[1] == "error" and isinstance(msg[2], ValueError)

    def test_none_leaves_a_setting_unchanged(self, runtime):
        bucket = TokenBucket.start_link(rate=0.001, capacity=4.0)
        TokenBucket.update(bucket)
        TokenBucket.update(bucket, rate=0.002)
        assert TokenBucket.available(bucket) == 4.0

    @pytest.mark.parametrize("kwargs", [{"rate": 0}, {"rate": math.nan}, {"capacity": -1}])
    def test_bad_values_raise_value_error_and_change_nothing(self, runtime, kwargs):
        bucket = TokenBucket.start_link(rate=0.001, capacity=4.0)
        with pytest.raises(ValueError):
            TokenBucket.update(bucket, **kwargs)
        assert TokenBucket.available(bucket) == 4.0


class TestRateGuarantees:
    def test_a_clock_reading_that_a_newer_one_overtook_refills_nothing(self, monkeypatch):
        # try_acquire reads the clock before it takes the bucket's lock, so a thread may
        # come to the lock with a reading older than the last refill: it must neither
        # take tokens back nor move the refill point back (which would count a moment twice).
        from otpy import ratelimit

        clock = [100.0]

        class Clock:
            @staticmethod
            def monotonic():
                return clock[0]

        monkeypatch.setattr(ratelimit, "time", Clock)
        state = ratelimit._Bucket(None, "test", rate=10.0, capacity=10.0)
        state.tokens = 5.0
        clock[0] = 99.0  # older than the refill point
        assert state.take(1) is True
        assert (state.tokens, state.stamp) == (4.0, 100.0)
        clock[0] = 100.5  # half a second after the refill point: 5 tokens, once
        assert state.take(1) is True
        assert (state.tokens, state.stamp) == (8.0, 100.5)
        clock[0] = 100.2
        assert state.take(8) is True
        assert (state.tokens, state.stamp) == (0.0, 100.5)
        assert state.take(1) is False

    def test_hammering_threads_never_get_more_than_capacity_plus_rate_times_t(self, runtime):
        rate, capacity = 300.0, 20.0
        bucket = TokenBucket.start_link(rate=rate, capacity=capacity)
        counts = [0] * 5
        stop = threading.Event()

        def hammer(i):
            got = 0
            while not stop.is_set():
                if i == 4:  # one waits its turn, the others poll
                    TokenBucket.acquire(bucket, 1, timeout=WAIT)
                    got += 1
                elif TokenBucket.try_acquire(bucket, 1 + i % 2):
                    got += 1 + i % 2
            counts[i] = got

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(5)]
        start = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(1.0)  # noqa: SLEEP001 the length of the hammering is the behaviour
        stop.set()
        for t in threads:
            t.join(WAIT)
        elapsed = time.monotonic() - start
        granted = sum(counts)
        assert granted <= capacity + rate * elapsed + EPS
        assert counts[4] > 0

    def test_a_caller_that_keeps_asking_gets_at_least_95_percent_of_rate(self, runtime):
        rate = 100.0
        bucket = TokenBucket.start_link(rate=rate, capacity=10.0)
        drain(bucket)
        start = time.monotonic()
        granted = 0
        while time.monotonic() - start < 1.0:
            TokenBucket.acquire(bucket, 1, timeout=WAIT)
            granted += 1
        elapsed = time.monotonic() - start
        assert granted >= 0.95 * rate * elapsed - 1


# -- ConcurrencyLimiter ---------------------------------------------------------------------


def spawn_holder(limiter, tag, slots=1, timeout=WAIT):
    """A process that takes ``slots`` slots, reports ``(tag, "held")``, then waits for "release".

    It releases them when told "release" and reports ``(tag, "released")``; told "exit" it
    ends holding them.
    """
    me = otpy.self()

    def body():
        try:
            for _ in range(slots):
                ConcurrencyLimiter.acquire(limiter, timeout=timeout)
        except Exception as exc:  # reported to the test
            otpy.send(me, (tag, "error", exc))
            return
        otpy.send(me, (tag, "held"))
        if otpy.receive(match=lambda m: m in ("release", "exit")) == "release":
            for _ in range(slots):
                ConcurrencyLimiter.release(limiter)
            otpy.send(me, (tag, "released"))

    return otpy.spawn(body)


def status(limiter):
    s = ConcurrencyLimiter.status(limiter)
    return (s.active, s.waiting, s.limit)


class TestConcurrencyLimiterStart:
    def test_a_new_limiter_has_no_slots_taken_and_limit_defaults_to_10(self, runtime):
        limiter = ConcurrencyLimiter.start_link()
        assert ConcurrencyLimiter.status(limiter) == ConcurrencyLimiter.Status(0, 0, 10)

    @pytest.mark.parametrize("limit", [0, -3])
    def test_a_limit_below_1_raises_value_error(self, runtime, limit):
        with pytest.raises(ValueError, match="limit"):
            ConcurrencyLimiter.start_link(limit=limit)
        with pytest.raises(ValueError, match="limit"):
            ConcurrencyLimiter.child_spec(limit=limit)

    @pytest.mark.parametrize("limit", [2.0, "3", None, True])
    def test_a_limit_that_is_not_an_int_raises_type_error(self, runtime, limit):
        with pytest.raises(TypeError, match="limit"):
            ConcurrencyLimiter.start_link(limit=limit)

    def test_status_is_a_frozen_value(self, runtime):
        limiter = ConcurrencyLimiter.start_link(limit=3)
        s = ConcurrencyLimiter.status(limiter)
        assert (s.active, s.waiting, s.limit) == (0, 0, 3)
        assert "Status(active=0, waiting=0, limit=3)" in repr(s)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            s.active = 1

    def test_a_named_limiter_works_by_name_and_stops(self, runtime):
        limiter = ConcurrencyLimiter.start_link(limit=2, name="db")
        assert otpy.whereis("db") == limiter
        with ConcurrencyLimiter.slot("db"):
            assert status("db") == (1, 0, 2)
        ConcurrencyLimiter.stop("db")
        assert otpy.whereis("db") is None
        with pytest.raises(otpy.NoProcError):
            ConcurrencyLimiter.status("db")

    def test_child_spec_runs_in_a_supervisor(self, runtime):
        spec = ConcurrencyLimiter.child_spec(limit=2, name="db")
        assert spec.id == "db"
        assert ConcurrencyLimiter.child_spec(limit=2).id is ConcurrencyLimiter
        sup = otpy.Supervisor.start_link([spec, TokenBucket.child_spec(rate=1.0, name="b")])
        assert [c.id for c in otpy.Supervisor.which_children(sup)] == ["db", "b"]
        assert status("db") == (0, 0, 2)
        otpy.Supervisor.stop(sup)


class TestSlots:
    def test_acquire_and_release_count_slots_per_process(self, runtime):
        limiter = ConcurrencyLimiter.start_link(limit=3)
        ConcurrencyLimiter.acquire(limiter)
        ConcurrencyLimiter.acquire(limiter)
        assert status(limiter) == (2, 0, 3)
        ConcurrencyLimiter.release(limiter)
        assert status(limiter) == (1, 0, 3)
        ConcurrencyLimiter.release(limiter)
        assert status(limiter) == (0, 0, 3)
        with pytest.raises(ValueError, match="holds no slot"):
            ConcurrencyLimiter.release(limiter)

    def test_release_by_a_process_that_holds_no_slot_raises_value_error(self, runtime):
        limiter = ConcurrencyLimiter.start_link(limit=2)
        ConcurrencyLimiter.acquire(limiter)
        me = otpy.self()

        def stranger():
            try:
                ConcurrencyLimiter.release(limiter)
            except ValueError as exc:
                otpy.send(me, ("stranger", exc))

        otpy.spawn(stranger)
        assert isinstance(assert_receive(tagged("stranger"), WAIT)[1], ValueError)
        assert status(limiter) == (1, 0, 2)

    def test_slot_releases_on_exception(self, runtime):
        limiter = ConcurrencyLimiter.start_link(limit=1)
        with pytest.raises(KeyError), ConcurrencyLimiter.slot(limiter):
            assert status(limiter) == (1, 0, 1)
            raise KeyError("boom")
        assert status(limiter) == (0, 0, 1)

    def test_the_slots_of_a_holder_that_dies_are_released(self, runtime):
        limiter = ConcurrencyLimiter.start_link(limit=3)
        holder = spawn_holder(limiter, "h", slots=2)
        assert assert_receive(tagged("h"), WAIT) == ("h", "held")
        assert status(limiter) == (2, 0, 3)
        ref = otpy.monitor(holder)
        otpy.exit(holder, "kill")
        assert_receive(down_of(ref), WAIT)
        wait_until(lambda: status(limiter) == (0, 0, 3))

    def test_a_holder_that_ends_normally_without_releasing_gives_its_slot_back(self, runtime):
        limiter = ConcurrencyLimiter.start_link(limit=1)
        holder = spawn_holder(limiter, "h")
        assert assert_receive(tagged("h"), WAIT) == ("h", "held")
        otpy.send(holder, "exit")
        ConcurrencyLimiter.acquire(limiter, timeout=WAIT)
        assert status(limiter) == (1, 0, 1)

    def test_waiters_are_served_first_come_first_served(self, runtime):
        limiter = ConcurrencyLimiter.start_link(limit=1)
        ConcurrencyLimiter.acquire(limiter)
        holders = []
        for i in range(3):
            holders.append(spawn_holder(limiter, ("w", i)))
            wait_until(lambda i=i: status(limiter) == (1, i + 1, 1))
        ConcurrencyLimiter.release(limiter)
        order = []
        for _ in holders:
            msg = assert_receive(lambda m: type(m) is tuple and type(m[0]) is tuple and m[1] == "held", WAIT)
            order.append(msg[0][1])
            assert status(limiter)[0] == 1
            otpy.send(holders[msg[0][1]], "release")
            assert_receive(lambda m, tag=msg[0]: m == (tag, "released"), WAIT)
        assert order == [0, 1, 2]
        assert status(limiter) == (0, 0, 1)

    def test_a_timed_out_acquire_is_no_longer_counted_as_waiting(self, runtime):
        limiter = ConcurrencyLimiter.start_link(limit=1)
        ConcurrencyLimiter.acquire(limiter)
        with pytest.raises(otpy.Timeout):
            ConcurrencyLimiter.acquire(limiter, timeout=0.05)  # the caller stays alive
        assert status(limiter) == (1, 0, 1)
        wait_until(lambda: len(otpy.process_info(limiter).monitors) == 1)  # only the holder
        ConcurrencyLimiter.release(limiter)
        assert status(limiter) == (0, 0, 1)
        with pytest.raises(ValueError):  # the slot freed above went to nobody
            ConcurrencyLimiter.release(limiter)

    def test_a_timed_out_acquire_leaves_nothing_taken(self, runtime):
        limiter = ConcurrencyLimiter.start_link(limit=1)
        ConcurrencyLimiter.acquire(limiter)
        waiter = spawn_holder(limiter, "late", timeout=0.05)
        msg = assert_receive(tagged("late"), WAIT)
        assert msg[1] == "error" and isinstance(msg[2], otpy.Timeout)
        assert status(limiter) == (1, 0, 1)
        ConcurrencyLimiter.release(limiter)
        assert status(limiter) == (0, 0, 1)
        assert not queued_in(limiter, waiter)
        with ConcurrencyLimiter.slot(limiter, timeout=0):
            assert status(limiter) == (1, 0, 1)

    def test_timeout_zero_on_a_full_limiter_raises_timeout(self, runtime):
        limiter = ConcurrencyLimiter.start_link(limit=1)
        ConcurrencyLimiter.acquire(limiter)
        holder = spawn_holder(limiter, "z", timeout=0)
        assert isinstance(assert_receive(tagged("z"), WAIT)[2], otpy.Timeout)
        wait_until(lambda: not queued_in(limiter, holder))
        assert status(limiter) == (1, 0, 1)

    def test_a_dead_waiter_is_dropped_and_gets_no_slot(self, runtime):
        limiter = ConcurrencyLimiter.start_link(limit=1)
        ConcurrencyLimiter.acquire(limiter)
        doomed = spawn_holder(limiter, "doomed")
        wait_until(lambda: status(limiter) == (1, 1, 1))
        otpy.exit(doomed, "kill")
        wait_until(lambda: status(limiter) == (1, 0, 1))
        ConcurrencyLimiter.release(limiter)
        assert status(limiter) == (0, 0, 1)

    def test_racing_timeouts_never_leak_a_slot(self, runtime):
        limiter = ConcurrencyLimiter.start_link(limit=1)
        holder = spawn_holder(limiter, "h")
        assert assert_receive(tagged("h"), WAIT) == ("h", "held")
        rng = random.Random(4)
        me = otpy.self()

        def racer(timeout):
            try:
                ConcurrencyLimiter.acquire(limiter, timeout=timeout)
            except otpy.Timeout:
                otpy.send(me, ("race", False))
                return
            otpy.send(me, ("race", True))
            ConcurrencyLimiter.release(limiter)

        for _ in range(40):
            otpy.spawn(racer, rng.uniform(0.0, 0.004))
            otpy.sleep(0.002)  # noqa: SLEEP001 the release races the racer's timeout
            otpy.send(holder, "release")
            assert_receive(lambda m: m == ("h", "released"), WAIT)
            assert_receive(tagged("race"), WAIT)
            wait_until(lambda: status(limiter) == (0, 0, 1))
            holder = spawn_holder(limiter, "h")
            assert assert_receive(tagged("h"), WAIT) == ("h", "held")
        otpy.send(holder, "release")
        assert_receive(lambda m: m == ("h", "released"), WAIT)
        assert status(limiter) == (0, 0, 1)


class TestStress:
    def test_twenty_threads_never_exceed_the_limit_and_all_finish(self, runtime):
        limit = 4
        limiter = ConcurrencyLimiter.start_link(limit=limit)
        lock = threading.Lock()
        inside = peak = done = 0

        def worker():
            nonlocal inside, peak, done
            for _ in range(10):
                with ConcurrencyLimiter.slot(limiter, timeout=WAIT):
                    with lock:
                        inside += 1
                        peak = max(peak, inside)
                    time.sleep(0.0005)  # noqa: SLEEP001 work inside the slot, to overlap
                    with lock:
                        inside -= 1
            with lock:
                done += 1

        threads = [threading.Thread(target=worker) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT * 4)
        assert done == 20
        assert 1 <= peak <= limit
        assert status(limiter) == (0, 0, limit)
