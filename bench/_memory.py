"""W4's memory figure: RSS growth per process while all N processes are alive.

The measurement runs in a fresh interpreter (``python -m bench._memory NAME N [BASE]``)
because, in the benchmark's own process, earlier rounds leave freed memory in
the allocators that a later round reuses without growing the RSS. The child
runs W4 itself (``spawn_call_stop``), reads the resident set size from
``/proc/self/statm`` just before the servers start and again once all of them
are alive, and prints the difference divided by N in KB. RSS counts
everything a process costs: Python objects, the allocator's overhead, and for
thread-per-process contenders the touched part of each thread's stack.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

METHOD = "RSS delta (/proc/self/statm) in a fresh interpreter, read while all N processes are alive"

_STATM = Path("/proc/self/statm")
_REPO_ROOT = Path(__file__).resolve().parent.parent
_CHILD_TIMEOUT = 600.0


class MemoryProbeError(RuntimeError):
    """The child interpreter that measures memory failed."""


def rss_bytes() -> int:
    """Return this process's resident set size in bytes.

    Raises:
        OSError: there is no ``/proc/self/statm`` (not Linux).
    """
    resident_pages = int(_STATM.read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def kb_per_process(contender: str, n: int, source: str | None = None) -> float:
    """Run W4 with ``n`` servers of ``contender`` in a fresh interpreter; KB of RSS per server.

    ``source`` is the contender's ``source`` (``otpy@base``: the base's PATH), or None.

    Raises:
        MemoryProbeError: the child failed or printed no figure.
    """
    if not _STATM.exists():
        raise MemoryProbeError("memory is read from /proc/self/statm, which only Linux has")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    child = subprocess.run(
        [sys.executable, "-m", "bench._memory", contender, str(n), *filter(None, [source])],
        cwd=_REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT,
        check=False,
    )
    if child.returncode != 0:
        raise MemoryProbeError(
            f"the memory probe for {contender} with {n:,} servers exited with "
            f"{child.returncode}:\n{child.stderr.strip()}"
        )
    try:
        return float(json.loads(child.stdout.strip().splitlines()[-1])["kb_per_process"])
    except (IndexError, KeyError, ValueError) as exc:
        raise MemoryProbeError(
            f"the memory probe printed no figure: {child.stdout!r}; stderr: {child.stderr!r}"
        ) from exc


def _measure_here(contender_name: str, n: int, source: str | None) -> float:
    from ._contender import load
    from ._workloads import spawn_call_stop

    contender = load(contender_name, source)
    readings: dict[str, int] = {}

    def probe(moment: str) -> None:
        if moment == "baseline":
            gc.collect()
        readings[moment] = rss_bytes()

    spawn_call_stop(contender, n, probe)
    return (readings["all alive"] - readings["baseline"]) / n / 1024


def main(argv: list[str]) -> int:
    """The child's entry point: ``python -m bench._memory CONTENDER N [BASE]``."""
    if len(argv) not in (2, 3):
        print("usage: python -m bench._memory CONTENDER N [BASE]", file=sys.stderr)
        return 2
    source = argv[2] if len(argv) == 3 else None
    print(json.dumps({"kb_per_process": _measure_here(argv[0], int(argv[1]), source)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
