"""otpy.run and `python -m otpy run`: real subprocesses, real signals, exit statuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import otpy
from otpy._run import load_children

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent

SERVICE = '''
import sys, time
import otpy

def say(*words):
    print(*words, flush=True)

class Worker(otpy.GenServer):
    def init(self, label, stop_for=0.0):
        otpy.trap_exits(True)
        self.label = label
        self.stop_for = stop_for
        say("up", label)

    def handle_call(self, request, caller):
        if request == "crash":
            raise RuntimeError("crash on purpose")
        return self.label

    def terminate(self, reason):
        time.sleep(self.stop_for)  # noqa: SLEEP001 a slow drain is the behaviour under test
        say("terminated", self.label, reason)

class Announce(otpy.GenServer):
    def init(self):
        say("ready")

class Crashy(otpy.GenServer):
    def init(self):
        otpy.send_after(0.05, otpy.self(), "die")
    def handle_info(self, message):
        raise RuntimeError("keeps crashing")

def children():
    return [Worker.child_spec("db", id="db"),
            Worker.child_spec("web", id="web"),
            Announce]

slow = [Worker.child_spec("slow", 3.0, id="slow", shutdown=10.0), Announce]
crashing = [Crashy]
'''


@pytest.fixture
def service(tmp_path):
    (tmp_path / "svc.py").write_text(textwrap.dedent(SERVICE))
    return tmp_path


def start(service: Path, target: str, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(service), str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "otpy", "run", target, *extra],
        cwd=service,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], wanted: str, timeout: float = 20.0) -> list[str]:
    """Read stdout lines until ``wanted``; the lines read."""
    lines: list[str] = []
    found = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.strip() == wanted:
                found.set()
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert found.wait(timeout), f"no {wanted!r} line; got {lines}"
    return lines


def finish(proc: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


class TestSignals:
    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
    def test_a_signal_shuts_the_tree_down_in_reverse_order_and_exits_0(self, service, sig):
        proc = start(service, "svc:children", "--shutdown", "10")
        wait_for_line(proc, "ready")
        proc.send_signal(sig)
        status, out, err = finish(proc)
        assert status == 0, err
        lines = out.splitlines()
        assert lines == ["terminated web shutdown", "terminated db shutdown"]
        assert f"received {sig.name}: shutting down" in err
        assert "stopped the root supervisor" in err

    def test_a_shutdown_that_overruns_is_killed_and_exits_2(self, service):
        proc = start(service, "svc:slow", "--shutdown", "0.5")
        wait_for_line(proc, "ready")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        status, out, err = finish(proc)
        assert status == 2, err
        assert time.monotonic() - started < 2.5, "the overall bound beats the child's 10 s"
        assert "terminated slow" not in out
        assert "took longer than 0.5s" in err

    def test_a_second_signal_kills_at_once_and_exits_2(self, service):
        proc = start(service, "svc:slow", "--shutdown", "20")
        wait_for_line(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # noqa: SLEEP001 the first signal's shutdown must be under way
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        status, _, err = finish(proc)
        assert status == 2, err
        assert time.monotonic() - started < 2.0
        assert "received SIGTERM again" in err

    def test_only_the_chosen_signals_are_handled(self, service):
        proc = start(service, "svc:children", "--signals", "SIGHUP")
        wait_for_line(proc, "ready")
        proc.send_signal(signal.SIGHUP)
        status, _, err = finish(proc)
        assert status == 0, err
        assert "received SIGHUP" in err


class TestRootExit:
    def test_a_root_that_gives_up_exits_1(self, service):
        proc = start(service, "svc:crashing", "--max-restarts", "1", "--max-seconds", "5")
        status, _, err = finish(proc)
        assert status == 1, err
        assert "the service is down" in err


class TestBadInput:
    def test_an_unknown_signal_is_refused_before_anything_starts(self, runtime):
        me = otpy.self()
        with pytest.raises(ValueError, match="unknown signal 'SIGNOPE'"):
            otpy.run([], signals=("SIGNOPE",))
        with pytest.raises(ValueError, match="SIGKILL cannot be handled"):
            otpy.run([], signals=("SIGKILL",))
        assert runtime.processes() == [me]

    @pytest.mark.parametrize("shutdown", [-1, float("nan")])
    def test_a_negative_shutdown_is_refused(self, runtime, shutdown):
        with pytest.raises(ValueError, match="shutdown must be a number of seconds >= 0"):
            otpy.run([], shutdown=shutdown)

    def test_run_outside_the_main_thread_is_refused(self, runtime):
        errors = []

        def body():
            try:
                otpy.run([])
            except RuntimeError as exc:
                errors.append(exc)

        thread = threading.Thread(target=body)
        thread.start()
        thread.join(10)
        assert "main thread" in str(errors[0])

    @pytest.mark.parametrize(
        ("target", "words"),
        [
            ("svc", "expected package.module:children"),
            ("nosuchmodule_xyz:children", "cannot import 'nosuchmodule_xyz'"),
            ("svc:nothing", "has no attribute 'nothing'"),
            ("svc:Worker", "must be a list of children"),
        ],
    )
    def test_a_target_that_does_not_resolve_is_refused(self, service, monkeypatch, target, words):
        monkeypatch.syspath_prepend(str(service))
        with pytest.raises(ValueError, match=words):
            load_children(target)
        proc = start(service, target)
        status, _, err = finish(proc)
        assert status == 2
        assert words.split("'")[0] in err

    def test_a_function_returning_children_resolves(self, service, monkeypatch):
        monkeypatch.syspath_prepend(str(service))
        assert len(load_children("svc:children")) == 3
        assert len(load_children("svc:slow")) == 2
