"""Tests for the one demand protocol: otpy.stage's accounting, and Flow running on stages.

``otpy.stage._demand.Demand`` is the consumer-side accounting every consumer shares (stage
consumers, ConsumerSupervisor, Flow's stages and its iterator); Flow's processes are
otpy.stage producers and producer-consumers, and ``otpy.stage`` no longer imports
``otpy.flow`` at import time.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any

import pytest

import otpy
from otpy.flow import Flow
from otpy.stage._demand import Demand

pytestmark = pytest.mark.timeout(60)


class TestDemand:
    def test_asks_again_in_steps_of_max_minus_min(self, runtime: Any) -> None:
        demand = Demand(10, 4)
        assert (demand.max_demand, demand.step) == (10, 6)
        assert [demand.handled(1) for _ in range(12)] == [0] * 5 + [6] + [0] * 5 + [6]

    def test_a_large_batch_is_asked_for_at_once(self, runtime: Any) -> None:
        demand = Demand(10, 5)
        assert demand.handled(3) == 0
        assert demand.handled(9) == 12  # everything handled since the last ask

    def test_min_demand_zero_asks_max_demand_again(self, runtime: Any) -> None:
        demand = Demand(3, 0)
        assert [demand.handled(1) for _ in range(6)] == [0, 0, 3, 0, 0, 3]


class TestImports:
    def test_otpy_stage_does_not_import_otpy_flow(self, runtime: Any) -> None:
        code = (
            "import sys, otpy.stage\n"
            "assert 'otpy.flow' not in sys.modules, 'imported at once'\n"
            "flow = otpy.stage.Flow\n"
            "import otpy.flow\n"
            "assert flow is otpy.flow.Flow\n"
            "assert 'Flow' in otpy.stage.__all__\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)

    def test_otpy_flow_imports_first(self, runtime: Any) -> None:
        code = "import otpy.flow, otpy.stage\nassert otpy.stage.Flow is otpy.flow.Flow\n"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)

    def test_an_unknown_name_is_an_attribute_error(self, runtime: Any) -> None:
        import otpy.stage

        with pytest.raises(AttributeError, match="no attribute 'Nope'"):
            otpy.stage.Nope  # noqa: B018


class TestFlowOnStages:
    def test_events_a_partition_hash_drops_use_up_no_demand(self, runtime: Any) -> None:
        # Nearly every event is dropped by the route; if dropped events counted against
        # the consumers' demand, the first layer would stop sending with demand unmet.
        flow = Flow.from_enumerable(range(20_000), max_demand=4, stages=2).partition(
            stages=2, max_demand=4, hash=lambda x: (x // 1000) % 2 if x % 1000 == 0 else None
        )
        assert sorted(flow) == list(range(0, 20_000, 1000))

    def test_a_reducing_layer_with_small_demand_sees_every_event(self, runtime: Any) -> None:
        flow = (
            Flow.from_enumerable(range(5000), max_demand=3, stages=3)
            .filter(lambda x: x % 7 == 0)
            .partition(stages=3, max_demand=2, min_demand=1)
            .reduce(lambda: 0, lambda x, acc: acc + x)
            .emit("state")
        )
        assert sum(flow) == sum(x for x in range(5000) if x % 7 == 0)

    def test_a_flat_map_far_beyond_the_demand_is_delivered_in_order(self, runtime: Any) -> None:
        flow = Flow.from_enumerable(range(50), max_demand=2, stages=1).flat_map(
            lambda x: [(x, i) for i in range(300)]
        )
        assert list(flow) == [(x, i) for x in range(50) for i in range(300)]

    def test_a_slow_reader_holds_back_an_endless_source(self, runtime: Any) -> None:
        me = otpy.self()

        def numbers() -> Any:
            for n in itertools.count():
                otpy.send(me, ("read", n))
                yield n

        with Flow.from_enumerable(numbers(), max_demand=10, stages=1).map(str).stream() as it:
            assert list(itertools.islice(it, 5)) == ["0", "1", "2", "3", "4"]
        read = 0
        while True:
            try:
                otpy.receive(timeout=0, match=lambda m: type(m) is tuple and m[0] == "read")
            except otpy.Timeout:
                break
            read += 1
        # The stage asks the source for at most 10 at a time, the iterator the stage too.
        assert 5 <= read <= 60
