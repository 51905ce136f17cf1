"""Broadway-style pipelines: at-least-once, back-pressured, supervised (see ``Pipeline``).

The broker producers are imported lazily, so ``import otpy.pipeline`` needs
no broker client: ``pl.RedisStreamProducer`` needs ``otpy[redis]``,
``pl.RabbitMQProducer`` needs ``otpy[rabbitmq]``.
"""

from __future__ import annotations

from typing import Any

from ._message import (
    NOOP,
    Ack,
    Acknowledger,
    BatchInfo,
    Message,
    NoopAcknowledger,
    ack_immediately,
    ack_messages,
)
from ._pipeline import Pipeline
from ._producer import DummyProducer

__all__ = [
    "NOOP",
    "Ack",
    "Acknowledger",
    "BatchInfo",
    "DummyProducer",
    "Message",
    "NoopAcknowledger",
    "Pipeline",
    "RabbitMQProducer",
    "RedisStreamProducer",
    "ack_immediately",
    "ack_messages",
]

_LAZY = {
    "RedisStreamProducer": ("._redis", "RedisStreamProducer"),
    "RabbitMQProducer": ("._rabbitmq", "RabbitMQProducer"),
}


def __getattr__(name: str) -> Any:
    """Import a broker producer (and its client library) on first use."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module, __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'otpy.pipeline' has no attribute {name!r}")
