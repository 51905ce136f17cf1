"""otpy's pytest plugin run in pytest sessions of its own (pytester): what only teardown shows.

The plugin's fixtures are also used directly by the whole suite (``runtime``
is ``otpy_runtime``) and by test_testing_fixtures.py; here are the behaviours
that need a session of their own: a test that errors at teardown, the order
of teardowns, a failure's report, and turning the plugin off.
"""

from __future__ import annotations

import inspect
import os
import textwrap

import conftest
import pytest

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.timeout(120)


# The inner sessions load the plugin as the suite does (tests/conftest.py): once,
# whether or not the otpy entry point is installed.
LOADER = "import pytest\n\n\n" + inspect.getsource(conftest.pytest_configure)


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makeconftest(LOADER)
    pytester.makepyfile(textwrap.dedent(source))
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)


class TestOtpyRuntime:
    def test_each_test_gets_a_fresh_runtime_entered_and_shut_down_after_it(
        self, runtime, pytester
    ):
        result = run(
            pytester,
            """
            import otpy

            seen = []

            def test_first(otpy_runtime):
                assert otpy.Runtime.current() is otpy_runtime
                assert not otpy_runtime.closed
                assert otpy.self().runtime_id == otpy_runtime.id
                seen.append(otpy_runtime)

            def test_second(otpy_runtime):
                assert otpy_runtime is not seen[0]
                assert seen[0].closed
                assert otpy.Runtime.current() is otpy_runtime
            """,
        )
        result.assert_outcomes(passed=2)

    def test_a_pool_thread_still_running_after_the_shutdown_errors_the_test(
        self, runtime, pytester, monkeypatch
    ):
        # A real stuck worker would make the shutdown wait its 5 s join first;
        # a thread with a worker's name is the same to the check (that the
        # workers have such names is tested in test_testing_fixtures.py).
        monkeypatch.setenv("OTPY_TEST_TIMEFACTOR", "0.05")
        result = run(
            pytester,
            """
            import threading
            import pytest

            @pytest.fixture
            def release():
                done = threading.Event()
                yield done
                done.set()   # after otpy_runtime's teardown, which was set up later

            def test_leaks(release, otpy_runtime):
                name = f"otpy-{otpy_runtime.id}-worker-99"
                threading.Thread(target=release.wait, name=name, daemon=True).start()
            """,
        )
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(
            [
                "*ERROR at teardown of test_leaks*",
                "*otpy_runtime: threads of <otpy.Runtime * still running 0.25s after its "
                "shutdown: ?'otpy-*-worker-99'?; the code of a process that was stopped is stuck*",
            ]
        )

    def test_a_process_alive_after_the_shutdown_errors_the_test(self, runtime, pytester):
        result = run(
            pytester,
            """
            import otpy

            def test_survivor(monkeypatch, otpy_runtime):
                ghost = otpy.self()
                monkeypatch.setattr(otpy.Runtime, "processes", lambda rt: [ghost])
            """,
        )
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(
            ["otpy_runtime: processes of <otpy.Runtime * still alive after its shutdown: ?<*>?*"]
        )

    def test_processes_the_test_left_running_are_shut_down_without_error(
        self, runtime, pytester
    ):
        result = run(
            pytester,
            """
            import otpy

            class Server(otpy.GenServer):
                pass

            def test_leaves_things_running(otpy_runtime):
                otpy.spawn(otpy.receive)
                Server.start_link()
                otpy.Supervisor.start([Server.child_spec()])
            """,
        )
        result.assert_outcomes(passed=1)


class TestStartSupervised:
    def test_children_stop_in_reverse_order_before_the_runtime_shuts_down(
        self, runtime, pytester
    ):
        result = run(
            pytester,
            """
            import threading
            import otpy
            import pytest

            stopped = []
            lock = threading.Lock()

            class Child(otpy.GenServer):
                def init(self, name):
                    otpy.trap_exits(True)
                    self.name = name

                def terminate(self, reason):
                    with lock:
                        stopped.append((self.name, reason))

            @pytest.fixture
            def after_children(otpy_runtime):
                yield
                # start_supervised's teardown ran; the runtime's has not
                assert stopped == [("c", "shutdown"), ("b", "shutdown"), ("a", "shutdown")]
                assert not otpy_runtime.closed
                stopped.append("checked")

            def test_three(after_children, start_supervised):
                for name in "abc":
                    start_supervised(Child.child_spec(name, id=name))

            def test_the_check_ran():
                assert stopped[-1] == "checked"
            """,
        )
        result.assert_outcomes(passed=2)

    def test_a_supervisor_that_died_during_the_test_is_not_an_error(self, runtime, pytester):
        result = run(
            pytester,
            """
            import otpy

            class Child(otpy.GenServer):
                pass

            def test_kills_it(start_supervised):
                pid = start_supervised(Child)
                [sup] = [p for p in otpy.processes() if otpy.process_info(p).behaviour == "Supervisor"]
                ref = otpy.monitor(sup)
                otpy.exit(sup, "kill")
                otpy.receive(match=lambda m: isinstance(m, otpy.Down) and m.ref == ref)
                assert not otpy.is_alive(pid)
            """,
        )
        result.assert_outcomes(passed=1)

    def test_the_test_process_killed_by_a_link_does_not_break_the_teardown(
        self, runtime, pytester
    ):
        result = run(
            pytester,
            """
            import otpy

            class Child(otpy.GenServer):
                pass

            def test_dies(start_supervised):
                start_supervised(Child)
                me = otpy.self()
                otpy.spawn(otpy.exit, me, "kill")
                while otpy.is_alive(me):   # the test's process dies, the thread goes on
                    pass
            """,
        )
        result.assert_outcomes(passed=1)


class TestCaptureTelemetry:
    def test_handlers_are_detached_at_teardown(self, runtime, pytester):
        result = run(
            pytester,
            """
            from otpy import telemetry

            def test_captures(capture_telemetry):
                capture_telemetry(("otpy", "supervisor"))
                capture_telemetry(("myapp", "job"))
                ids = {h.id for h in telemetry.list_handlers()}
                assert len([i for i in ids if "capture_telemetry" in str(i)]) == 2

            def test_nothing_left():
                assert not [h for h in telemetry.list_handlers() if "capture_telemetry" in str(h.id)]
            """,
        )
        result.assert_outcomes(passed=2)


class TestFailureReports:
    def test_a_failed_assert_receive_shows_the_pattern_and_the_mailbox(self, runtime, pytester):
        result = run(
            pytester,
            """
            import otpy
            from otpy.testing import ANY, assert_receive

            def test_waits_in_vain(otpy_runtime):
                otpy.send(otpy.self(), ("hello", 1))
                otpy.send(otpy.self(), "x" * 1000)
                assert_receive(("ready", ANY), timeout=0.05)
            """,
        )
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "E *AssertionError: assert_receive: no message matching ('ready', ANY) "
                "arrived within 0.05s.",
                "E *The mailbox held 2 other message(s), oldest first:",
                "E *('hello', 1)",
                "E *'xxxx*x...",
            ]
        )

    def test_a_failed_refute_receive_shows_the_message(self, runtime, pytester):
        result = run(
            pytester,
            """
            import otpy
            from otpy.testing import refute_receive

            def test_gets_one(otpy_runtime):
                otpy.send(otpy.self(), ("error", "disk full"))
                refute_receive(("error", "disk full"))
            """,
        )
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "E *AssertionError: refute_receive: a message matching ('error', 'disk full') "
                "arrived after *s (watching for 0.1s):",
                "E *('error', 'disk full')",
                "E *No other message was in the mailbox.",
            ]
        )


def fake_entry_point(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install, for subprocesses, a distribution whose only content is the ``otpy`` entry point.

    It is what ``[options.entry_points] pytest11 = otpy = otpy.testing.plugin``
    in setup.cfg gives an installed otpy, without reinstalling otpy.
    """
    site = pytester.mkdir("site")
    dist = site / "otpy_plugin_probe-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: otpy-plugin-probe\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\notpy = otpy.testing.plugin\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))


class TestEntryPoint:
    def test_pytest_loads_the_plugin_by_its_entry_point_and_no_otpy_turns_it_off(
        self, runtime, pytester, monkeypatch
    ):
        fake_entry_point(pytester, monkeypatch)
        pytester.makepyfile("def test_it(otpy_runtime, start_supervised, capture_telemetry): pass")
        on = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
        on.assert_outcomes(passed=1)
        off = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:otpy", timeout=60)
        off.assert_outcomes(errors=1)
        off.stdout.fnmatch_lines(["*fixture 'otpy_runtime' not found*"])

    def test_the_suites_conftest_loads_the_plugin_once_with_or_without_the_entry_point(
        self, runtime, pytester, monkeypatch
    ):
        pytester.makeconftest(LOADER)
        pytester.makepyfile(
            """
            def test_it(otpy_runtime, request):
                plugins = request.config.pluginmanager
                loaded = [p for p in plugins.get_plugins() if getattr(p, "__name__", "") == "otpy.testing.plugin"]
                assert len(loaded) == 1
            """
        )
        pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60).assert_outcomes(passed=1)
        fake_entry_point(pytester, monkeypatch)
        pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60).assert_outcomes(passed=1)
