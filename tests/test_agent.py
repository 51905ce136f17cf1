"""Acceptance tests for the Agent section of API.md."""

from __future__ import annotations

import math
import threading
import time

import pytest
from conftest import WAIT, down_of, exit_from

import otpy
from otpy.testing import assert_receive

pytestmark = pytest.mark.timeout(30)


class TestStartLink:
    def test_start_link_runs_the_function_for_the_initial_state(self, runtime):
        agent = otpy.Agent.start_link(lambda: {"a": 1})
        assert isinstance(agent, otpy.Pid)
        assert otpy.is_alive(agent)
        assert otpy.Agent.get(agent, lambda state: state) == {"a": 1}

    def test_start_link_links_the_agent_to_the_caller(self, runtime):
        agent = otpy.Agent.start_link(lambda: 0)
        assert agent in otpy.process_info(otpy.self()).links

    def test_the_initial_function_runs_in_the_agent_process(self, runtime):
        agent = otpy.Agent.start_link(lambda: otpy.self())
        assert otpy.Agent.get(agent, lambda state: state) == agent

    def test_start_link_with_a_name_registers_the_agent(self, runtime):
        agent = otpy.Agent.start_link(lambda: [], name="bag")
        assert otpy.whereis("bag") == agent
        otpy.Agent.update("bag", lambda state: [*state, "x"])
        assert otpy.Agent.get("bag", len) == 1

    def test_a_taken_name_raises_already_started_error(self, runtime):
        first = otpy.Agent.start_link(lambda: 0, name="bag")
        with pytest.raises(otpy.AlreadyStartedError) as info:
            otpy.Agent.start_link(lambda: 1, name="bag")
        assert info.value.pid == first
        assert otpy.Agent.get("bag", lambda state: state) == 0

    def test_a_failing_initial_function_raises_start_error_with_the_exception(self, runtime):
        error = ValueError("cannot build state")

        def build():
            raise error

        with pytest.raises(otpy.StartError) as info:
            otpy.Agent.start_link(build)
        assert info.value.reason is error


class TestGet:
    def test_get_returns_the_function_of_the_state_and_keeps_the_state(self, runtime):
        agent = otpy.Agent.start_link(lambda: [3, 1, 2])
        assert otpy.Agent.get(agent, sorted) == [1, 2, 3]
        assert otpy.Agent.get(agent, lambda state: state) == [3, 1, 2]

    def test_get_timeout_raises_timeout_and_the_late_reply_never_arrives(self, runtime):
        agent = otpy.Agent.start_link(lambda: 0)

        def slow(state):
            time.sleep(0.3)  # noqa: SLEEP001 sleep is the behaviour (a slow function)
            return state

        start = time.monotonic()
        with pytest.raises(otpy.Timeout) as info:
            otpy.Agent.get(agent, slow, timeout=0.05)
        assert time.monotonic() - start < 0.25
        assert "0.05" in str(info.value)
        assert otpy.Agent.get(agent, lambda state: "after") == "after"
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0.1)

    @pytest.mark.parametrize(
        "bad, error", [(-1, ValueError), (math.nan, ValueError), ("1", TypeError)]
    )
    def test_get_rejects_a_bad_timeout(self, runtime, bad, error):
        agent = otpy.Agent.start_link(lambda: 0)
        with pytest.raises(error):
            otpy.Agent.get(agent, lambda state: state, timeout=bad)

    def test_get_from_a_dead_agent_raises_noproc_error(self, runtime):
        agent = otpy.Agent.start_link(lambda: 0)
        otpy.Agent.stop(agent)
        with pytest.raises(otpy.NoProcError):
            otpy.Agent.get(agent, lambda state: state)

    def test_a_crashing_function_crashes_the_agent_and_the_caller_gets_exit_error(
        self, runtime, trap
    ):
        agent = otpy.Agent.start_link(lambda: 0)
        error = ZeroDivisionError("bad fn")

        def bad(state):
            raise error

        with pytest.raises(otpy.ExitError) as info:
            otpy.Agent.get(agent, bad)
        assert info.value.reason is error
        assert assert_receive(exit_from(agent), WAIT) == otpy.Exit(agent, error)
        assert not otpy.is_alive(agent)


class TestUpdate:
    def test_update_replaces_the_state_with_the_function_result(self, runtime):
        agent = otpy.Agent.start_link(lambda: 1)
        otpy.Agent.update(agent, lambda state: state + 41)
        assert otpy.Agent.get(agent, lambda state: state) == 42

    def test_update_is_synchronous_and_atomic_under_concurrency(self, runtime):
        agent = otpy.Agent.start_link(lambda: 0)
        errors = []

        def bump():
            try:
                for _ in range(300):
                    otpy.Agent.update(agent, lambda state: state + 1)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=bump) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert errors == []
        assert otpy.Agent.get(agent, lambda state: state) == 1200

    def test_update_timeout_raises_timeout(self, runtime):
        agent = otpy.Agent.start_link(lambda: 0)

        def slow(state):
            time.sleep(0.3)  # noqa: SLEEP001 sleep is the behaviour (a slow function)
            return state + 1

        with pytest.raises(otpy.Timeout):
            otpy.Agent.update(agent, slow, timeout=0.05)
        assert otpy.Agent.get(agent, lambda state: state) == 1


class TestGetAndUpdate:
    def test_get_and_update_returns_the_reply_and_keeps_the_new_state(self, runtime):
        agent = otpy.Agent.start_link(lambda: [1, 2, 3])
        assert otpy.Agent.get_and_update(agent, lambda state: (state[0], state[1:])) == 1
        assert otpy.Agent.get(agent, lambda state: state) == [2, 3]

    def test_get_and_update_accepts_a_timeout(self, runtime):
        agent = otpy.Agent.start_link(lambda: 0)
        assert otpy.Agent.get_and_update(agent, lambda s: (s, s + 1), timeout=1.0) == 0
        assert otpy.Agent.get_and_update(agent, lambda s: (s, s + 1), timeout=None) == 1


class TestCast:
    def test_cast_updates_asynchronously_and_in_order(self, runtime):
        agent = otpy.Agent.start_link(lambda: [])
        for i in range(100):
            assert otpy.Agent.cast(agent, lambda state, i=i: [*state, i]) is None
        assert otpy.Agent.get(agent, lambda state: state) == list(range(100))

    def test_cast_to_a_dead_agent_does_not_raise(self, runtime):
        agent = otpy.Agent.start_link(lambda: 0)
        otpy.Agent.stop(agent)
        assert otpy.Agent.cast(agent, lambda state: state + 1) is None


class TestStop:
    def test_stop_ends_the_agent_normally(self, runtime):
        agent = otpy.Agent.start_link(lambda: 0, name="bag")
        ref = otpy.monitor(agent)
        otpy.Agent.stop(agent)
        assert not otpy.is_alive(agent)
        assert otpy.whereis("bag") is None
        assert assert_receive(down_of(ref), WAIT).reason == "normal"
        assert otpy.is_alive(otpy.self())

    def test_stop_with_a_reason(self, runtime, trap):
        agent = otpy.Agent.start_link(lambda: 0)
        ref = otpy.monitor(agent)
        otpy.Agent.stop(agent, reason="shutdown", timeout=WAIT)
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"
        assert assert_receive(exit_from(agent), WAIT).reason == "shutdown"

    def test_stop_by_name(self, runtime):
        agent = otpy.Agent.start_link(lambda: 0, name="bag")
        otpy.Agent.stop("bag")
        assert not otpy.is_alive(agent)

    def test_stop_of_a_dead_agent_raises_noproc_error(self, runtime):
        agent = otpy.Agent.start_link(lambda: 0)
        otpy.Agent.stop(agent)
        with pytest.raises(otpy.NoProcError):
            otpy.Agent.stop(agent)
