"""otpy.aio: awaitable calls, receives and task awaits; coroutine processes; no thread held."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

import otpy
import otpy.aio

pytestmark = pytest.mark.timeout(30)


class Echo(otpy.GenServer):
    def handle_call(self, request, caller):
        match request:
            case ("crash", _):
                raise RuntimeError("crash on purpose")
            case ("stop", reason):
                raise otpy.Stop(reason)
            case ("later", seconds):
                otpy.send_after(seconds, otpy.self(), ("answer", caller))
                return otpy.NOREPLY
            case "never":
                return otpy.NOREPLY
            case _:
                return request

    def handle_info(self, message):
        match message:
            case ("answer", caller):
                otpy.GenServer.reply(caller, "late")


class MailboxEcho(Echo):
    inline_calls = False


@pytest.fixture(params=[Echo, MailboxEcho], ids=["inline", "mailbox"])
def server(request, runtime):
    return request.param.start()


def run(coro_fn, *args):
    return asyncio.run(coro_fn(*args))


class TestCall:
    def test_it_returns_the_reply(self, server):
        async def main():
            return [await otpy.aio.call(server, i) for i in range(20)]

        assert run(main) == list(range(20))

    def test_a_reply_that_comes_later_wakes_the_caller(self, server):
        async def main():
            return await otpy.aio.call(server, ("later", 0.05))

        assert run(main) == "late"

    def test_a_server_that_crashes_raises_exit_error(self, server):
        async def main():
            with pytest.raises(otpy.ExitError) as info:
                await otpy.aio.call(server, ("crash", 1))
            return info.value.reason

        assert isinstance(run(main), RuntimeError)

    def test_a_dead_or_unknown_target_raises_noproc(self, server):
        async def main():
            with pytest.raises(otpy.NoProcError):
                await otpy.aio.call("nobody-by-that-name", 1)
            otpy.GenServer.stop(server)
            with pytest.raises(otpy.NoProcError):
                await otpy.aio.call(server, 1)

        run(main)

    def test_a_timeout_raises_and_a_late_reply_never_arrives(self, server):
        async def main():
            started = time.monotonic()
            with pytest.raises(otpy.Timeout):
                await otpy.aio.call(server, ("later", 0.2), timeout=0.05)
            assert time.monotonic() - started < 0.5
            await asyncio.sleep(0.3)
            with pytest.raises(otpy.Timeout):  # the late reply was dropped, not delivered
                await otpy.aio.receive(timeout=0)

        run(main)

    def test_a_server_that_stops_before_replying_raises_exit_error(self, server):
        async def main():
            with pytest.raises(otpy.ExitError) as info:
                await otpy.aio.call(server, ("stop", "bye"))
            return info.value.reason

        assert run(main) == "bye"

    def test_a_cancelled_call_leaves_nothing_behind(self, server):
        async def main():
            call = asyncio.ensure_future(otpy.aio.call(server, ("later", 0.1)))
            await asyncio.sleep(0.01)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await asyncio.sleep(0.2)
            with pytest.raises(otpy.Timeout):
                await otpy.aio.receive(timeout=0)
            return await otpy.aio.call(server, "still serving")

        assert run(main) == "still serving"

    def test_a_full_block_mailbox_raises_instead_of_blocking_the_loop(self, runtime):
        hold = threading.Event()

        class Busy(otpy.GenServer):
            mailbox_limit = 1
            on_full = "block"
            inline_calls = False

            def handle_cast(self, request):
                hold.wait(5)

            def handle_call(self, request, caller):
                return request

        pid = Busy.start()

        async def main():
            otpy.GenServer.cast(pid, "hold")
            while otpy.process_info(pid).status != "running":
                await asyncio.sleep(0.001)
            otpy.GenServer.cast(pid, "fills the mailbox")
            with pytest.raises(otpy.MailboxFullError):
                await otpy.aio.call(pid, "x")

        try:
            run(main)
        finally:
            hold.set()

    def test_outside_a_running_loop_it_raises_runtime_error(self, runtime):
        coro = otpy.aio.call(otpy.self(), 1)
        with pytest.raises(RuntimeError, match="needs a running asyncio event loop"):
            coro.send(None)

    def test_bad_timeouts_raise_before_anything_is_sent(self, server):
        async def main():
            with pytest.raises(ValueError):
                await otpy.aio.call(server, 1, timeout=-1)

        run(main)


class TestTaskProcesses:
    def test_each_task_has_a_process_of_its_own(self, runtime):
        async def who():
            first = otpy.self()
            await asyncio.sleep(0)
            assert otpy.self() == first
            return first

        async def main():
            return await asyncio.gather(who(), who(), who())

        pids = run(main)
        assert len(set(pids)) == 3
        assert otpy.self() not in pids

    def test_send_wakes_receive_and_match_selects(self, runtime):
        async def main():
            me = otpy.self()
            otpy.spawn(lambda: [otpy.send(me, i) for i in ("a", "b", "c")])
            b = await otpy.aio.receive(timeout=5, match=lambda m: m == "b")
            rest = [await otpy.aio.receive(timeout=5) for _ in range(2)]
            return b, rest

        assert run(main) == ("b", ["a", "c"])

    def test_receive_times_out(self, runtime):
        async def main():
            started = time.monotonic()
            with pytest.raises(otpy.Timeout):
                await otpy.aio.receive(timeout=0.05)
            return time.monotonic() - started

        assert 0.04 < run(main) < 1.0

    def test_waiting_never_blocks_the_loop(self, runtime):
        async def main():
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.005)

            task = asyncio.ensure_future(ticker())
            slow = MailboxEcho.start()
            with pytest.raises(otpy.Timeout):
                await otpy.aio.receive(timeout=0.1)
            await otpy.aio.call(slow, ("later", 0.1))
            task.cancel()
            return ticks

        assert run(main) >= 10

    def test_a_tasks_process_ends_normally_with_the_task(self, runtime):
        async def short():
            return otpy.self()

        async def main():
            pid = await asyncio.ensure_future(short())
            await asyncio.sleep(0)  # its done callback runs
            otpy.monitor(pid)
            return await otpy.aio.receive(timeout=5, match=lambda m: isinstance(m, otpy.Down))

        down = run(main)
        assert down.reason in ("normal", "noproc")

    def test_a_killed_task_process_raises_exit_error_then_gets_a_fresh_one(self, runtime):
        async def main():
            first = otpy.self()
            otpy.spawn_link(lambda: 1 / 0)
            with pytest.raises(otpy.ExitError) as info:
                await otpy.aio.receive(timeout=5)
            assert isinstance(info.value.reason, ZeroDivisionError)
            second = otpy.self()
            assert second != first and otpy.is_alive(second) and not otpy.is_alive(first)

        run(main)

    def test_links_and_monitors_work_from_a_task(self, runtime):
        async def main():
            otpy.trap_exits(True)
            pid = otpy.spawn_link(lambda: otpy.receive())
            ref = otpy.monitor(pid)
            otpy.exit(pid, "bye")
            exit_ = await otpy.aio.receive(timeout=5, match=lambda m: isinstance(m, otpy.Exit))
            down = await otpy.aio.receive(timeout=5, match=lambda m: isinstance(m, otpy.Down))
            return exit_.reason, down.ref == ref, down.reason

        assert run(main) == ("bye", True, "bye")


class TestSpawn:
    def test_a_coroutine_process_receives_and_ends_normally(self, runtime):
        async def echo(parent):
            msg = await otpy.aio.receive(timeout=5)
            otpy.send(parent, ("echo", otpy.self(), msg))

        async def main():
            pid = otpy.aio.spawn(echo, otpy.self())
            ref = otpy.monitor(pid)
            otpy.send(pid, "hello")
            reply = await otpy.aio.receive(timeout=5, match=lambda m: type(m) is tuple)
            down = await otpy.aio.receive(timeout=5, match=lambda m: isinstance(m, otpy.Down))
            return pid, reply, down.ref == ref, down.reason

        pid, reply, same, reason = run(main)
        assert reply == ("echo", pid, "hello") and same and reason == "normal"

    def test_the_coroutines_exception_is_its_exit_reason(self, runtime):
        async def boom():
            await asyncio.sleep(0)
            raise KeyError("boom")

        async def main():
            pid = otpy.aio.spawn(boom)
            otpy.monitor(pid)
            return await otpy.aio.receive(timeout=5, match=lambda m: isinstance(m, otpy.Down))

        assert isinstance(run(main).reason, KeyError)

    def test_killing_the_process_cancels_the_task(self, runtime):
        cancelled = []

        async def forever():
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        async def main():
            pid = otpy.aio.spawn(forever)
            await asyncio.sleep(0.01)
            ref = otpy.monitor(pid)
            otpy.exit(pid, "kill")
            down = await otpy.aio.receive(timeout=5, match=lambda m: isinstance(m, otpy.Down))
            for _ in range(100):
                if cancelled:
                    break
                await asyncio.sleep(0.01)
            return down.ref == ref, down.reason

        assert run(main) == (True, "killed")
        assert cancelled == [True]

    def test_a_task_cancelled_by_someone_else_ends_with_shutdown_cancelled(self, runtime):
        async def forever():
            await asyncio.sleep(60)

        async def main():
            pid = otpy.aio.spawn(forever)
            otpy.monitor(pid)
            await asyncio.sleep(0.01)
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            return await otpy.aio.receive(timeout=5, match=lambda m: isinstance(m, otpy.Down))

        assert run(main).reason == ("shutdown", "cancelled")

    def test_it_sees_the_callers_context_and_callers(self, runtime):
        var = contextvars.ContextVar("var", default="unset")

        async def child(parent):
            otpy.send(parent, (var.get(), otpy.callers()))

        async def main():
            var.set("from the caller")
            otpy.aio.spawn(child, otpy.self())
            return otpy.self(), await otpy.aio.receive(timeout=5)

        me, (seen, callers) = run(main)
        assert seen == "from the caller" and callers == [me]

    def test_it_needs_a_coroutine_function_and_a_loop(self, runtime):
        def plain():
            return 1

        async def main():
            with pytest.raises(TypeError, match="needs a coroutine function"):
                otpy.aio.spawn(plain)

        run(main)

        async def coro():
            pass

        with pytest.raises(RuntimeError, match="running asyncio event loop"):
            otpy.aio.spawn(coro)

    def test_runtime_shutdown_cancels_coroutine_processes(self):
        cancelled = threading.Event()

        async def forever():
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async def main():
            rt = otpy.Runtime()
            with rt:
                otpy.aio.spawn(forever)
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            return rt.processes()

        assert asyncio.run(main()) == []
        assert cancelled.is_set()


class TestAwait:
    def test_it_returns_the_tasks_value(self, runtime):
        async def main():
            task = otpy.Task.async_(lambda: 6 * 7)
            return await otpy.aio.await_(task, timeout=5)

        assert run(main) == 42

    def test_a_crashed_task_raises_exit_error(self, runtime):
        async def main():
            otpy.trap_exits(True)  # the link's Exit becomes a message instead of killing us
            task = otpy.Task.async_(lambda: 1 / 0)
            with pytest.raises(otpy.ExitError) as info:
                await otpy.aio.await_(task, timeout=5)
            return info.value.reason

        assert isinstance(run(main), ZeroDivisionError)

    def test_a_slow_task_times_out(self, runtime):
        async def main():
            task = otpy.Task.async_(otpy.sleep, 1.0)
            with pytest.raises(otpy.Timeout):
                await otpy.aio.await_(task, timeout=0.05)
            task.shutdown(otpy.BRUTAL_KILL)

        run(main)

    def test_it_takes_a_task(self, runtime):
        async def main():
            with pytest.raises(TypeError, match=r"takes an otpy\.Task"):
                await otpy.aio.await_(otpy.self())

        run(main)


class TestNoThreadHeld:
    def test_thousands_of_waiting_calls_hold_no_threads(self, runtime):
        servers = [Echo.start() for _ in range(20)]

        async def main():
            calls = [otpy.aio.call(servers[i % 20], ("later", 0.05)) for i in range(2_000)]
            started = time.monotonic()
            results = await asyncio.gather(*calls)
            took = time.monotonic() - started
            return threading.active_count(), results, took

        after, results, took = run(main)
        assert results == ["late"] * 2_000
        # 2,000 calls wait at once; the threads are the pool's usual few (and the timer's).
        assert after <= 16, f"{after} threads: waiting calls must not hold threads"
        assert took < 5.0
