"""The benchmark's ``--base PATH``: an older otpy as the extra contender ``otpy@base``.

The base here is ``git archive HEAD`` of this repository's ``otpy/`` (the
tests need an otpy package, not a different one). Most tests run
``python -m bench`` in a subprocess; ``test_base_loads_beside_the_current_otpy``
loads the base in this process and removes it again afterwards.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import otpy

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 90.0
"""Generous: the other engineers share the two cores."""

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bench  # noqa: E402  (the repository root is on sys.path only from here)
import bench._otpy  # noqa: E402
from bench import _report  # noqa: E402
from bench._base import PACKAGE, BaseError, load_base  # noqa: E402
from bench._contender import BASE_NAME, columns, load  # noqa: E402
from bench._runner import Results  # noqa: E402
from bench._workloads import QUICK, Case, build_cases, calls  # noqa: E402


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``git archive HEAD``'s ``otpy/`` package."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    if head.returncode != 0:
        pytest.skip("the repository is not a git checkout")
    target = tmp_path_factory.mktemp("otpy-base")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD", "otpy"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    assert (target / "otpy" / "__init__.py").is_file()
    return target


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )


def table(stdout: str) -> tuple[list[str], dict[str, list[str]]]:
    """The text table's header and rows (by workload id), cells split on 2+ spaces."""
    lines = stdout.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("workload"))
    split = re.compile(r"\s{2,}")
    header = split.split(lines[header_at].strip())
    rows = {}
    for line in lines[header_at + 2 :]:
        if line.startswith("* "):
            break
        cells = split.split(line.strip())
        rows[cells[0].split()[0]] = cells
    return header, rows


def is_number(cell: str) -> bool:
    return re.fullmatch(r"[\d.,]+[kM]?( \(.*\))?", cell) is not None


def test_quick_run_with_base_has_the_column_and_the_ratio(runtime: otpy.Runtime, base: Path):
    done = run_bench("bench", "--quick", "--only", "W1", "--base", str(base))
    assert done.returncode == 0, done.stderr
    header, rows = table(done.stdout)
    assert header[2:4] == ["otpy", BASE_NAME]
    assert f"otpy/{BASE_NAME}" in header
    w1 = rows["W1"]
    assert is_number(w1[header.index(BASE_NAME)]), w1
    assert is_number(w1[header.index(f"otpy/{BASE_NAME}")]), w1
    assert f"{BASE_NAME} {otpy.__version__} (not a git checkout)" in done.stdout
    assert f"W1 {BASE_NAME}:" in done.stderr  # its measurement's progress line


def test_without_base_nothing_changes(runtime: otpy.Runtime):
    done = run_bench("bench", "--quick", "--only", "W1")
    assert done.returncode == 0, done.stderr
    header, _ = table(done.stdout)
    assert BASE_NAME not in header
    assert not any(BASE_NAME in cell for cell in header)
    assert BASE_NAME not in done.stdout


def test_a_base_without_an_otpy_package_is_an_error_naming_the_path(
    runtime: otpy.Runtime, tmp_path: Path
):
    empty = tmp_path / "no-otpy-here"
    empty.mkdir()
    done = run_bench("bench", "--quick", "--only", "W1", "--base", str(empty))
    assert done.returncode == 2
    assert str(empty / "otpy" / "__init__.py") in done.stderr
    assert done.stdout == ""


def test_a_base_importing_otpy_by_absolute_name_inside_a_function_is_refused(
    runtime: otpy.Runtime, base: Path, tmp_path: Path
):
    shutil.copytree(base / "otpy", tmp_path / "otpy")
    bad = tmp_path / "otpy" / "_bad_lazy_import.py"
    bad.write_text("def later():\n    import otpy.flow\n\n    return otpy.flow\n")
    done = run_bench("bench", "--quick", "--only", "W1", "--base", str(tmp_path))
    assert done.returncode == 2
    assert f"{bad}:2" in done.stderr


def test_memory_probe_loads_the_base_in_its_fresh_interpreter(runtime: otpy.Runtime, base: Path):
    done = run_bench("bench._memory", BASE_NAME, "100", str(base))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["kb_per_process"] >= 0


@pytest.fixture
def forget_base() -> Iterator[None]:
    """Remove what ``load_base`` added to ``sys.modules`` once the test is over."""
    yield
    for name in list(sys.modules):
        if name == PACKAGE or name.startswith(PACKAGE + ".") or name.endswith("_at_base"):
            del sys.modules[name]


def otpy_modules() -> dict[str, object]:
    return {
        name: module
        for name, module in sys.modules.items()
        if name == "otpy" or name.startswith("otpy.")
    }


def test_base_loads_beside_the_current_otpy(runtime: otpy.Runtime, base: Path, forget_base):
    before = otpy_modules()
    contender = load(BASE_NAME, str(base))

    # The current otpy and the bench's own otpy contender are untouched.
    assert otpy_modules() == before
    assert all(sys.modules[name] is module for name, module in before.items())
    assert bench._otpy is sys.modules["bench._otpy"]
    assert bench._otpy.otpy is otpy
    # No module of the base sits under an ``otpy.*`` name.
    for module in otpy_modules().values():
        assert not str(getattr(module, "__file__", "") or "").startswith(str(base))

    assert (contender.name, contender.source) == (BASE_NAME, str(base.resolve()))
    assert contender.version == f"{otpy.__version__} (not a git checkout)"
    copy = sys.modules["bench._otpy_at_base"]
    assert copy.otpy is sys.modules[PACKAGE]
    assert Path(sys.modules[PACKAGE].__file__) == base.resolve() / "otpy" / "__init__.py"
    session = contender.session()
    assert Path(type(session).__enter__.__code__.co_filename).is_relative_to(base.resolve())
    assert contender.missing == {}

    # A function-level relative import in the base resolves within the base: what
    # ``from ._router import partition_key`` inside otpy/pipeline/_stages.py does.
    stages = importlib.import_module(f"{PACKAGE}.pipeline._stages")
    lazily = importlib.__import__("_router", vars(stages), None, ("partition_key",), 1)
    assert lazily.__name__ == f"{PACKAGE}.pipeline._router"
    assert Path(lazily.__file__).is_relative_to(base.resolve())

    # It runs a workload on its own Runtime, beside the test's (whose fixture
    # checks that no thread is left behind).
    assert calls(contender, 50) > 0

    with pytest.raises(BaseError, match="one base per process"):
        load_base(ROOT)


def test_the_base_ratio_shows_the_spread_of_round_by_round_ratios(runtime: otpy.Runtime):
    (w1,) = [case for case in build_cases(QUICK) if case.key == "W1"]
    results = Results()
    results.samples[("W1", "otpy")] = [2.0, 4.0, 3.0]
    results.samples[("W1", BASE_NAME)] = [2.0, 2.0, 3.0]
    results.samples[("W1", "threads")] = [1.0, 1.0, 1.0]
    names = columns(True)
    head = _report.header(names)
    (row,) = _report.rows([w1], [], results, {"pykka": "not installed"}, names)
    cells = dict(zip(head, row, strict=True))
    assert cells[BASE_NAME] == "2"
    assert cells[f"otpy/{BASE_NAME}"] == "1.5 (1-2)"  # median 3 ÷ median 2; ratios 1, 2, 1
    assert cells["otpy/threads"] == "3"
    assert (cells["pykka"], cells["otpy/pykka"]) == ("n/a", "-")
    assert head.index(f"otpy/{BASE_NAME}") < head.index("otpy/pykka") < head.index("otpy/threads")
    assert _report.header(columns(False)) == _report.HEADER


def test_a_thread_left_running_after_a_measurement_is_reported(
    runtime: otpy.Runtime, monkeypatch: pytest.MonkeyPatch
):
    from bench import _runner

    monkeypatch.setattr(_runner, "THREAD_GRACE", 0.05)
    release = threading.Event()
    lingering = threading.Thread(target=release.wait, name="bench-test-lingering")

    def measure(contender: object) -> float:
        lingering.start()
        return 1.0

    case = Case(key="W1", title="leaves a thread", unit=build_cases(QUICK)[0].unit, measure=measure)
    contender = load("threads")
    lines: list[str] = []
    try:
        results = _runner.run_rounds(
            [case], [contender], 1, 60.0, on_hang=lambda r: None, progress=lines.append
        )
    finally:
        release.set()
        lingering.join()
    assert results.samples[("W1", "threads")] == [1.0]
    assert "bench-test-lingering" in results.leftovers[("W1", "threads")]
    assert any("WARNING" in line and "bench-test-lingering" in line for line in lines)
