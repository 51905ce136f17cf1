"""otpy.observer.snapshot: the system figures, the process rows, the supervision trees."""

from __future__ import annotations

import json
import threading

import pytest
from conftest import in_thread, recv, wait_until

import otpy
import otpy.observer
from otpy.observer import _snapshot

from .observer_helpers import BACKLOG, CALLS, USERS, Cache, Mailer, sample_tree, text

pytestmark = pytest.mark.timeout(30)


def by_pid(data: dict) -> dict[str, dict]:
    return {row["pid"]: row for row in data["processes"]}


def find(nodes: list[dict], pid: otpy.Pid) -> dict:
    for node in nodes:
        if node["pid"] == text(pid):
            return node
        try:
            return find(node["children"], pid)
        except LookupError:
            pass
    raise LookupError(pid)


class TestSnapshot:
    def test_it_is_json_with_system_processes_and_tree(self, runtime: otpy.Runtime) -> None:
        with sample_tree():
            data = otpy.observer.snapshot()
        assert set(data) == {"system", "processes", "tree"}
        assert json.loads(json.dumps(data)) == data
        system = data["system"]
        assert system["runtime"] == runtime.id
        assert system["processes"] == len(data["processes"]) == len(runtime.processes())
        assert system["closed"] is False
        assert system["message_queue_total"] == BACKLOG
        assert sum(system["statuses"].values()) == system["processes"]
        assert system["pool"]["threads"] >= 1  # the mailer's handler holds one
        assert system["threads"] >= 1 and system["uptime"] >= 0 and system["python"]
        for row in data["processes"]:
            assert tuple(row) == otpy.observer.ROW_KEYS

    def test_rows_carry_what_process_info_says(self, runtime: otpy.Runtime) -> None:
        with sample_tree() as tree:
            rows = by_pid(otpy.observer.snapshot(runtime))
        cache = rows[text(tree.cache)]
        assert cache["name"] == "cache"
        assert cache["behaviour"] == "GenServer"
        assert cache["reductions"] == CALLS
        assert cache["restarts"] == 1
        assert cache["parent"] == text(tree.root)
        assert cache["links"] == [text(tree.root)]
        assert cache["current"].endswith("Cache")
        mailer = rows[text(tree.mailer)]
        assert mailer["message_queue_len"] == BACKLOG
        assert mailer["status"] == "running"
        me = rows[text(otpy.self())]
        assert me["behaviour"] == "thread" and me["parent"] is None
        assert text(tree.root) in me["links"]

    def test_monitors_are_listed(self, runtime: otpy.Runtime) -> None:
        pid = otpy.spawn(otpy.receive)
        otpy.monitor(pid)
        rows = by_pid(otpy.observer.snapshot())
        assert rows[text(otpy.self())]["monitors"] == [text(pid)]
        otpy.send(pid, "stop")

    def test_a_runtime_that_is_not_one_is_refused(self, runtime: otpy.Runtime) -> None:
        with pytest.raises(TypeError, match=r"otpy\.Runtime"):
            otpy.observer.snapshot("runtime")  # type: ignore[arg-type]

    def test_a_plain_thread_leaves_no_process_behind(self, runtime: otpy.Runtime) -> None:
        with sample_tree():
            before = set(runtime.processes())
            data = in_thread(otpy.observer.snapshot)  # its calls to supervisors need a process
            assert len(data["processes"]) == len(before)
            wait_until(lambda: set(runtime.processes()) == before)


class TestTree:
    def test_roots_are_the_unsupervised_supervisors(self, runtime: otpy.Runtime) -> None:
        with sample_tree() as tree:
            lone = otpy.DynamicSupervisor.start_link(name="lone")
            roots = otpy.observer.snapshot()["tree"]
        assert [root["pid"] for root in roots] == [text(tree.root), text(lone)]
        app = roots[0]
        assert app["id"] == "app" and app["name"] == "app"
        assert app["type"] == "supervisor" and app["behaviour"] == "Supervisor"
        assert (app["strategy"], app["max_restarts"], app["max_seconds"]) == (
            "one_for_one",
            5,
            5.0,
        )
        assert list(app) == [
            "id",
            "pid",
            "type",
            "strategy",
            "restarts",
            "name",
            "behaviour",
            "max_restarts",
            "max_seconds",
            "children",
        ]

    def test_children_have_their_ids_types_and_restart_counts(self, runtime: otpy.Runtime) -> None:
        with sample_tree() as tree:
            app = otpy.observer.snapshot()["tree"][0]
        assert [(c["id"], c["pid"], c["type"]) for c in app["children"]] == [
            ("cache", text(tree.cache), "worker"),
            ("mailer", text(tree.mailer), "worker"),
            ("sessions", text(tree.sessions), "supervisor"),
        ]
        cache, mailer, sessions = app["children"]
        assert (cache["restarts"], mailer["restarts"]) == (1, 0)
        assert cache["strategy"] is None and cache["children"] == []
        assert sessions["strategy"] == "one_for_one" and "max_restarts" not in sessions
        assert [(s["id"], s["pid"], s["name"]) for s in sessions["children"]] == [
            (None, text(pid), f"session-{user}")
            for pid, user in zip(tree.users, USERS, strict=True)
        ]

    def test_a_killed_child_shows_its_new_pid_and_one_more_restart(
        self, runtime: otpy.Runtime
    ) -> None:
        with sample_tree() as tree:
            ref = otpy.monitor(tree.cache)
            otpy.exit(tree.cache, "kill")
            recv(lambda m: isinstance(m, otpy.Down) and m.ref == ref)
            wait_until(lambda: otpy.whereis("cache") not in (None, tree.cache))
            app = otpy.observer.snapshot()["tree"][0]
        cache = app["children"][0]
        assert cache["pid"] == text(otpy.whereis("cache"))
        assert cache["restarts"] == 2

    def test_partitions_and_task_supervisors_are_trees_too(self, runtime: otpy.Runtime) -> None:
        otpy.Supervisor.start_link(
            [
                otpy.PartitionSupervisor.child_spec(
                    id="workers", name="workers", child_spec=Cache.child_spec(), partitions=2
                ),
                otpy.TaskSupervisor.child_spec(id="tasks", name="tasks"),
            ],
            name="top",
            strategy="rest_for_one",
        )
        gate = threading.Event()
        task = otpy.TaskSupervisor.async_nolink("tasks", gate.wait, 5.0)
        root = otpy.observer.snapshot()["tree"][0]
        gate.set()
        task.await_(timeout=5.0)
        assert root["strategy"] == "rest_for_one"
        workers, tasks = root["children"]
        assert workers["behaviour"] == "Supervisor" and workers["strategy"] == "one_for_one"
        assert [c["id"] for c in workers["children"]] == [0, 1]
        assert tasks["behaviour"] == "DynamicSupervisor"
        assert [c["pid"] for c in tasks["children"]] == [text(task.pid)]

    def test_a_supervisor_that_does_not_answer_is_drawn_from_parent_pids(
        self, runtime: otpy.Runtime, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_snapshot, "CALL_BUDGET", 0.0)  # no time to ask anyone
        with sample_tree() as tree:
            roots = otpy.observer.snapshot()["tree"]
        assert [root["pid"] for root in roots] == [text(tree.root)]
        app = roots[0]
        assert app["strategy"] is None
        assert {c["pid"] for c in app["children"]} == {
            text(tree.cache),
            text(tree.mailer),
            text(tree.sessions),
        }
        assert all(c["id"] is None for c in app["children"])
        sessions = find(roots, tree.sessions)
        assert sessions["type"] == "supervisor"
        assert {c["pid"] for c in sessions["children"]} == {text(p) for p in tree.users}

    def test_child_ids_become_json(self) -> None:
        assert _snapshot._json_id(Mailer) == "Mailer"
        assert _snapshot._json_id(3) == 3
        assert _snapshot._json_id(("a", 1)) == "('a', 1)"
        assert _snapshot._json_id(float("nan")) == "nan"


class TestDetail:
    def test_a_process_held_in_a_handler_shows_its_stack(self, runtime: otpy.Runtime) -> None:
        with sample_tree() as tree:
            info = otpy.process_info(tree.mailer)
            assert info is not None
            detail = _snapshot.detail(info, {text(tree.root): "app"}.get)
        assert detail["thread"] == info.thread
        assert detail["stack"] is not None
        assert any("in handle_cast" in frame for frame in detail["stack"])
        assert detail["names"] == {text(tree.root): "app"}
        assert detail["trap_exits"] is False and detail["monitored_by"] == []

    def test_a_waiting_reactive_process_has_no_stack(self, runtime: otpy.Runtime) -> None:
        with sample_tree() as tree:
            info = otpy.process_info(tree.cache)
        assert info is not None and info.thread is None
        assert _snapshot.detail(info, lambda _: None)["stack"] is None

    def test_a_plain_thread_s_process_shows_that_thread_s_stack(
        self, runtime: otpy.Runtime
    ) -> None:
        info = otpy.process_info(otpy.self())
        assert info is not None
        stack = _snapshot.stack_of(info.thread)
        assert stack is not None
        assert "test_a_plain_thread_s_process_shows_that_thread_s_stack" in "".join(stack)


class TestSortAndPids:
    def test_rows_sort_largest_first_with_ties_in_pid_order(self) -> None:
        rows = [
            {"pid": "1.10.0", "name": None, "message_queue_len": 3},
            {"pid": "1.2.0", "name": "b", "message_queue_len": 3},
            {"pid": "1.3.0", "name": "a", "message_queue_len": 9},
        ]
        assert [r["pid"] for r in _snapshot.sort_rows(rows, "message_queue_len")] == [
            "1.3.0",
            "1.2.0",
            "1.10.0",
        ]
        assert [r["pid"] for r in _snapshot.sort_rows(rows, "pid")] == ["1.10.0", "1.3.0", "1.2.0"]
        assert [r["name"] for r in _snapshot.sort_rows(rows, "name")] == ["b", "a", None]
        with pytest.raises(ValueError, match="sort by one of"):
            _snapshot.sort_rows(rows, "links")

    def test_pids_are_written_without_brackets(self) -> None:
        assert _snapshot.pid_text(otpy.Pid(3, 42)) == "3.42.0"
        assert _snapshot.parse_pid("3.42.0") == _snapshot.parse_pid("<3.42.0>") == (3, 42)
        for bad in ("3.42", "3.42.1", "a.b.0", "", "3.42.0.0"):
            with pytest.raises(ValueError, match="not a pid"):
                _snapshot.parse_pid(bad)
