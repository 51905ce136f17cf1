"""The timer thread: deadlines in order, cancellation, failures that do not stop it."""

from __future__ import annotations

import logging
import threading

import pytest

from otpy._core._timers import TimerWheel

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def wheel():
    wheel = TimerWheel("test")
    yield wheel
    wheel.close()


def test_actions_run_in_deadline_order_not_in_scheduling_order(wheel):
    fired: list[int] = []
    done = threading.Event()
    wheel.schedule(0.06, lambda: (fired.append(3), done.set()))
    wheel.schedule(0.02, lambda: fired.append(1))
    wheel.schedule(0.04, lambda: fired.append(2))
    assert done.wait(5)
    assert fired == [1, 2, 3]


def test_cancel_returns_the_time_left_and_the_action_never_runs(wheel):
    fired = threading.Event()
    timer = wheel.schedule(10.0, fired.set)
    left = timer.cancel()
    assert left is not None and 9.0 < left <= 10.0
    assert timer.cancel() is None
    assert timer.read() is None
    assert not fired.is_set()


def test_a_timer_that_fired_cannot_be_cancelled(wheel):
    fired = threading.Event()
    timer = wheel.schedule(0.0, fired.set)
    assert fired.wait(5)
    assert timer.cancel() is None


def test_a_timer_dies_with_its_owner(wheel):
    class Owner:
        alive = True

    owner = Owner()
    timer = wheel.schedule(10.0, lambda: None, owner)
    assert timer.read() is not None
    owner.alive = False
    assert timer.read() is None
    assert timer.cancel() is None


def test_a_failing_action_is_logged_and_later_timers_still_fire(wheel, caplog):
    fired = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="otpy.timers"):
        wheel.schedule(0.0, boom)
        wheel.schedule(0.01, fired.set)
        assert fired.wait(5)
    assert any("boom" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_close_cancels_pending_timers_and_joins_the_thread():
    wheel = TimerWheel("closing")
    fired = threading.Event()
    timer = wheel.schedule(0.05, fired.set)
    wheel.close()
    assert timer.read() is None
    assert not any(t.name == "closing-timers" for t in threading.enumerate())
    assert wheel.schedule(0.0, fired.set).read() is None  # after close: never runs
    assert not fired.wait(0.1)


def test_a_deferred_action_runs_on_the_timer_thread_between_timers(wheel):
    ran: list[str] = []
    done = threading.Event()
    wheel.start()
    wheel.schedule(30, lambda: ran.append("never"))  # the thread sleeps towards this one
    wheel.defer(lambda: (ran.append(threading.current_thread().name), done.set()))
    assert done.wait(5), "a deferred action did not wake the sleeping timer thread"
    assert ran == ["test-timers"]


def test_a_deferred_action_waits_for_the_thread_to_start_and_never_runs_after_close():
    wheel = TimerWheel("test")
    ran = threading.Event()
    wheel.defer(ran.set)  # no thread yet: defer() starts none (a finaliser cannot)
    assert not ran.wait(0.05)
    wheel.start()
    assert ran.wait(5)
    wheel.close()
    late = threading.Event()
    wheel.defer(late.set)
    assert not late.wait(0.05)


def test_a_new_earliest_timer_wakes_the_thread_from_a_later_deadline(wheel):
    done = threading.Event()
    wheel.schedule(30, lambda: None)
    wheel.schedule(0.01, done.set)
    assert done.wait(5)


def test_a_timer_thread_that_cannot_start_is_started_by_the_next_timer(monkeypatch):
    wheel = TimerWheel("test")
    real_start = threading.Thread.start
    calls = []

    def failing_once(thread):
        calls.append(thread.name)
        if len(calls) == 1:
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", failing_once)
    with pytest.raises(RuntimeError):
        wheel.schedule(0.01, lambda: None)
    assert wheel._heap == [], "a timer whose thread could not start stays behind"
    done = threading.Event()
    wheel.schedule(0.01, done.set)
    assert done.wait(5)
    wheel.close()  # joins the thread that did start
