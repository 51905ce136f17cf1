"""Shared helpers for tests against real brokers (Redis, RabbitMQ) and PostgreSQL.

A broker test calls :func:`require_redis` or :func:`require_rabbitmq` (or uses the
``redis_url`` / ``rabbitmq_url`` fixtures): when the broker does not answer the test is
skipped with a hint on how to start it, unless the environment variable
``OTPY_REQUIRE_BROKERS=1`` is set (CI), in which case the test fails instead.
:func:`require_postgres` does the same for PostgreSQL (database ``test``, user
``postgres``, trusted local connections), and also when psycopg is not installed.

Example::

    from brokers import require_redis

    def test_something(runtime):
        url = require_redis()
        ...
"""

from __future__ import annotations

import os
import socket

import pytest

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"

RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_PORT = 5672
RABBITMQ_URL = f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/%2F"

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_DSN = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"

__all__ = [
    "POSTGRES_DSN",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "RABBITMQ_HOST",
    "RABBITMQ_PORT",
    "RABBITMQ_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_URL",
    "brokers_required",
    "rabbitmq_url",
    "redis_url",
    "require_postgres",
    "require_rabbitmq",
    "require_redis",
]

# Answers are cached per test session: a broker that answered once is assumed up, and one
# that did not is not probed again for every test (each probe could wait a second).
_answers: dict[str, bool] = {}
_why_not: dict[str, str | None] = {}


def brokers_required() -> bool:
    """Whether a missing broker fails the test (``OTPY_REQUIRE_BROKERS=1``) instead of skipping it."""
    return os.environ.get("OTPY_REQUIRE_BROKERS", "").strip() not in ("", "0", "false", "no")


def _missing(reason: str) -> None:
    if brokers_required():
        pytest.fail(f"{reason} (OTPY_REQUIRE_BROKERS is set)", pytrace=False)
    pytest.skip(reason)


def _redis_answers() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1.0) as sock:
            sock.settimeout(1.0)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _rabbitmq_answers() -> bool:
    try:
        with socket.create_connection((RABBITMQ_HOST, RABBITMQ_PORT), timeout=1.0) as sock:
            sock.settimeout(1.0)
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            # A broker answers the protocol header with a Connection.Start method frame.
            return sock.recv(1)[:1] == b"\x01"
    except OSError:
        return False


def _postgres_answers() -> str | None:
    """None if PostgreSQL answers at POSTGRES_DSN, else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed: pip install -e '.[test]'"
    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"PostgreSQL does not answer at {POSTGRES_DSN} ({first}): start it with "
            "`service postgresql start` (database test, user postgres, trust on 127.0.0.1)"
        )
    return None


def require_redis() -> str:
    """The Redis URL to use; skips (or fails, see module doc) when Redis does not answer."""
    if "redis" not in _answers:
        _answers["redis"] = _redis_answers()
    if not _answers["redis"]:
        _missing(
            f"Redis is not running on {REDIS_HOST}:{REDIS_PORT}: "
            "start it with `redis-server --daemonize yes`"
        )
    return REDIS_URL


def require_rabbitmq() -> str:
    """The RabbitMQ URL to use; skips (or fails, see module doc) when RabbitMQ does not answer."""
    if "rabbitmq" not in _answers:
        _answers["rabbitmq"] = _rabbitmq_answers()
    if not _answers["rabbitmq"]:
        _missing(
            f"RabbitMQ is not running on {RABBITMQ_HOST}:{RABBITMQ_PORT}: "
            "start it with `rabbitmq-server -detached`"
        )
    return RABBITMQ_URL


def require_postgres() -> str:
    """The PostgreSQL DSN to use; skips (or fails, see module doc) when it does not answer."""
    if "postgres" not in _answers:
        _why_not["postgres"] = _postgres_answers()
        _answers["postgres"] = _why_not["postgres"] is None
    if not _answers["postgres"]:
        _missing(_why_not["postgres"] or "PostgreSQL does not answer")
    return POSTGRES_DSN


@pytest.fixture
def redis_url() -> str:
    """Fixture form of :func:`require_redis`."""
    return require_redis()


@pytest.fixture
def rabbitmq_url() -> str:
    """Fixture form of :func:`require_rabbitmq`."""
    return require_rabbitmq()
