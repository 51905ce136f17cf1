"""Acceptance tests for the Runtime section of API.md.

The ``runtime`` fixture already opens a Runtime for each test; tests that need
a runtime of their own open it inside, before the test thread calls otpy in
the fixture's runtime (a thread that is already a process belongs to that
process's runtime).
"""

from __future__ import annotations

import queue
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import WAIT, idle, in_thread

import otpy
from otpy.testing import assert_receive

pytestmark = pytest.mark.timeout(30)


class Recorder(otpy.GenServer):
    """Traps exits and puts the reason of its terminate into a queue.Queue."""

    def init(self, reasons):
        otpy.trap_exits(True)
        self.reasons = reasons

    def terminate(self, reason):
        self.reasons.put(reason)


class TestCurrent:
    def test_current_of_a_thread_that_is_not_a_process_is_the_innermost_open_runtime(self, runtime):
        assert otpy.Runtime.current() is runtime
        with otpy.Runtime() as inner:
            assert otpy.Runtime.current() is inner
            assert in_thread(otpy.Runtime.current) is inner
        assert otpy.Runtime.current() is runtime

    def test_current_of_a_process_is_its_own_runtime(self, runtime):
        seen: queue.Queue = queue.Queue()
        with otpy.Runtime() as inner:
            otpy.spawn(lambda: seen.put(otpy.Runtime.current()))
            assert seen.get(timeout=WAIT) is inner

    def test_runtime_is_a_context_manager_returning_itself(self, runtime):
        rt = otpy.Runtime()
        with rt as entered:
            assert entered is rt


class TestShutdown:
    def test_leaving_the_with_block_ends_every_process(self, runtime):
        with otpy.Runtime() as inner:
            pids = [otpy.spawn(idle) for _ in range(20)]
            assert all(otpy.is_alive(pid) for pid in pids)
            assert set(pids) <= set(inner.processes())
        assert inner.processes() == []
        assert not any(otpy.is_alive(pid) for pid in pids)

    def test_shutdown_twice_is_harmless(self, runtime):
        rt = otpy.Runtime()
        with rt:
            pid = otpy.spawn(idle)
            rt.shutdown()
            rt.shutdown(timeout=1.0)
            assert rt.processes() == []
        rt.shutdown()
        assert not otpy.is_alive(pid)

    def test_shutdown_sends_shutdown_so_a_trapping_genserver_runs_terminate(self, runtime):
        reasons: queue.Queue = queue.Queue()
        with otpy.Runtime():
            Recorder.start(reasons)
        assert reasons.get(timeout=WAIT) == "shutdown"

    def test_shutdown_reaches_a_genserver_started_by_the_test_thread_with_a_link(self, runtime):
        reasons: queue.Queue = queue.Queue()
        with otpy.Runtime():
            Recorder.start_link(reasons)
        assert reasons.get(timeout=WAIT) == "shutdown"

    def test_shutdown_kills_what_is_still_alive_after_the_timeout(self, runtime):
        ready = threading.Event()

        def stubborn():
            otpy.trap_exits(True)
            ready.set()
            while True:
                otpy.receive()

        rt = otpy.Runtime()
        with rt:
            otpy.spawn(stubborn)
            assert ready.wait(WAIT)
            start = time.monotonic()
            rt.shutdown(timeout=0.2)
            elapsed = time.monotonic() - start
        assert 0.15 <= elapsed < 3.0
        assert rt.processes() == []

    def test_shutdown_ends_a_process_busy_in_a_pure_python_loop(self, runtime):
        spinning = threading.Event()

        def spin():
            spinning.set()
            while True:
                pass

        rt = otpy.Runtime()
        with rt:
            pid = otpy.spawn(spin)
            assert spinning.wait(WAIT)
            start = time.monotonic()
            rt.shutdown(timeout=0.2)
            assert time.monotonic() - start < 3.0
        assert rt.processes() == []
        assert not otpy.is_alive(pid)

    def test_shutdown_wakes_a_plain_thread_blocked_in_receive_with_exit_error(self, runtime):
        waiting = threading.Event()
        outcome: queue.Queue = queue.Queue()

        def body():
            otpy.self()
            waiting.set()
            try:
                otpy.receive(timeout=20)
            except otpy.ExitError as exc:
                outcome.put(("exit", exc.reason))
            except BaseException as exc:
                outcome.put(("other", exc))
            else:
                outcome.put(("received", None))

        with otpy.Runtime():
            thread = threading.Thread(target=body)
            thread.start()
            assert waiting.wait(WAIT)
        assert outcome.get(timeout=WAIT) == ("exit", "shutdown")
        thread.join(WAIT)

    def test_runtimes_shut_down_cleanly_while_processes_are_still_spawning(self, runtime):
        def fan(depth):
            if depth:
                otpy.spawn(fan, depth - 1)
                otpy.spawn(fan, depth - 1)

        for _ in range(100):
            rt = otpy.Runtime()
            with rt:
                otpy.spawn(fan, 6)
            assert rt.processes() == []

    def test_shutdown_rejects_a_bad_timeout(self, runtime):
        rt = otpy.Runtime()
        with rt:
            with pytest.raises(ValueError):
                rt.shutdown(timeout=-1)
            with pytest.raises(TypeError):
                rt.shutdown(timeout="soon")


class TestIsolation:
    def test_each_runtime_has_its_own_names(self, runtime):
        mine = otpy.spawn(idle)
        otpy.register("service", mine)

        def register_elsewhere():
            other = otpy.spawn(idle)
            otpy.register("service", other)
            return other, otpy.whereis("service"), otpy.Runtime.current()

        with otpy.Runtime() as inner:
            other, found, current = in_thread(register_elsewhere)
        assert current is inner
        assert found == other
        assert other != mine
        assert otpy.whereis("service") == mine
        otpy.send(mine, "stop")


class TestThreads:
    def test_max_threads_bounds_how_many_processes_run_code_at_once(self, runtime):
        lock = threading.Lock()
        running = 0
        peak = 0

        def busy(parent):
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.05)  # noqa: SLEEP001 sleep is the behaviour (blocking otpy cannot see holds a thread)
            with lock:
                running -= 1
            otpy.send(parent, "done")

        with otpy.Runtime(max_threads=2):
            me = otpy.self()
            for _ in range(6):
                otpy.spawn(busy, me)
            for _ in range(6):
                assert assert_receive(lambda m: m == "done", WAIT) == "done"
        assert peak <= 2

    def test_processes_blocked_in_receive_do_not_starve_a_one_thread_pool(self, runtime):
        with otpy.Runtime(max_threads=1):
            me = otpy.self()

            def waiter(i):
                otpy.send(me, ("ready", i, otpy.self()))
                msg = otpy.receive()
                otpy.send(me, ("got", i, msg))

            for i in range(20):
                otpy.spawn(waiter, i)
            pids = [assert_receive(lambda m: type(m) is tuple and m[0] == "ready", WAIT)[2] for _ in range(20)]
            for pid in pids:
                otpy.send(pid, "wake")
            got = [assert_receive(lambda m: type(m) is tuple and m[0] == "got", WAIT) for _ in range(20)]
        assert sorted(i for _, i, _ in got) == list(range(20))

    def test_a_chain_of_calls_deeper_than_the_pool_completes(self, runtime):
        class Hop(otpy.GenServer):
            def init(self, nxt):
                self.nxt = nxt

            def handle_call(self, request, caller):
                if self.nxt is None:
                    return 1
                return otpy.GenServer.call(self.nxt, request) + 1

        with otpy.Runtime(max_threads=1):
            head = None
            for _ in range(50):
                head = Hop.start(head)
            assert otpy.GenServer.call(head, "count", timeout=20) == 50

    def test_tasks_blocked_in_receive_do_not_starve_a_one_thread_pool(self, runtime):
        with otpy.Runtime(max_threads=1):
            me = otpy.self()

            def wait_for_go(i):
                otpy.send(me, ("ready", otpy.self()))
                otpy.receive(match=lambda m: m == "go")
                return i

            tasks = [otpy.Task.async_(wait_for_go, i) for i in range(30)]
            for _ in range(30):
                otpy.send(assert_receive(lambda m: type(m) is tuple and m[0] == "ready", WAIT)[1], "go")
            assert otpy.Task.await_many(tasks, timeout=10) == list(range(30))

    def test_a_handler_waiting_on_a_stream_of_tasks_does_not_starve_a_one_thread_pool(
        self, runtime
    ):
        class Fanout(otpy.GenServer):
            def handle_call(self, items, caller):
                def work(x):
                    otpy.sleep(0.01)
                    return x * x

                return [v for _, v in otpy.Task.async_stream(items, work, max_concurrency=4)]

        with otpy.Runtime(max_threads=1):
            pid = Fanout.start()
            assert otpy.GenServer.call(pid, list(range(12)), timeout=10) == [
                x * x for x in range(12)
            ]

    @pytest.mark.parametrize("bad, error", [(0, ValueError), (-3, ValueError), ("4", TypeError)])
    def test_max_threads_must_be_a_positive_int(self, runtime, bad, error):
        with pytest.raises(error):
            otpy.Runtime(max_threads=bad)


class TestDefaultRuntime:
    def test_a_plain_script_can_spawn_without_opening_a_runtime(self, runtime):
        script = textwrap.dedent(
            """
            import otpy
            me = otpy.self()
            otpy.spawn(lambda: otpy.send(me, "hello from a process"))
            print(otpy.receive(timeout=5))
            print(otpy.Runtime.current() is otpy.Runtime.current())
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=20
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["hello from a process", "True"]
