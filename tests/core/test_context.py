"""contextvars propagation into processes, and otpy.callers()."""

from __future__ import annotations

import contextvars
import gc
import weakref

import pytest

import otpy
from otpy.testing import assert_receive
from tests.conftest import WAIT, down_of

pytestmark = pytest.mark.timeout(30)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def report(me):
    """A body that sends back the request id it sees, then changes it."""
    otpy.send(me, ("saw", request_id.get()))
    request_id.set("changed by the child")


def saw():
    return assert_receive(lambda m: type(m) is tuple and m[0] == "saw", WAIT)[1]


class TestSpawn:
    @pytest.mark.parametrize(
        "start",
        [
            lambda fn, me: otpy.spawn(fn, me),
            lambda fn, me: otpy.spawn_link(fn, me),
            lambda fn, me: otpy.spawn_monitor(fn, me),
            lambda fn, me: otpy.spawn_opt(fn, args=(me,), mailbox_limit=10),
        ],
        ids=["spawn", "spawn_link", "spawn_monitor", "spawn_opt"],
    )
    def test_a_process_runs_in_a_copy_of_the_spawners_context(self, runtime, start):
        token = request_id.set("r-1")
        try:
            start(report, otpy.self())
            assert saw() == "r-1"
            assert request_id.get() == "r-1"  # nothing leaks back
        finally:
            request_id.reset(token)

    def test_the_copy_is_made_at_spawn_not_when_the_process_runs(self, runtime):
        token = request_id.set("at spawn")
        me = otpy.self()
        pid = otpy.spawn(lambda: (otpy.receive(), report(me)))
        request_id.set("later")
        otpy.send(pid, "go")
        assert saw() == "at spawn"
        request_id.reset(token)

    def test_what_a_process_set_in_its_context_is_freed_when_it_ends(self, runtime):
        # The body's context ends with the body, even while its pid is still held.
        class Held:
            pass

        refs = []

        def body():
            held = Held()
            refs.append(weakref.ref(held))
            request_id.set(held)  # type: ignore[arg-type]

        pid, ref = otpy.spawn_monitor(body)
        assert assert_receive(down_of(ref), WAIT).reason == "normal"
        gc.collect()
        assert refs[0]() is None, f"{pid!r} ended but its context still holds what it set"

    def test_tasks_see_the_callers_context(self, runtime):
        token = request_id.set("task")
        try:
            assert otpy.Task.async_(request_id.get).await_(WAIT) == "task"
            me = otpy.self()
            otpy.Task.start(report, me)
            assert saw() == "task"
        finally:
            request_id.reset(token)


class Server(otpy.GenServer):
    def init(self):
        self.at_init = request_id.get()
        request_id.set(f"set in init ({self.at_init})")

    def handle_call(self, request, caller):
        match request:
            case "get":
                return request_id.get()
            case "at_init":
                return self.at_init
            case ("set", value):
                request_id.set(value)
                return "ok"

    def handle_cast(self, request):
        otpy.send(request, ("saw", request_id.get()))


class TestBehaviours:
    def test_init_sees_the_starters_context_and_handlers_see_what_init_set(self, runtime):
        token = request_id.set("starter")
        try:
            pid = Server.start()
            assert Server.call(pid, "at_init") == "starter"
            assert Server.call(pid, "get") == "set in init (starter)"
            assert request_id.get() == "starter"  # init's change stayed in the server
        finally:
            request_id.reset(token)

    def test_handlers_keep_the_servers_context_whoever_calls(self, runtime):
        pid = Server.start()
        token = request_id.set("the caller's")
        try:
            # timeout 5 s: the handler may run on this thread, yet in the server's context.
            assert Server.call(pid, "get", timeout=5.0) == "set in init (unset)"
            assert Server.call(pid, "get", timeout=0.5) == "set in init (unset)"
            otpy.GenServer.cast(pid, otpy.self())
            assert saw() == "set in init (unset)"
        finally:
            request_id.reset(token)

    def test_a_value_set_in_one_handler_is_seen_by_the_next(self, runtime):
        pid = Server.start()
        assert Server.call(pid, ("set", "v2")) == "ok"
        assert Server.call(pid, "get") == "v2"
        assert Server.call(pid, "get", timeout=0.5) == "v2"
        assert request_id.get() == "unset"

    def test_two_servers_have_separate_contexts(self, runtime):
        a, b = Server.start(), Server.start()
        Server.call(a, ("set", "a"))
        assert Server.call(b, "get") == "set in init (unset)"

    def test_agents_and_supervised_children_get_a_context(self, runtime):
        token = request_id.set("tree")
        try:
            agent = otpy.Agent.start_link(request_id.get)
            assert otpy.Agent.get(agent, lambda state: (state, request_id.get())) == ("tree", "tree")
            sup = otpy.Supervisor.start_link([Server.child_spec()])
            (child,) = otpy.Supervisor.which_children(sup)
            # The child was started by the supervisor, which runs in a copy of this context.
            assert Server.call(child.pid, "at_init") == "tree"
        finally:
            request_id.reset(token)


class TestCallers:
    def test_a_thread_has_no_callers(self, runtime):
        assert otpy.callers() == []

    def test_a_spawned_process_has_its_spawner(self, runtime):
        me = otpy.self()
        otpy.spawn(lambda: otpy.send(me, otpy.callers()))
        assert assert_receive(timeout=WAIT) == [me]

    def test_the_chain_is_nearest_first(self, runtime):
        me = otpy.self()

        def middle():
            inner = otpy.spawn(lambda: otpy.send(me, ("inner", otpy.callers())))
            otpy.send(me, ("middle", otpy.self(), inner))

        otpy.spawn(middle)
        _, mid, _ = assert_receive(lambda m: m[0] == "middle", WAIT)
        assert assert_receive(lambda m: m[0] == "inner", WAIT)[1] == [mid, me]

    def test_tasks_servers_and_supervised_children_record_their_starters(self, runtime):
        me = otpy.self()
        assert otpy.Task.async_(otpy.callers).await_(WAIT) == [me]

        class WhoStartedMe(otpy.GenServer):
            def init(self):
                self.callers = otpy.callers()

            def handle_call(self, request, caller):
                return self.callers

        assert WhoStartedMe.call(WhoStartedMe.start(), "?") == [me]
        sup = otpy.Supervisor.start_link([WhoStartedMe.child_spec()])
        (child,) = otpy.Supervisor.which_children(sup)
        assert WhoStartedMe.call(child.pid, "?") == [sup, me]

    def test_a_restarted_child_still_has_its_supervisor_first(self, runtime):
        me = otpy.self()

        class Crashy(otpy.GenServer):
            def init(self):
                otpy.send(me, ("started", otpy.callers()))

            def handle_call(self, request, caller):
                raise RuntimeError("crash")

        sup = otpy.Supervisor.start_link([Crashy.child_spec()])
        assert assert_receive(timeout=WAIT)[1] == [sup, me]
        (child,) = otpy.Supervisor.which_children(sup)
        ref = otpy.monitor(child.pid)
        with pytest.raises(otpy.ExitError):
            Crashy.call(child.pid, "boom")
        assert_receive(down_of(ref), WAIT)
        assert assert_receive(lambda m: m[0] == "started", WAIT)[1] == [sup, me]


def bump(item):
    """An async_stream function: sees the consumer's value, then changes it for itself only."""
    seen = request_id.get()
    request_id.set(f"changed by item {item}")
    return seen


class TestStreamsAndTaskSupervisors:
    def test_each_async_stream_item_runs_in_a_fresh_copy_of_the_consumers_context(self, runtime):
        token = request_id.set("consumer")
        try:
            results = list(otpy.Task.async_stream(range(50), bump, max_concurrency=2))
            assert results == [("ok", "consumer")] * 50
            assert request_id.get() == "consumer"
        finally:
            request_id.reset(token)

    def test_task_supervisor_tasks_run_in_the_clients_context(self, runtime):
        ts = otpy.TaskSupervisor.start_link()
        token = request_id.set("client")
        try:
            assert otpy.TaskSupervisor.async_(ts, request_id.get).await_(WAIT) == "client"
            assert otpy.TaskSupervisor.async_nolink(ts, request_id.get).await_(WAIT) == "client"
            me = otpy.self()
            otpy.TaskSupervisor.start_child(ts, report, me)
            assert saw() == "client"
            stream = otpy.TaskSupervisor.async_stream(ts, range(10), bump)
            assert list(stream) == [("ok", "client")] * 10
            stream = otpy.TaskSupervisor.async_stream_nolink(ts, range(10), bump)
            assert list(stream) == [("ok", "client")] * 10
        finally:
            request_id.reset(token)

    def test_task_supervisor_tasks_have_their_client_as_first_caller(self, runtime):
        ts = otpy.TaskSupervisor.start_link()
        me = otpy.self()
        assert otpy.TaskSupervisor.async_(ts, otpy.callers).await_(WAIT) == [me]
        otpy.TaskSupervisor.start_child(ts, lambda: otpy.send(me, ("saw", otpy.callers())))
        assert saw() == [me]


class Plain(otpy.GenServer):
    """A server whose init sets nothing: it runs in a thread's spare empty context."""

    def handle_call(self, request, caller):
        match request:
            case "get":
                return request_id.get()
            case ("set", value):
                request_id.set(value)
                return "ok"
            case ("set_and_reset", value):
                token = request_id.set(value)
                request_id.reset(token)
                return request_id.get()


class TestSpareContexts:
    def test_a_variable_one_server_sets_never_reaches_another_on_the_same_thread(self, runtime):
        a, b = Plain.start(), Plain.start()
        for timeout in (5.0, 0.5):  # inline on this thread, and through the pool
            assert Plain.call(b, "get", timeout=timeout) == "unset"
        assert Plain.call(a, ("set_and_reset", "gone"), timeout=5.0) == "unset"
        assert Plain.call(b, "get", timeout=5.0) == "unset"
        assert Plain.call(a, ("set", "a's"), timeout=5.0) == "ok"
        for timeout in (5.0, 0.5):
            assert Plain.call(b, "get", timeout=timeout) == "unset"
            assert Plain.call(a, "get", timeout=timeout) == "a's"
        assert request_id.get() == "unset"
