"""A pipeline's supervision tree: which processes, in which order, restarted how.

Broadway's topology, on otpy's supervisors. Under the pipeline's own process
(registered as its name; see ``_pipeline``) one supervisor,
``"<name>.Supervisor"``, ``rest_for_one``, starts in order::

    <name>.RateLimiter                    (with rate_limiting)
    <name>.ProducerSupervisor             one_for_one
        <name>.Producer_0 ..              the user's producer class, restarted with otpy.Backoff
    <name>.ProcessorSupervisor            one_for_one
        <name>.Processor_<key>_0 ..
    <name>.BatcherSupervisor              one_for_one (with batchers)
        <name>.Batcher_<b>, <name>.BatchProcessor_<b>_0 ..   for each batcher b

``rest_for_one`` at the top, as in Broadway: when a whole layer's supervisor
gives up, the layers that depend on it are restarted with it. Inside a layer
each stage is restarted alone: its neighbours subscribe to the new process
by name (``resubscribe_interval``), so a killed processor costs only the
messages it held. Producers restart with ``otpy.Backoff`` (0.1 s growing to
10 s): a producer whose broker is down does not spin, and does not use up
the restart intensity. Every supervisor has the pipeline's
``max_restarts`` / ``max_seconds``.

Stages do not trap exits: a supervisor's ``"shutdown"`` stops them at once.
The orderly stop is the drain, which the pipeline's process runs before it
stops this tree.
"""

from __future__ import annotations

from typing import Any

from .._child_spec import ChildSpec
from .._core import Pid
from .._supervisor import Backoff, Supervisor
from ._options import BatcherConfig
from ._producer import pipeline_producer_class
from ._rate_limit import RateLimiter
from ._router import ProducerRouter, Router, partition_key
from ._shared import Shared
from ._stages import Batch, Batcher, BatchProcessor, ForwardingProcessor, Processor, start_member

__all__ = ["children", "start_tree"]

_PRODUCER_BACKOFF = Backoff(min=0.1, max=10.0)


def start_producer(shared: Shared, index: int) -> Pid | None:
    config = shared.config
    partitions = None
    key = None
    if config.partition_by is not None:
        partitions = list(range(config.processor_concurrency))
        key = partition_key(config.partition_by, config.processor_concurrency)
    router = ProducerRouter(shared, partitions, key)
    cls = pipeline_producer_class(config.producer_cls)
    pid: Pid | None = cls.start_link(
        config.producer_init_options(index),
        _pl=(shared, router),
        name=shared.producer_names[index],
        dispatcher=router,
    )
    return pid


def start_processor(shared: Shared, index: int) -> Pid | None:
    config = shared.config
    options: dict[str, Any] = {
        "max_demand": config.max_demand,
        "min_demand": config.min_demand,
        "cancel": "temporary",
    }
    if config.partition_by is not None:
        options["partition"] = index
    router: Router | None = None
    cls: type[Any] = Processor
    if config.batchers:
        router = Router([b.name for b in config.batchers], _batcher_of)
        cls = ForwardingProcessor
    return start_member(
        cls, shared, index, shared.processor_names[index], shared.producer_names, options, router
    )


def _batcher_of(message: Any) -> Any:
    return message.batcher


def _partition_of(batch: Batch) -> Any:
    return batch.info.partition


def start_batcher(shared: Shared, batcher: BatcherConfig) -> Pid | None:
    options = {"max_demand": batcher.max_demand, "cancel": "temporary", "partition": batcher.name}
    if shared.config.partition_by is not None:
        router = Router(list(range(batcher.concurrency)), _partition_of)
    else:
        router = Router()
    return start_member(
        Batcher,
        shared,
        0,
        shared.batcher_names[batcher.name],
        shared.processor_names,
        options,
        router,
        batcher,
    )


def start_batch_processor(shared: Shared, batcher: BatcherConfig, index: int) -> Pid | None:
    options: dict[str, Any] = {"max_demand": 1, "min_demand": 0, "cancel": "temporary"}
    if shared.config.partition_by is not None:
        options["partition"] = index
    return start_member(
        BatchProcessor,
        shared,
        index,
        shared.batch_processor_names[batcher.name][index],
        [shared.batcher_names[batcher.name]],
        options,
        None,
        batcher,
    )


def _supervisor(name: str, shared: Shared, specs: list[ChildSpec]) -> ChildSpec:
    config = shared.config
    return ChildSpec(
        id=name,
        start=(
            Supervisor.start_link,
            (specs,),
            {
                "strategy": "one_for_one",
                "max_restarts": config.max_restarts,
                "max_seconds": config.max_seconds,
                "name": name,
            },
        ),
        type="supervisor",
    )


def children(shared: Shared) -> list[ChildSpec]:
    """The child specs of ``"<name>.Supervisor"``, in start order."""
    config = shared.config
    name = shared.name
    specs: list[ChildSpec] = []
    if shared.allowance is not None:
        specs.append(
            RateLimiter.child_spec(
                shared, id=shared.rate_limiter_name, name=shared.rate_limiter_name
            )
        )
    producers = [
        ChildSpec(id=producer, start=(start_producer, (shared, i), {}), backoff=_PRODUCER_BACKOFF)
        for i, producer in enumerate(shared.producer_names)
    ]
    specs.append(_supervisor(f"{name}.ProducerSupervisor", shared, producers))
    processors = [
        ChildSpec(id=processor, start=(start_processor, (shared, i), {}))
        for i, processor in enumerate(shared.processor_names)
    ]
    specs.append(_supervisor(f"{name}.ProcessorSupervisor", shared, processors))
    if config.batchers:
        batchers: list[ChildSpec] = []
        for batcher in config.batchers:
            batchers.append(
                ChildSpec(
                    id=shared.batcher_names[batcher.name],
                    start=(start_batcher, (shared, batcher), {}),
                )
            )
            for i, bp in enumerate(shared.batch_processor_names[batcher.name]):
                batchers.append(
                    ChildSpec(id=bp, start=(start_batch_processor, (shared, batcher, i), {}))
                )
        specs.append(_supervisor(f"{name}.BatcherSupervisor", shared, batchers))
    return specs


def start_tree(shared: Shared) -> Pid:
    """Start ``"<name>.Supervisor"`` linked to the caller (the pipeline's process)."""
    config = shared.config
    return Supervisor.start_link(
        children(shared),
        strategy="rest_for_one",
        max_restarts=config.max_restarts,
        max_seconds=config.max_seconds,
        name=shared.supervisor_name,
    )
