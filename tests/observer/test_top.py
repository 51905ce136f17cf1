"""``python -m otpy top`` (plain and rich, from a server and in-process) and ``observe demo``."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_until

import otpy
import otpy.observer
from otpy.__main__ import main as otpy_main
from otpy.observer import _top

from .observer_helpers import BACKLOG, http, sample_tree, text

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames as wide as a usual terminal, whatever runs the tests."""
    monkeypatch.setenv("COLUMNS", "150")


def table(frame: str) -> list[list[str]]:
    """The rows of a plain frame's table, header first, split into words."""
    lines = frame.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("PID "))
    end = lines.index("", start)
    return [line.split() for line in lines[start:end]]


def heading(frame: str) -> str:
    return next(line for line in frame.splitlines() if " processes by " in line)


def top(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = _top.main(list(argv), file=out)
    return status, out.getvalue()


class TestTopOnce:
    def test_plain_frame_from_a_server(self, runtime: otpy.Runtime) -> None:
        with sample_tree() as tree, otpy.observer.serve() as srv:
            status, frame = top(
                "--url", srv.url, "--once", "--plain", "--sort", "message_queue_len"
            )
        assert status == 0
        lines = frame.splitlines()
        assert lines[0].startswith(f"otpy top  runtime {runtime.id} | ")
        assert heading(frame).endswith("processes by message_queue_len (largest first)")
        rows = table(frame)
        assert rows[0] == [
            "PID", "NAME", "BEHAVIOUR", "STATUS", "MAILBOX", "HANDLED", "RESTARTS", "CURRENT"
        ]  # fmt: skip
        assert rows[1][:5] == [
            f"<{text(tree.mailer)}>",
            "mailer",
            "GenServer",
            "running",
            str(BACKLOG),
        ]
        assert "supervision tree" in lines
        tree_lines = lines[lines.index("supervision tree") + 1 :]
        assert tree_lines[0].startswith("app ") and "one_for_one, 5 in 5.0s" in tree_lines[0]
        assert tree_lines[1].startswith("+-- cache") and "restarts=1" in tree_lines[1]
        assert tree_lines[-3].startswith("`-- sessions")
        assert tree_lines[-2].startswith("    +-- session-alice")
        assert tree_lines[-1].startswith("    `-- session-bob")

    def test_limit_cuts_the_rows(self, runtime: otpy.Runtime) -> None:
        with sample_tree(), otpy.observer.serve() as srv:
            status, frame = top("--url", srv.url, "--once", "--plain", "--limit", "2")
        assert status == 0
        assert heading(frame).startswith("2 of ")  # "2 of 8 processes by reductions"
        assert len(table(frame)) == 1 + 2

    def test_rich_frame_from_a_server(self, runtime: otpy.Runtime) -> None:
        pytest.importorskip("rich")
        with sample_tree() as tree, otpy.observer.serve() as srv:
            status, frame = top("--url", srv.url, "--once", "--sort", "restarts")
        assert status == 0
        assert "otpy top" in frame and "supervision tree" in frame
        rows = [line for line in frame.splitlines() if line.strip().startswith("<")]
        assert rows[0].split()[:2] == [f"<{text(tree.cache)}>", "cache"]  # restarted once
        assert "session-bob" in frame and "one_for_one, 5 in 5.0s" in frame

    def test_without_rich_the_frame_is_plain(
        self, runtime: otpy.Runtime, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_top, "_rich_available", lambda: False)
        with sample_tree() as tree, otpy.observer.serve() as srv:
            status, frame = top("--url", srv.url, "--once", "--sort", "message_queue_len")
        assert status == 0
        assert table(frame)[1][0] == f"<{text(tree.mailer)}>"
        assert "+-- cache" in frame  # the plain tree's branches, not rich's

    def test_in_process_shows_the_current_runtime(
        self, runtime: otpy.Runtime, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with sample_tree() as tree:
            status = otpy_main(["top", "--once", "--plain", "--sort", "message_queue_len"])
        assert status == 0
        frame = capsys.readouterr().out
        assert f"runtime {runtime.id}" in frame
        assert table(frame)[1][0] == f"<{text(tree.mailer)}>"

    def test_the_token_is_sent(self, runtime: otpy.Runtime) -> None:
        with otpy.observer.serve(token="s3cret") as srv:
            status, frame = top("--url", srv.url, "--once", "--plain", "--token", "s3cret")
        assert status == 0 and frame.startswith("otpy top")

    def test_a_missing_token_is_explained(
        self, runtime: otpy.Runtime, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with otpy.observer.serve(token="s3cret") as srv:
            assert top("--url", srv.url, "--once", "--plain")[0] == 1
        err = capsys.readouterr().err
        assert "answered 401" in err and "--token" in err

    def test_an_unreachable_observer_is_explained(
        self, runtime: otpy.Runtime, capsys: pytest.CaptureFixture[str]
    ) -> None:
        srv = otpy.observer.serve()
        srv.close()  # nothing listens there now
        assert top("--url", srv.url, "--once", "--plain")[0] == 1
        assert "cannot reach the observer" in capsys.readouterr().err

    def test_many_children_are_counted_not_drawn(self) -> None:
        kids = [
            {"id": None, "pid": f"1.{n}.0", "type": "worker", "strategy": None, "restarts": 0,
             "name": None, "behaviour": "GenServer", "children": []}
            for n in range(10, 10 + _top.TREE_CHILDREN + 3)
        ]  # fmt: skip
        root = {"id": "big", "pid": "1.2.0", "type": "supervisor", "strategy": "one_for_one",
                "restarts": 0, "name": "big", "behaviour": "DynamicSupervisor", "children": kids}  # fmt: skip
        lines = list(_top._tree_lines([root]))
        assert len(lines) == 1 + _top.TREE_CHILDREN + 1
        assert lines[-1] == "`-- ... 3 more"


class TestObserveDemo:
    def test_prints_the_url_first_and_serves_the_demo(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        argv = ["observe", "demo", "--events", "3", "--pause", "0.5", "--linger", "30"]
        with subprocess.Popen(
            [sys.executable, "-m", "otpy", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        ) as child:
            try:
                assert child.stdout is not None and child.stderr is not None
                first = child.stdout.readline()
                assert first.startswith("observer: http://127.0.0.1:"), first
                url = first.split()[1]
                assert http(url).status == 200
                wait_until(  # chaos lasts 3 x 0.5 s; a snapshot is reused for 1 s
                    lambda: "root" in {root["name"] for root in http(url, "api/tree").json()},
                    timeout=15.0,
                )
                for line in child.stdout:  # the demo runs to its end, then lingers
                    if line.startswith("observer: the demo ended"):
                        break
                else:
                    pytest.fail(f"the demo did not end well: {child.stderr.read()}")
                shown = http(url, "api/system").json()  # the demo's runtime, shut down
                assert shown["closed"] is True and shown["processes"] == 0
                child.send_signal(signal.SIGINT)  # stops the lingering
                assert child.wait(timeout=10) == 0
            finally:
                if child.poll() is None:
                    child.kill()
