"""otpy.observer.serve: every endpoint, sorting, the token, kills, bad input, the snapshot cache."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from conftest import down_of, recv, wait_until

import otpy
import otpy.observer
from otpy.observer import _snapshot

from .observer_helpers import BACKLOG, CALLS, http, sample_tree, text

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def served(runtime: otpy.Runtime) -> Iterator[otpy.observer.Server]:
    with otpy.observer.serve(runtime=runtime) as srv:
        yield srv


def still_serving(srv: otpy.observer.Server) -> None:
    answer = http(srv.url, "api/system")
    assert answer.status == 200, answer.body


class TestServe:
    def test_it_listens_on_loopback_at_a_free_port(self, served: otpy.observer.Server) -> None:
        assert served.host == "127.0.0.1" and served.port > 0
        assert served.url == f"http://127.0.0.1:{served.port}/"
        assert repr(served) == f"<otpy.observer.Server {served.url}>"

    def test_close_frees_the_port_and_is_idempotent(self, runtime: otpy.Runtime) -> None:
        srv = otpy.observer.serve()
        port = srv.port
        srv.close()
        srv.close()
        assert repr(srv) == "<otpy.observer.Server closed>"
        with otpy.observer.serve(port=port) as again:
            assert again.port == port

    def test_a_port_in_use_raises_naming_host_and_port(self, served: otpy.observer.Server) -> None:
        with pytest.raises(OSError, match=rf"cannot listen on 127\.0\.0\.1:{served.port}"):
            otpy.observer.serve(port=served.port)
        still_serving(served)

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"port": -1}, ValueError),
            ({"port": 70000}, ValueError),
            ({"port": "80"}, TypeError),
            ({"host": ""}, TypeError),
            ({"token": ""}, ValueError),
            ({"runtime": "rt"}, TypeError),
            ({"allow_destructive": 1}, TypeError),
            ({"refresh": 0}, ValueError),
        ],
    )
    def test_bad_arguments_are_refused(
        self, runtime: otpy.Runtime, kwargs: dict, error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            otpy.observer.serve(**kwargs)

    def test_serving_adds_only_the_sampler_s_process_and_it_goes_at_close(
        self, runtime: otpy.Runtime
    ) -> None:
        with sample_tree():
            before = set(runtime.processes())
            with otpy.observer.serve() as srv:
                sampler = f"thread otpy-observer-{srv.port}"
                for path in ("", "api/system", "api/tree", "api/processes", "api/processes/x"):
                    http(srv.url, path)
                rows = http(srv.url, f"api/processes/{text(otpy.self())}").json()
                assert rows["pid"] == text(otpy.self())
                added = set(runtime.processes()) - before
                assert [otpy.process_info(p).current for p in added] == [sampler]
            wait_until(lambda: set(runtime.processes()) == before)

    def test_a_runtime_that_shuts_down_is_shown_closed(self, runtime: otpy.Runtime) -> None:
        other = otpy.Runtime()
        with other:
            otpy.Supervisor.start_link([], name="short-lived")
            srv = otpy.observer.serve(runtime=other, refresh=0.05)
            assert http(srv.url, "api/tree").json()[0]["name"] == "short-lived"
        with srv:
            wait_until(lambda: http(srv.url, "api/system").json()["closed"])
            assert http(srv.url, "api/processes").json() == []
            assert http(srv.url, "api/tree").json() == []
        with pytest.raises(ValueError, match="shut down"):
            otpy.observer.serve(runtime=other)


class TestEndpoints:
    def test_the_page_is_self_contained_html(self, served: otpy.observer.Server) -> None:
        answer = http(served.url)
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
        page = answer.body.decode()
        assert "<title>otpy observer</title>" in page
        for outside in ('src="http', "src='http", 'href="http', "@import", "//cdn"):
            assert outside not in page
        assert "connect-src 'self'" in answer.headers["Content-Security-Policy"]
        assert http(served.url, "index.html").body == answer.body

    def test_system(self, runtime: otpy.Runtime, served: otpy.observer.Server) -> None:
        otpy.self()  # the test's thread gets a process
        system = http(served.url, "api/system").json()
        assert system["runtime"] == runtime.id
        assert system["processes"] == 1
        assert system["refresh"] == 1.0 and system["allow_destructive"] is False

    def test_processes_tree_and_one_process(self, runtime: otpy.Runtime) -> None:
        with sample_tree() as tree, otpy.observer.serve() as srv:
            rows = http(srv.url, "api/processes").json()
            order = [_snapshot.parse_pid(r["pid"]) for r in rows]
            assert order == sorted(order)  # oldest first
            assert {text(tree.cache), text(tree.mailer)} <= {r["pid"] for r in rows}
            roots = http(srv.url, "api/tree").json()
            assert [root["pid"] for root in roots] == [text(tree.root)]
            assert [c["id"] for c in roots[0]["children"]] == ["cache", "mailer", "sessions"]
            one = http(srv.url, f"api/processes/{text(tree.mailer)}").json()
            assert one["name"] == "mailer" and one["message_queue_len"] == BACKLOG
            assert set(_snapshot.ROW_KEYS) < set(one)
            assert one["links"] == [text(tree.root)] and one["names"] == {text(tree.root): "app"}
            assert any("in handle_cast" in frame for frame in one["stack"])
            assert http(srv.url, f"api/processes/<{text(tree.mailer)}>").status == 200

    def test_sort_and_limit(self, runtime: otpy.Runtime) -> None:
        with sample_tree() as tree, otpy.observer.serve(refresh=60.0) as srv:
            by_mailbox = http(srv.url, "api/processes?sort=message_queue_len&limit=1").json()
            assert [r["pid"] for r in by_mailbox] == [text(tree.mailer)]
            by_work = http(srv.url, "api/processes?sort=reductions&limit=2").json()
            assert by_work[0]["pid"] == text(tree.cache) and by_work[0]["reductions"] == CALLS
            assert len(by_work) == 2
            by_restarts = http(srv.url, "api/processes?sort=restarts").json()
            assert by_restarts[0]["pid"] == text(tree.cache)
            assert len(by_restarts) == http(srv.url, "api/system").json()["processes"]
            assert http(srv.url, "api/processes?limit=0").json() == []
            assert len(http(srv.url, "api/processes?sort=&limit=").json()) == len(by_restarts)

    def test_json_answers_say_so(self, served: otpy.observer.Server) -> None:
        for path in ("api/system", "api/tree", "api/processes", "api/nope", "api/processes/x"):
            assert http(served.url, path).headers["Content-Type"] == "application/json"


class TestBadRequests:
    @pytest.mark.parametrize(
        ("path", "status", "says"),
        [
            ("api/processes/not-a-pid", 400, "not a pid"),
            ("api/processes/1.2", 400, "not a pid"),
            ("api/processes?sort=links", 400, "sort by one of"),
            ("api/processes?sort=bogus", 400, "sort by one of"),
            ("api/processes?limit=-1", 400, "whole number"),
            ("api/processes?limit=ten", 400, "whole number"),
            ("api/processes/1.99999.0", 404, "no process"),
            ("api/processes/999.1.0", 404, "no process"),
            ("api/nope", 404, "no such path"),
            ("nope.html", 404, "no such path"),
        ],
    )
    def test_is_answered_with_json_and_the_server_keeps_serving(
        self, served: otpy.observer.Server, path: str, status: int, says: str
    ) -> None:
        answer = http(served.url, path)
        assert answer.status == status
        body = answer.json()
        assert body["status"] == status and says in body["error"]
        still_serving(served)

    def test_a_dead_process_is_404(
        self, runtime: otpy.Runtime, served: otpy.observer.Server
    ) -> None:
        pid, ref = otpy.spawn_monitor(otpy.receive)
        assert http(served.url, f"api/processes/{text(pid)}").status == 200
        otpy.send(pid, "go")
        recv(down_of(ref))
        answer = http(served.url, f"api/processes/{text(pid)}")
        assert answer.status == 404 and "not alive" in answer.json()["error"]

    def test_a_wrong_method_is_405(self, served: otpy.observer.Server) -> None:
        answer = http(served.url, "api/system", method="POST")
        assert answer.status == 405 and answer.headers["Allow"] == "GET, HEAD"
        answer = http(served.url, f"api/processes/{text(otpy.self())}/kill")
        assert answer.status == 405 and answer.headers["Allow"] == "POST"
        assert http(served.url, "api/system", method="DELETE").status == 405
        still_serving(served)

    def test_a_host_that_is_not_loopback_is_refused(self, served: otpy.observer.Server) -> None:
        answer = http(served.url, "api/system", headers={"Host": f"evil.example:{served.port}"})
        assert answer.status == 403 and "loopback" in answer.json()["error"]
        ok = http(served.url, "api/system", headers={"Host": f"localhost:{served.port}"})
        assert ok.status == 200


class TestToken:
    def test_every_api_request_needs_the_bearer_token(self, runtime: otpy.Runtime) -> None:
        with otpy.observer.serve(token="s3cret") as srv:
            for path in ("api/system", "api/tree", "api/processes", "api/nope"):
                answer = http(srv.url, path)
                assert answer.status == 401
                assert answer.headers["WWW-Authenticate"].startswith("Bearer")
                assert "Authorization: Bearer" in answer.json()["error"]
            assert http(srv.url, "api/system", token="wrong").status == 401
            assert http(srv.url, "api/system", headers={"Authorization": "s3cret"}).status == 401
            assert http(srv.url, "api/system", token="s3cret").status == 200
            lower = http(srv.url, "api/system", headers={"Authorization": "bearer s3cret"})
            assert lower.status == 200
            assert http(srv.url, "api/nope", token="s3cret").status == 404

    def test_the_page_itself_needs_none(self, runtime: otpy.Runtime) -> None:
        with otpy.observer.serve(token="s3cret") as srv:
            assert http(srv.url).status == 200


class TestKill:
    def test_is_forbidden_unless_destructive_is_allowed(self, served: otpy.observer.Server) -> None:
        pid = otpy.spawn(otpy.receive)
        answer = http(served.url, f"api/processes/{text(pid)}/kill", method="POST")
        assert answer.status == 403 and "allow_destructive" in answer.json()["error"]
        assert otpy.is_alive(pid)
        otpy.send(pid, "stop")

    def test_kills_when_allowed_and_the_list_shows_it(self, runtime: otpy.Runtime) -> None:
        pid, ref = otpy.spawn_monitor(otpy.receive)
        with otpy.observer.serve(allow_destructive=True, refresh=60.0) as srv:
            assert text(pid) in {r["pid"] for r in http(srv.url, "api/processes").json()}
            answer = http(srv.url, f"api/processes/{text(pid)}/kill", method="POST")
            assert answer.status == 200
            assert answer.json() == {"pid": text(pid), "killed": True}
            assert recv(down_of(ref)).reason == "killed"
            # the kill made the cached snapshot stale, though it is younger than refresh
            assert text(pid) not in {r["pid"] for r in http(srv.url, "api/processes").json()}
            again = http(srv.url, f"api/processes/{text(pid)}/kill", method="POST")
            assert again.status == 404
            assert http(srv.url, "api/processes/x/kill", method="POST").status == 400

    def test_a_supervised_child_that_is_killed_is_restarted(self, runtime: otpy.Runtime) -> None:
        with sample_tree() as tree, otpy.observer.serve(allow_destructive=True) as srv:
            answer = http(srv.url, f"api/processes/{text(tree.cache)}/kill", method="POST")
            assert answer.status == 200
            wait_until(lambda: otpy.whereis("cache") not in (None, tree.cache))
            cache = http(srv.url, "api/tree").json()[0]["children"][0]
            assert cache["pid"] == text(otpy.whereis("cache")) and cache["restarts"] == 2

    def test_from_another_site_is_refused(self, runtime: otpy.Runtime) -> None:
        pid = otpy.spawn(otpy.receive)
        with otpy.observer.serve(allow_destructive=True) as srv:
            path = f"api/processes/{text(pid)}/kill"
            answer = http(srv.url, path, method="POST", headers={"Origin": "http://evil.example"})
            assert answer.status == 403 and "another site" in answer.json()["error"]
            assert otpy.is_alive(pid)
            origin = srv.url.rstrip("/")
            assert http(srv.url, path, method="POST", headers={"Origin": origin}).status == 200
            wait_until(lambda: not otpy.is_alive(pid))


class TestSnapshotCache:
    def test_concurrent_requests_share_one_snapshot(
        self, runtime: otpy.Runtime, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        taken = []
        gate = threading.Event()
        real = _snapshot.take

        def counted(rt: otpy.Runtime) -> _snapshot.Snapshot:
            taken.append(rt)
            gate.wait(5.0)  # the first snapshot is slow: the other requests come meanwhile
            return real(rt)

        monkeypatch.setattr(_snapshot, "take", counted)
        with sample_tree(), otpy.observer.serve(refresh=60.0) as srv:
            paths = ["api/system", "api/tree", "api/processes", "api/processes?sort=restarts"]
            answers: list[int] = []
            lock = threading.Lock()

            def ask(path: str) -> None:
                status = http(srv.url, path).status
                with lock:
                    answers.append(status)

            clients = [threading.Thread(target=ask, args=(paths[i % 4],)) for i in range(16)]
            for client in clients:
                client.start()
            wait_until(lambda: taken)
            gate.set()
            for client in clients:
                client.join()
            assert answers == [200] * 16
            assert taken == [runtime]
            assert http(srv.url, "api/system").status == 200
            assert len(taken) == 1  # still younger than refresh

    def test_a_snapshot_older_than_refresh_is_taken_again(
        self, runtime: otpy.Runtime, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        taken = []
        real = _snapshot.take

        def counted(rt: otpy.Runtime) -> _snapshot.Snapshot:
            taken.append(rt)
            return real(rt)

        monkeypatch.setattr(_snapshot, "take", counted)
        with otpy.observer.serve(refresh=0.05) as srv:
            http(srv.url, "api/system")
            assert len(taken) == 1

            def fresh() -> bool:
                http(srv.url, "api/system")
                return len(taken) > 1

            wait_until(fresh)

    def test_a_failing_snapshot_is_a_500_and_the_next_one_is_tried(
        self,
        runtime: otpy.Runtime,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        real = _snapshot.take
        failures = [RuntimeError("boom")]

        def flaky(rt: otpy.Runtime) -> _snapshot.Snapshot:
            if failures:
                raise failures.pop()
            return real(rt)

        monkeypatch.setattr(_snapshot, "take", flaky)
        with otpy.observer.serve() as srv:
            answer = http(srv.url, "api/system")
            assert answer.status == 500 and "boom" in answer.json()["error"]
            still_serving(srv)
        assert "the sampler failed" in caplog.text
