"""W10 on otpy: an ``otpy.pool.Pool`` of trivial GenServer workers.

``Pool.start_link(_Conn.child_spec(), size=size, max_overflow=0)``, linked to
the benchmark's process; the transaction is ``Pool.transaction(pool, fn)``
itself (bound to the pool with ``functools.partial``, so the hot loop times
otpy and nothing of ours). Only the public API is used.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import otpy
from otpy.pool import Pool

from ._contender import Transaction


class _Conn(otpy.GenServer):
    """W10's worker: a GenServer that does nothing (the transactions never call it)."""


@contextmanager
def worker_pool(size: int) -> Iterator[Transaction]:
    """W10 on otpy: ``size`` workers, no overflow; ``Pool.stop`` on the way out."""
    pool = Pool.start_link(_Conn.child_spec(), size=size, max_overflow=0)
    try:
        yield functools.partial(Pool.transaction, pool)
    finally:
        Pool.stop(pool)
