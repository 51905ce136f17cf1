"""examples/web_service.py: a real subprocess on a loopback port, real HTTP, a real SIGTERM.

The service is driven with 200 concurrent requests (writes, reads, jobs, health checks, bad
input), the data is read back, and then SIGTERM arrives while 40 jobs are in progress: each
of them must still be answered with 200, new connections must be refused from the moment
the drain starts, the tree must stop in reverse order and the process exit with 0.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REASON = "the web service example needs starlette, uvicorn and httpx: pip install -e '.[test]'"
pytest.importorskip("starlette", reason=REASON)
pytest.importorskip("uvicorn", reason=REASON)
httpx = pytest.importorskip("httpx", reason=REASON)

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
DRAIN = 8  # --drain: far longer than the jobs in progress at the signal take
IN_FLIGHT = 40  # jobs in progress when SIGTERM arrives
IN_FLIGHT_MS = 3000  # long enough that they are all still running when the drain starts


def python_env() -> dict[str, str]:
    """The environment for the example: otpy from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class Service:
    """The example in a subprocess; its stdout lines arrive on a queue as they are printed."""

    def __init__(self, tmp_path: Path) -> None:
        self.stderr_path = tmp_path / "stderr.txt"
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "examples/web_service.py", "--port", "0", "--drain", str(DRAIN)],
            cwd=ROOT,
            env=python_env(),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def expect(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait for the next stdout line matching ``pattern`` (lines before it are kept)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0))
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} within {timeout}s; saw {self.seen}")
            if line is None:
                pytest.fail(
                    f"the service ended before a line matching {pattern!r}; saw "
                    f"{self.seen}\n{self.stderr()}"
                )
            self.seen.append(line)
            match = re.fullmatch(pattern, line)
            if match:
                return match

    def rest(self) -> list[str]:
        """The remaining stdout lines, once the process has ended."""
        self._reader.join(10)
        rest = []
        while not self.lines.empty():
            line = self.lines.get()
            if line is not None:
                rest.append(line)
        return rest

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path)
    try:
        yield svc
    finally:
        svc.close()


def squares(n: int) -> int:
    return sum(i * i for i in range(n))


async def wait_for_in_flight(url: str, wanted: int, timeout: float = 10.0) -> None:
    """Poll GET /health (on a connection of its own) until ``wanted`` requests are in progress."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as probe:
        while True:
            health = (await probe.get("/health")).json()
            if health["in_flight"] >= wanted:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"only {health['in_flight']} of {wanted} requests in flight")
            await asyncio.sleep(0.01)  # polling with a deadline


async def drive(url: str, service: Service) -> dict[str, object]:
    # A connection per request: reusing an idle keep-alive connection races with the server
    # closing it (uvicorn does after 5 s idle, and at the drain), and httpx does not retry.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=20.0) as client:
        # 200 requests at once: writes, misses, jobs (100-300 ms), health checks, bad input.
        jobs = [(i * 50, 100 + (i * 37) % 201) for i in range(50)]
        first = await asyncio.gather(
            *[client.put(f"/items/k{i}", json={"i": i, "name": f"item {i}"}) for i in range(100)],
            *[client.get(f"/items/missing{i}") for i in range(25)],
            *[client.post("/jobs", json={"n": n, "ms": ms}) for n, ms in jobs],
            *[client.get("/health") for _ in range(22)],
            client.post("/jobs", json={"ms": 50, "fail": True}),
            client.post("/jobs", json={"n": -1}),
            client.put("/items/bad", content=b"{not json"),
        )
        assert len(first) == 200
        puts, misses = first[:100], first[100:125]
        job_answers, health = first[125:175], first[175:197]
        failed, refused, bad_put = first[197:]
        assert [r.status_code for r in puts] == [200] * 100
        assert [r.json()["version"] for r in puts] == [1] * 100
        assert [r.status_code for r in misses] == [404] * 25
        assert [r.status_code for r in job_answers] == [200] * 50
        assert [r.json()["result"] for r in job_answers] == [squares(n) for n, _ in jobs]
        assert all(r.status_code == 200 and r.json()["status"] == "ok" for r in health)
        assert failed.status_code == 500
        assert "the job failed on purpose" in failed.json()["error"]
        assert refused.status_code == 400 and "'n' must be an integer" in refused.json()["error"]
        assert bad_put.status_code == 400 and "must be JSON" in bad_put.json()["error"]

        # Overwrite half of the items while reading the other half, then read all back.
        second = await asyncio.gather(
            *[client.put(f"/items/k{i}", json={"i": i, "round": 2}) for i in range(50)],
            *[client.get(f"/items/k{i}") for i in range(50, 100)],
        )
        assert [r.json()["version"] for r in second[:50]] == [2] * 50
        assert [r.json()["value"] for r in second[50:]] == [
            {"i": i, "name": f"item {i}"} for i in range(50, 100)
        ]
        back = await asyncio.gather(*[client.get(f"/items/k{i}") for i in range(100)])
        assert [r.status_code for r in back] == [200] * 100
        assert [(r.json()["value"], r.json()["version"]) for r in back] == [
            ({"i": i, "round": 2}, 2) for i in range(50)
        ] + [({"i": i, "name": f"item {i}"}, 1) for i in range(50, 100)]

        # SIGTERM while IN_FLIGHT jobs are in progress.
        in_flight = [
            asyncio.ensure_future(client.post("/jobs", json={"n": 1000 + i, "ms": IN_FLIGHT_MS}))
            for i in range(IN_FLIGHT)
        ]
        await wait_for_in_flight(url, IN_FLIGHT)
        service.proc.send_signal(signal.SIGTERM)
        drain = await asyncio.to_thread(
            service.expect, r"http: draining (\d+) request\(s\) in flight; .*", 10.0
        )
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as fresh:
            with pytest.raises(httpx.ConnectError):
                await fresh.get("/health")
        answers = await asyncio.gather(*in_flight)  # any reset connection raises here
        return {
            "draining": int(drain.group(1)),
            "statuses": [r.status_code for r in answers],
            "results": [r.json()["result"] for r in answers],
        }


def test_it_serves_200_concurrent_requests_and_drains_on_sigterm(runtime, service):
    url = service.expect(r"listening on (http://127\.0\.0\.1:\d+)").group(1)

    try:
        outcome = asyncio.run(drive(url, service))
    except BaseException:
        print(f"--- the service's stderr ---\n{service.stderr()}")  # shown with the failure
        raise

    assert outcome["draining"] == IN_FLIGHT, "the drain began with every job still in progress"
    assert outcome["statuses"] == [200] * IN_FLIGHT
    assert outcome["results"] == [squares(1000 + i) for i in range(IN_FLIGHT)]
    status = service.proc.wait(timeout=DRAIN)  # the bound: once the drained requests are answered
    stderr = service.stderr()
    assert status == 0, stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=5.0)
    # The tree stopped in reverse start order: the HTTP server (drained), then the store.
    assert service.rest() == ["http: stopped", "store: stopped with 100 item(s)"]
    assert "received SIGTERM: shutting down" in stderr
    assert "stopped 'web'" in stderr
    assert stderr.count("Traceback") == 1, stderr  # only the job that failed on purpose
    assert "the job failed on purpose" in stderr


def test_a_port_that_is_taken_fails_the_start_with_status_1(runtime, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "examples/web_service.py", "--port", str(port)],
            cwd=ROOT,
            env=python_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr
    # The children started before it are stopped again; nothing listens.
    assert proc.stdout.splitlines() == ["store: stopped with 0 item(s)"]
