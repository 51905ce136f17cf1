"""The rate_limit demo: each URL's story follows the server's seeded plan, and the rate holds.

The expected stories are written out here from the plan (``plan_targets``), not taken from the
demo's own rendering, so a change in what is retried, or in how, shows up as a failure. Lines
with timings are checked by pattern; the one timed property checked is the bucket's upper
bound (no more than ``capacity + rate * elapsed`` requests), which a slow machine only makes
easier to meet.
"""

from __future__ import annotations

import re

import pytest

import otpy
from otpy import telemetry
from otpy.demos import rate_limit
from otpy.demos.rate_limit import (
    HTTPStatusError,
    NetworkError,
    Target,
    is_transient,
    kind_counts,
    plan_targets,
)
from tests.test_examples import run_python

pytestmark = pytest.mark.timeout(60)

LINE = re.compile(
    r"^  \[ *\d+\.\d\ds\] GET (/item/\d\d(?: \(closed port\))?) +attempts=(\d+)  (.*)$"
)


def expected_story(target: Target) -> tuple[int, str]:
    """``(attempts, story)`` the plan implies for ``target``, with the policy's 4 attempts."""
    match target.kind:
        case "ok":
            return 1, "200"
        case "flaky":
            return target.failures + 1, f"500 -> retried {target.failures}x -> 200"
        case "busy":
            return 2, "429 -> waited 0.10 s (Retry-After) -> 200"
        case "slow":
            return 2, "timeout -> retried 1x -> 200"
        case "missing":
            return 1, "404 -> not retried"
        case "bad":
            return 1, "400 -> not retried"
        case "broken":
            return 4, "503 -> retried 3x -> gave up after 4 attempts"
        case "refused":
            return 4, "refused -> retried 3x -> gave up after 4 attempts"
    raise AssertionError(target)


def check_output(out: str, urls: int, seed: int, rate: float, capacity: float) -> None:
    """Everything the demo printed is what the seeded plan implies; the rate stays in bounds."""
    lines = out.splitlines()
    targets = plan_targets(urls, seed)
    counts = kind_counts(urls)

    assert lines[0] == (
        f"rate_limit demo: seed {seed}, {urls} URLs, 8 at a time, "
        f"through a token bucket of {rate:g}/s (burst {capacity:g})"
    )

    # One line per URL, in input order, each with the story its plan implies.
    results = [m.groups() for m in map(LINE.match, lines) if m]
    assert [shown for shown, _, _ in results] == [t.shown for t in targets]
    assert [(int(n), story) for _, n, story in results] == [expected_story(t) for t in targets]
    sent = sum(expected_story(t)[0] for t in targets)

    # The three kinds of retry decision the demo is about, spelled out.
    stories = [story for _, _, story in results]
    assert "404 -> not retried" in stories
    assert any(re.fullmatch(r"500 -> retried [12]x -> 200", s) for s in stories)
    assert "429 -> waited 0.10 s (Retry-After) -> 200" in stories

    flaky_retries = sum(t.failures for t in targets if t.kind == "flaky")
    assert (
        f"outcomes: {counts['ok']} ok at once, "
        f"{counts['flaky'] + counts['busy'] + counts['slow']} ok after retries, "
        f"{counts['missing'] + counts['bad']} not retried "
        f"(1 x 400, {counts['missing']} x 404), 2 gave up"
    ) in lines
    retries = {
        "429": counts["busy"],
        "500": flaky_retries,
        "503": 3,
        "refused": 3,
        "timeout": counts["slow"],
    }
    assert (
        f"telemetry: {sent - urls} retries scheduled "
        f"({', '.join(f'{label}: {n}' for label, n in retries.items())}), 2 runs exhausted"
    ) in lines
    assert any(
        re.fullmatch(r"throttled: the bucket was empty for \d+ requests, .*", x) for x in lines
    ), out

    requests = re.search(
        r"^requests: (\d+) sent in (\d+\.\d+) s, (\d+) of them reached the server", out, re.M
    )
    assert requests is not None, out
    assert int(requests.group(1)) == sent
    assert int(requests.group(3)) == sent - 4  # the closed port's 4 attempts never arrive
    elapsed = float(requests.group(2))
    # The bucket's guarantee: at most capacity + rate * T tokens in any T seconds (elapsed is
    # printed rounded to the millisecond, hence the allowance of one).
    assert sent <= capacity + rate * (elapsed + 0.001), (sent, elapsed)

    achieved = re.search(
        r"^rate: (\d+\.\d) requests/s achieved; the bucket allows (\S+)/s plus a burst of "
        r"(\S+), at most (\d+\.\d)/s over (\d+\.\d+) s$",
        out,
        re.M,
    )
    assert achieved is not None, out
    assert (float(achieved.group(2)), float(achieved.group(3))) == (rate, capacity)
    assert float(achieved.group(1)) <= float(achieved.group(4))
    steady = re.search(
        rf"^  after the first burst of {capacity:g}: (\d+\.\d) requests/s "
        rf"\(at most {rate:g}\)$",
        out,
        re.M,
    )
    assert steady is not None, out
    assert float(steady.group(1)) <= rate


class TestScript:
    def test_the_default_run_tells_each_urls_story_and_keeps_to_the_rate(self) -> None:
        out = run_python("examples/rate_limit.py").stdout
        check_output(out, urls=40, seed=7, rate=25.0, capacity=5.0)

    def test_python_m_otpy_demo_runs_it_with_its_options(self) -> None:
        args = ("--seed", "3", "--urls", "12", "--rate", "40", "--capacity", "8")
        out = run_python("-m", "otpy", "demo", "rate_limit", *args).stdout
        check_output(out, urls=12, seed=3, rate=40.0, capacity=8.0)


class TestInProcess:
    def test_main_cleans_up_its_server_handler_and_bucket(
        self, runtime: otpy.Runtime, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # The runtime fixture fails the test if a thread (the server's, a request's) is left.
        assert rate_limit.main(["--urls", "10", "--seed", "5", "--rate", "50"]) == 0
        check_output(capsys.readouterr().out, urls=10, seed=5, rate=50.0, capacity=5.0)
        assert not [h for h in telemetry.list_handlers() if "otpy.demos.rate_limit" in str(h.id)]

    def test_bad_options_are_refused(
        self, runtime: otpy.Runtime, capsys: pytest.CaptureFixture[str]
    ) -> None:
        for argv in (["--urls", "3"], ["--rate", "0"], ["--capacity", "0.5"]):
            with pytest.raises(SystemExit) as exc:
                rate_limit.main(argv)
            assert exc.value.code == 2
        assert "--capacity must be at least 1" in capsys.readouterr().err


class TestPolicy:
    def test_what_is_retried_and_what_is_not(self, runtime: otpy.Runtime) -> None:
        url = "http://127.0.0.1/x"
        assert is_transient(HTTPStatusError(url, 429, retry_after=0.1)) == 0.1
        assert is_transient(HTTPStatusError(url, 429)) is True
        assert is_transient(HTTPStatusError(url, 500)) is True
        assert is_transient(HTTPStatusError(url, 503)) is True
        assert is_transient(HTTPStatusError(url, 404)) is False
        assert is_transient(HTTPStatusError(url, 400)) is False
        assert is_transient(NetworkError(url, "timeout", transient=True)) is True
        assert is_transient(NetworkError(url, "refused", transient=True)) is True
        # The bucket's own timeout is a TimeoutError too, but not a failed request.
        assert is_transient(otpy.Timeout("TokenBucket.acquire", 1.0)) is False

    def test_the_plan_has_every_kind_and_depends_only_on_the_seed(
        self, runtime: otpy.Runtime
    ) -> None:
        for urls in (10, 40, 100):
            counts = kind_counts(urls)
            assert sum(counts.values()) == urls
            assert all(n >= 1 for n in counts.values()), counts
        assert plan_targets(40, 7) == plan_targets(40, 7)
        assert plan_targets(40, 7) != plan_targets(40, 8)
