"""Fetch 40 URLs from a misbehaving local server through a token bucket, retrying selectively.

A stdlib ``http.server`` on 127.0.0.1 answers 500, 429 (with ``Retry-After``), 404, 400 and
503 on purpose, and stalls some requests past the client's timeout. The client fetches every
URL with ``otpy.Task.async_stream`` (8 at a time), each attempt behind an
``otpy.ratelimit.TokenBucket`` (25/s, bursts of 5), and retries with ``otpy.retry.call``: 5xx,
timeouts and refused connections with backoff, 429 after its ``Retry-After``, other 4xx never.
It prints each URL's story ("500 -> retried 2x -> 200", "404 -> not retried"), the counts a
telemetry handler saw, and the achieved request rate next to what the bucket allows. The same
``--seed`` gives the same stories; only the timings vary.

Run it from the repository root (with otpy installed, e.g. ``pip install -e .``)::

    python examples/rate_limit.py
    python examples/rate_limit.py --seed 3 --rate 10 --capacity 2

The code, with a longer explanation, is in ``otpy/demos/rate_limit.py``;
``python -m otpy demo rate_limit`` runs the same demo.
"""

import sys

from otpy.demos.rate_limit import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
