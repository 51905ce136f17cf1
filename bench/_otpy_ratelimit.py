"""W11 on otpy: an ``otpy.ratelimit.TokenBucket``, addressed by its pid.

``TokenBucket.start_link(rate=rate, capacity=capacity)``, linked to the
benchmark's process; the call is ``TokenBucket.try_acquire(bucket, tokens)``
itself (bound to the pid with ``functools.partial``, so the hot loop times
otpy and nothing of ours). Only the public API is used.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from otpy.ratelimit import TokenBucket

from ._contender import TryAcquire


@contextmanager
def bucket(rate: float, capacity: float) -> Iterator[TryAcquire]:
    """W11 on otpy: a full bucket; ``TokenBucket.stop`` on the way out."""
    pid = TokenBucket.start_link(rate=rate, capacity=capacity)
    try:
        yield functools.partial(TokenBucket.try_acquire, pid)
    finally:
        TokenBucket.stop(pid)
