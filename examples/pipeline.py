"""Orders through an ``otpy.pipeline`` into SQLite: at-least-once delivery, idempotent upserts.

A generated feed of orders (JSON, from ``--seed``; some invalid on purpose, some resent) goes
from a producer through processors that parse and validate each order (the invalid ones fail
and go through ``handle_failed``) into batches that are written with idempotent upserts
(``INSERT ... ON CONFLICT (id) DO UPDATE``) through a pool of SQLite connections. The
producer is in-process by default, or a Redis stream or a RabbitMQ queue on a real broker.
The demo prints its progress and a summary that checks the invariants: the table holds the
distinct valid orders, the failures are the seeded ones, and every message was acked once.

Run it from the repository root (with otpy installed, e.g. ``pip install -e '.[redis,rabbitmq]'``)::

    python examples/pipeline.py
    python examples/pipeline.py --orders 5000 --seed 3
    python examples/pipeline.py --redis redis://127.0.0.1:6379/0
    python examples/pipeline.py --rabbitmq amqp://guest:guest@127.0.0.1:5672/%2F

The code, with a longer explanation, is in ``otpy/demos/pipeline.py``;
``python -m otpy demo pipeline`` runs the same demo. ``examples/orders_to_postgres.py`` is
the same pipeline writing into PostgreSQL.
"""

import sys

from otpy.demos.pipeline import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
