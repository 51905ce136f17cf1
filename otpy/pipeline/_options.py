"""A pipeline's options: Broadway's names and defaults, checked before anything starts.

``Pipeline.start_link`` (and ``child_spec``) pass their keywords to
:func:`validate`, which returns a frozen :class:`Config` with every default
filled in, or raises ``TypeError`` (a value of the wrong type) or
``ValueError`` (an unknown or missing key, a value out of range) whose
message names the option's path, what is allowed and what was given::

    ValueError: pipeline option processors['default']['max_demand'] must be an int >= 1; got 0

The options (defaults in brackets):

* ``name`` (required): a non-empty ``str``; the pipeline registers under it
  and names its processes ``"<name>.Producer_0"``, ``"<name>.Processor_default_0"``...
* ``producer`` (required): ``module`` (required) ``(cls, options)`` where
  ``cls`` is an ``otpy.stage.Producer`` subclass and ``options`` a dict;
  ``concurrency`` [1]; ``rate_limiting`` [None]: ``{"allowed_messages":
  int >= 1, "interval": seconds > 0}``, both required.
* ``processors`` (required): exactly one key (a ``str``, usually
  ``"default"``) whose value is a dict: ``concurrency`` [2 * CPU count],
  ``max_demand`` [10], ``min_demand`` [max_demand // 2, below max_demand],
  ``retry`` [None]: an ``otpy.retry.RetryPolicy``.
* ``batchers`` [None]: a dict from batcher names (``str``) to dicts:
  ``concurrency`` [1], ``batch_size`` [100], ``batch_timeout`` [1.0 s, > 0],
  ``max_demand`` [batch_size]: how many messages the batcher asks each
  processor for.
* ``context`` [None]: any value, handed to every callback.
* ``partition_by`` [None]: a function ``message -> int``.
* ``shutdown`` [30.0]: seconds >= 0 the drain may take (None: no bound).
* ``max_restarts`` [3] and ``max_seconds`` [5.0]: the restart intensity of
  the pipeline's supervisors, as Broadway's.
* ``resubscribe_interval`` [0.1]: seconds a stage waits before subscribing
  again to a stage that went down (Broadway's, in seconds).

A producer class may take part in the checks: if it has a callable
``validate_options`` attribute (a staticmethod or classmethod), it is called
with the producer's options (plus the internal options below that it asks
for) and what it raises is raised here. A producer class that sets
``pipeline_options`` (a set of names) gets those internal options added to
its options dict: ``"_index"`` (its index, 0 .. concurrency-1),
``"_pipeline"`` (the pipeline's name), ``"_concurrency"`` (how many
producers) and ``"_default_prefetch"`` (processors' concurrency *
max_demand, plus each batcher's concurrency * batch_size: what the stages can
hold at once).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..retry import RetryPolicy
from ..stage import Producer

__all__ = ["INTERNAL_OPTIONS", "BatcherConfig", "Config", "validate"]

INTERNAL_OPTIONS = frozenset({"_index", "_pipeline", "_concurrency", "_default_prefetch"})
"""The internal options a producer class may ask for with ``pipeline_options``."""

_TOP = (
    "name",
    "producer",
    "processors",
    "batchers",
    "context",
    "partition_by",
    "shutdown",
    "max_restarts",
    "max_seconds",
    "resubscribe_interval",
)
_PRODUCER = ("module", "concurrency", "rate_limiting")
_RATE_LIMITING = ("allowed_messages", "interval")
_PROCESSOR = ("concurrency", "max_demand", "min_demand", "retry")
_BATCHER = ("concurrency", "batch_size", "batch_timeout", "max_demand")


@attrs.frozen
class BatcherConfig:
    """One batcher's options, checked."""

    name: str
    concurrency: int
    batch_size: int
    batch_timeout: float
    max_demand: int


@attrs.frozen
class Config:
    """A pipeline's options, checked and with every default filled in."""

    name: str
    module: type[Any]
    producer_cls: type[Producer]
    producer_options: dict[str, Any] = attrs.field(eq=False)
    producer_concurrency: int
    rate_limiting: tuple[int, float] | None
    processor_key: str
    processor_concurrency: int
    max_demand: int
    min_demand: int
    retry: RetryPolicy | None
    batchers: tuple[BatcherConfig, ...]
    context: Any = attrs.field(eq=False)
    partition_by: Callable[[Any], int] | None
    shutdown: float | None
    max_restarts: int
    max_seconds: float
    resubscribe_interval: float

    def producer_init_options(self, index: int) -> dict[str, Any]:
        """The options dict the producer of ``index`` is started with (a fresh copy)."""
        options = dict(self.producer_options)
        wanted = getattr(self.producer_cls, "pipeline_options", None) or ()
        internal = {
            "_index": index,
            "_pipeline": self.name,
            "_concurrency": self.producer_concurrency,
            # What the stages can hold at once: the processors' demand and every open
            # batch (a batch of batch_size could never fill with less in flight).
            "_default_prefetch": self.processor_concurrency * self.max_demand
            + sum(b.concurrency * b.batch_size for b in self.batchers),
        }
        for key in wanted:
            if key in internal:
                options[key] = internal[key]
        return options


# -- checks ------------------------------------------------------------------------


def _path(*keys: object) -> str:
    head, *rest = keys
    return str(head) + "".join(f"[{key!r}]" for key in rest)


def _dict(
    value: object, path: str, allowed: tuple[str, ...], required: tuple[str, ...]
) -> dict[str, Any]:
    what = f"pipeline option {path}" if path else "pipeline options"
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a dict with keys {', '.join(allowed)}; got {value!r}")
    unknown = [key for key in value if key not in allowed]
    if unknown:
        raise ValueError(
            f"{what} {'have' if not path else 'has'} unknown key(s) "
            f"{', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"
        )
    missing = [key for key in required if key not in value]
    if missing:
        raise ValueError(
            f"{what} {'need' if not path else 'needs'} {', '.join(map(repr, missing))}; "
            f"got {dict(value)!r}"
        )
    return dict(value)


def _int(value: object, path: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"pipeline option {path} must be an int >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"pipeline option {path} must be an int >= {minimum}; got {value!r}")
    return value


def _seconds(value: object, path: str, *, positive: bool, allow_none: bool = False) -> float | None:
    allowed = ("seconds > 0" if positive else "seconds >= 0") + (" or None" if allow_none else "")
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"pipeline option {path} must be {allowed}; got {value!r}")
    if math.isnan(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"pipeline option {path} must be {allowed}; got {value!r}")
    if math.isinf(value):
        if allow_none:
            return None
        raise ValueError(f"pipeline option {path} must be {allowed} (finite); got {value!r}")
    return float(value)


def _name(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"pipeline option {path} must be a non-empty str; got {value!r}")
    if not value:
        raise ValueError(f"pipeline option {path} must be a non-empty str; got ''")
    return value


def check_rate_limiting(allowed_messages: object, interval: object, path: str) -> tuple[int, float]:
    """Check a rate limit; raise TypeError/ValueError naming ``path``."""
    allowed = _int(allowed_messages, f"{path}['allowed_messages']", 1)
    seconds = _seconds(interval, f"{path}['interval']", positive=True)
    assert seconds is not None
    return allowed, seconds


def _producer(
    value: object,
) -> tuple[type[Producer], dict[str, Any], int, tuple[int, float] | None]:
    producer = _dict(value, "producer", _PRODUCER, ("module",))
    module = producer["module"]
    if not (isinstance(module, tuple) and len(module) == 2):
        raise TypeError(
            "pipeline option producer['module'] must be a pair (cls, options) with an "
            f"otpy.stage.Producer subclass and its options dict; got {module!r}"
        )
    cls, options = module
    if not (isinstance(cls, type) and issubclass(cls, Producer)):
        raise TypeError(
            "pipeline option producer['module'] needs an otpy.stage.Producer subclass first; "
            f"got {cls!r}"
        )
    if not isinstance(options, dict):
        raise TypeError(
            f"pipeline option producer['module'] needs the producer's options as a dict second; "
            f"got {options!r}"
        )
    concurrency = _int(producer.get("concurrency", 1), "producer['concurrency']", 1)
    limiting = producer.get("rate_limiting")
    rate: tuple[int, float] | None = None
    if limiting is not None:
        limits = _dict(limiting, "producer['rate_limiting']", _RATE_LIMITING, _RATE_LIMITING)
        rate = check_rate_limiting(
            limits["allowed_messages"], limits["interval"], "producer['rate_limiting']"
        )
    return cls, options, concurrency, rate


def _processors(value: object) -> tuple[str, int, int, int, RetryPolicy | None]:
    if not isinstance(value, Mapping):
        raise TypeError(
            "pipeline option processors must be a dict with one key, such as "
            f"{{'default': {{'concurrency': 8}}}}; got {value!r}"
        )
    if len(value) != 1:
        raise ValueError(
            "pipeline option processors must have exactly one key (one set of processors), "
            f"such as 'default'; got {list(value)!r}"
        )
    ((key, options),) = value.items()
    _name(key, "processors key")
    processor = _dict(options, _path("processors", key), _PROCESSOR, ())
    concurrency = _int(
        processor.get("concurrency", 2 * (os.cpu_count() or 1)),
        _path("processors", key, "concurrency"),
        1,
    )
    max_demand = _int(processor.get("max_demand", 10), _path("processors", key, "max_demand"), 1)
    min_path = _path("processors", key, "min_demand")
    min_demand = _int(processor.get("min_demand", max_demand // 2), min_path, 0)
    if min_demand >= max_demand:
        raise ValueError(
            f"pipeline option {min_path} must be less than max_demand ({max_demand}); "
            f"got {min_demand!r}"
        )
    policy = processor.get("retry")
    if policy is not None and not isinstance(policy, RetryPolicy):
        raise TypeError(
            f"pipeline option {_path('processors', key, 'retry')} must be an "
            f"otpy.retry.RetryPolicy or None; got {policy!r}"
        )
    return key, concurrency, max_demand, min_demand, policy


def _batchers(value: object) -> tuple[BatcherConfig, ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise TypeError(
            "pipeline option batchers must be a dict from batcher names to their options, "
            f"such as {{'db': {{'batch_size': 100}}}}, or None; got {value!r}"
        )
    batchers = []
    for key, options in value.items():
        _name(key, "batchers key")
        batcher = _dict(options, _path("batchers", key), _BATCHER, ())
        batch_size = _int(batcher.get("batch_size", 100), _path("batchers", key, "batch_size"), 1)
        timeout = _seconds(
            batcher.get("batch_timeout", 1.0),
            _path("batchers", key, "batch_timeout"),
            positive=True,
        )
        assert timeout is not None
        batchers.append(
            BatcherConfig(
                name=key,
                concurrency=_int(
                    batcher.get("concurrency", 1), _path("batchers", key, "concurrency"), 1
                ),
                batch_size=batch_size,
                batch_timeout=timeout,
                max_demand=_int(
                    batcher.get("max_demand", batch_size), _path("batchers", key, "max_demand"), 1
                ),
            )
        )
    return tuple(batchers)


def _module(module: object, has_batchers: bool) -> type[Any]:
    from ._pipeline import Pipeline

    if not (isinstance(module, type) and issubclass(module, Pipeline)) or module is Pipeline:
        raise TypeError(
            f"start a pipeline from a subclass of otpy.pipeline.Pipeline; got {module!r}"
        )
    if module.handle_message is Pipeline.handle_message:
        raise TypeError(
            f"{module.__qualname__} must define handle_message(self, processor, message, context)"
        )
    if has_batchers and module.handle_batch is Pipeline.handle_batch:
        raise TypeError(
            f"{module.__qualname__} has batchers, so it must define "
            "handle_batch(self, batcher, messages, batch_info, context)"
        )
    return module


def validate(module: object, options: Mapping[str, Any]) -> Config:
    """Check a pipeline's options (see the module documentation); the checked Config.

    Raises:
        TypeError: a value of the wrong type, a producer module that is not an
            ``otpy.stage.Producer`` subclass, a ``partition_by`` that is not
            callable, or a ``module`` that is not a Pipeline subclass with
            the callbacks it needs.
        ValueError: an unknown or missing key, or a value out of range.
    """
    top = _dict(options, "", _TOP, ("name", "producer", "processors"))
    name = _name(top["name"], "name")
    producer_cls, producer_options, producer_concurrency, rate = _producer(top["producer"])
    key, concurrency, max_demand, min_demand, policy = _processors(top["processors"])
    batchers = _batchers(top.get("batchers"))
    partition_by = top.get("partition_by")
    if partition_by is not None and not callable(partition_by):
        raise TypeError(
            f"pipeline option partition_by must be a function message -> int, or None; "
            f"got {partition_by!r}"
        )
    shutdown = _seconds(top.get("shutdown", 30.0), "shutdown", positive=False, allow_none=True)
    max_restarts = _int(top.get("max_restarts", 3), "max_restarts", 0)
    max_seconds = _seconds(top.get("max_seconds", 5.0), "max_seconds", positive=True)
    interval = _seconds(top.get("resubscribe_interval", 0.1), "resubscribe_interval", positive=True)
    assert max_seconds is not None and interval is not None
    config = Config(
        name=name,
        module=_module(module, bool(batchers)),
        producer_cls=producer_cls,
        producer_options=producer_options,
        producer_concurrency=producer_concurrency,
        rate_limiting=rate,
        processor_key=key,
        processor_concurrency=concurrency,
        max_demand=max_demand,
        min_demand=min_demand,
        retry=policy,
        batchers=batchers,
        context=top.get("context"),
        partition_by=partition_by,
        shutdown=shutdown,
        max_restarts=max_restarts,
        max_seconds=max_seconds,
        resubscribe_interval=interval,
    )
    check = getattr(producer_cls, "validate_options", None)
    if callable(check):
        check(config.producer_init_options(0))
    return config
