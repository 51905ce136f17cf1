"""Smoke tests: every script in examples/ runs, exits 0 and prints what its demo promises.

Each example runs in a fresh interpreter (``sys.executable``, from the repository root), exactly
as a user would start it. Lines that carry timings or pids are checked by pattern; everything
else the demos print is deterministic.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import otpy.demos

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 45.0


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` from the repository root; fail the test if it does not exit 0."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, (
        f"python {' '.join(args)} exited with {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def without_pids(text: str) -> str:
    return re.sub(r"<[^<>]*>", "<pid>", text)


class TestKvStore:
    def test_clients_share_the_store_and_terminate_runs_on_stop(self) -> None:
        out = run_python("examples/kv_store.py").stdout
        lines = out.splitlines()

        assert "[kv] init: started with 1 key(s): ['greeting']" in lines
        for name in ("alice", "bob", "carol"):
            assert f"{name}: put {name}:3 = 9" in lines
            assert f"{name}: get {name}:note -> 'hello from {name}'" in lines
            assert f"{name}: delete {name}:1 -> 1" in lines
            assert f"{name}: get {name}:1 -> None" in lines
        assert "main: all clients done; they wrote 12 keys" in lines
        assert (
            "main: keys -> ['alice:2', 'alice:3', 'alice:note', 'bob:2', 'bob:3', 'bob:note', "
            "'carol:2', 'carol:3', 'carol:note', 'greeting']"
        ) in lines
        assert "main: get 'missing' -> None" in lines
        terminate = (
            "[kv] terminate(reason='normal'): handled 20 calls and 3 casts; "
            "10 keys go with the process"
        )
        stopped = "main: stopped; whereis('kv') -> None"
        assert terminate in lines
        assert stopped in lines
        assert lines.index(terminate) < lines.index(stopped), "stop returned before terminate ran"
        assert lines[-1] == stopped

    def test_number_of_clients_is_an_option(self) -> None:
        lines = run_python("examples/kv_store.py", "--clients", "5").stdout.splitlines()
        assert "main: starting 5 clients at once: alice, bob, carol, dave, erin" in lines
        assert "erin: get erin:1 -> None" in lines
        assert any(
            line.startswith("[kv] terminate(reason='normal'): handled 32 calls and 5 casts")
            for line in lines
        )


class TestUrlChecker:
    def test_slow_urls_time_out_and_the_stream_beats_sequential_checks(self) -> None:
        out = run_python("examples/url_checker.py").stdout
        lines = out.splitlines()

        assert lines[0] == "checking 20 URLs (seed 7), at most 5 at a time, 0.3s each"
        results = [line for line in lines if "https://service-" in line]
        assert len(results) == 20
        urls = re.findall(r"https://service-(\d\d)", "\n".join(results))
        assert urls == [f"{n:02d}" for n in range(1, 21)], "results are not in input order"
        assert sum(line.endswith("('exit', 'timeout')") for line in results) == 3
        assert sum(line.endswith("('ok', ('down', 'connection refused'))") for line in results) == 3
        assert sum("('ok', ('up', '200 OK after " in line for line in results) == 14
        assert "14 up, 3 down, 3 timed out (killed after 0.3s)" in lines

        timing = re.search(r"wall time (\d+\.\d+)s .* one after another: (\d+\.\d+)s", out)
        assert timing is not None, out
        wall, sequential = float(timing.group(1)), float(timing.group(2))
        assert sequential > 3.0  # the three hanging URLs alone sleep 1s each
        assert wall < sequential / 2, f"the stream took {wall}s, sequential is {sequential}s"

    def test_same_seed_gives_the_same_results(self) -> None:
        def results(out: str) -> list[str]:
            return [
                re.sub(r"^\s*\[[ \d.]+s\]", "", line)
                for line in out.splitlines()
                if "https://service-" in line
            ]

        first = results(run_python("examples/url_checker.py", "--seed", "3").stdout)
        second = results(run_python("examples/url_checker.py", "--seed", "3").stdout)
        assert first == second
        assert len(first) == 20


class TestPingPong:
    def test_players_take_turns_and_main_sees_both_downs(self) -> None:
        out = run_python("examples/ping_pong.py", "--rounds", "3").stdout
        expected = ["main: spawning pong and ping for 3 rounds, monitoring both"]
        for n in (1, 2, 3):
            expected += [
                f"  ping: sending ping {n}",
                f"    pong: got ping {n}, answering",
                f"  ping: got ('pong', {n})",
            ]
        expected += [
            "  ping: last round played; left in my mailbox: ('note', 'from main: good game!')",
            "    pong: got 'stop'; returning, so my exit reason is 'normal'",
            "main: Down from ping <pid>: reason 'normal'",
            "main: Down from pong <pid>: reason 'normal'",
            "main: is_alive(ping) -> False, is_alive(pong) -> False",
        ]
        assert without_pids(out).splitlines() == expected

    def test_default_is_five_rounds(self) -> None:
        lines = run_python("examples/ping_pong.py").stdout.splitlines()
        assert "  ping: got ('pong', 5)" in lines
        assert "  ping: sending ping 6" not in lines


class TestDemoCommand:
    def test_demo_registry_names_the_demos_main_one_first(self) -> None:
        assert [name for name, _ in otpy.demos.list_demos()] == [
            "supervision",
            "ping_pong",
            "kv_store",
            "url_checker",
            "rate_limit",
            "pool",
            "pipeline",
            "word_count",
            "log_aggregation",
        ]
        for name, (module, description) in otpy.demos.DEMOS.items():
            assert (ROOT / "otpy" / "demos" / f"{module}.py").is_file(), name
            assert (ROOT / "examples" / f"{name}.py").is_file(), name
            assert description

    @pytest.mark.parametrize("error", [KeyError, ValueError])
    def test_unknown_demo_raises_an_error_naming_the_known_ones(
        self, error: type[Exception]
    ) -> None:
        with pytest.raises(
            error, match=r"^there is no demo named 'nope'; choose one of: supervision, ping_pong"
        ):
            otpy.demos.run("nope", [])

    @pytest.mark.skipif(
        not (ROOT / "otpy" / "__main__.py").is_file(), reason="python -m otpy is not written yet"
    )
    def test_python_m_otpy_demo_lists_the_demos(self) -> None:
        out = run_python("-m", "otpy", "demo").stdout
        for name, description in otpy.demos.list_demos():
            assert name in out
            assert description in out

    @pytest.mark.skipif(
        not (ROOT / "otpy" / "__main__.py").is_file(), reason="python -m otpy is not written yet"
    )
    def test_python_m_otpy_demo_runs_a_demo_with_its_arguments(self) -> None:
        out = run_python("-m", "otpy", "demo", "ping_pong", "--rounds", "2").stdout
        assert "  ping: got ('pong', 2)" in out
        assert "ping 3" not in out


class TestSupervision:
    SHORT = ("--events", "4", "--pause", "0.1")

    def test_chaos_kills_are_restarted_and_the_billing_failure_climbs_to_root(self) -> None:
        out = without_pids(run_python("examples/supervision.py", *self.SHORT).stdout)
        lines = out.splitlines()

        assert lines[0] == "otpy supervision demo: seed 1, 4 chaos events"
        start = lines.index(
            "started the tree, 3 sessions; 20 orders placed as tasks: 5 on partition 0, "
            "4 on partition 1, 5 on partition 2, 6 on partition 3"
        )
        assert lines[start + 1 : start + 18] == [
            "  root                 supervisor             one_for_one  <pid>",
            "  +-- registry         registry   restarts=0  entries=3    <pid>",
            "  +-- sessions         supervisor restarts=0               <pid>",
            "  |   +-- alice        session    restarts=0               <pid>",
            "  |   +-- bob          session    restarts=0               <pid>",
            "  |   `-- carol        session    restarts=0               <pid>",
            "  +-- workers          supervisor restarts=0               <pid>",
            "  |   +-- 0            counter    restarts=0  count=5      <pid>",
            "  |   +-- 1            counter    restarts=0  count=4      <pid>",
            "  |   +-- 2            counter    restarts=0  count=5      <pid>",
            "  |   `-- 3            counter    restarts=0  count=6      <pid>",
            "  +-- tasks            supervisor restarts=0               <pid>",
            "  `-- billing          supervisor restarts=0               <pid>",
            "      +-- invoicer     worker     restarts=0               <pid>",
            "      `-- ledger       worker     restarts=0               <pid>",
            "",
            "chaos: 4 events, 0.1s apart; each places 4 orders, then kills a victim drawn with "
            "random.Random(1)",
        ]

        # Four events, each a kill followed by its supervisor's restart.
        events = [i for i, line in enumerate(lines) if line.startswith("[event ")]
        assert [lines[i].split("]")[0] for i in events] == [f"[event {n}" for n in (1, 2, 3, 4)]
        for i in events:
            assert lines[i + 1].startswith("  chaos kills "), lines[i + 1]
            assert lines[i + 2].startswith("  log: "), lines[i + 2]
            assert re.match(r"  \w+ restarted '?\w+'? \(restart \d+\): <pid>", lines[i + 3]), lines[
                i + 3
            ]
        assert sum(line.startswith("  |   `-- chaos ") for line in lines) == 4

        # The finale: two restarts of the ledger, then billing gives up and root restarts it.
        finale = lines[lines.index(next(x for x in lines if x.startswith("finale:"))) :]
        assert finale[0] == (
            "finale: 'billing' allows 2 restarts within 2.0s; its ledger gets 3 bad entries in a row"
        )
        expected = [
            "[crash 1] cast ('post', 'ten euros') to ledger <pid>: handle_cast raises",
            "  billing restarted ledger (restart 1): <pid>",
            "[crash 2] cast ('post', 'ten euros') to ledger <pid>: handle_cast raises",
            "  billing restarted ledger (restart 2): <pid>",
            "[crash 3] cast ('post', 'ten euros') to ledger <pid>: handle_cast raises",
            "  log: Supervisor 'billing' <pid>: child 'ledger' (<pid>) exited: "
            "TypeError(\"not an amount: 'ten euros'\"); that reaches its restart intensity "
            "(2 restarts within 2.0s): shutting down",
            "  billing gave up: restart 3 within 2.0s would be more than max_restarts=2, "
            "so it stopped invoicer and exited with 'shutdown'",
            "  the failure climbed to root, which restarted billing (restart 1): <pid>, "
            "with a fresh invoicer and ledger",
            "  `-- billing          supervisor restarts=1               <pid>",
            "      +-- invoicer     worker     restarts=0               <pid>",
            "      `-- ledger       worker     restarts=0               <pid>",
            "stopping root: its children stop in reverse start order",
            "  down: billing ('shutdown'), tasks ('shutdown'), workers ('shutdown'), "
            "sessions ('shutdown'), registry ('shutdown')",
            "  root down ('normal')",
        ]
        positions = [finale.index(line) for line in expected]
        assert positions == sorted(positions), "the finale's lines are out of order"
        assert finale[-1] == "  root down ('normal')"
        assert sum("terminating in handle_cast" in line for line in finale) == 3

    def test_the_same_seed_gives_the_same_run_apart_from_pids(self) -> None:
        args = ("examples/supervision.py", "--seed", "5", "--events", "6", "--pause", "0.05")
        first = without_pids(run_python(*args).stdout)
        second = without_pids(run_python(*args).stdout)
        assert first == second
        assert first.count("  chaos kills ") == 6

    def test_another_seed_picks_other_victims(self) -> None:
        def victims(seed: str) -> list[str]:
            out = run_python("examples/supervision.py", "--seed", seed, *self.SHORT).stdout
            return [line for line in without_pids(out).splitlines() if "chaos kills" in line]

        assert victims("1") != victims("2")

    @pytest.mark.skipif(
        not (ROOT / "otpy" / "__main__.py").is_file(), reason="python -m otpy is not written yet"
    )
    def test_python_m_otpy_demo_supervision_runs_it(self) -> None:
        out = run_python(
            "-m", "otpy", "demo", "supervision", "--events", "1", "--pause", "0"
        ).stdout
        assert "[event 1] " in out
        assert "[event 2] " not in out
        assert out.splitlines()[-1] == "  root down ('normal')"
