"""Pipeline options: Broadway's names and defaults, every bad value refused before anything starts.

Also: child_spec, DummyProducer, producer start failures, and the producer hooks
(``validate_options``, ``pipeline_options``) that broker producers use.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from conftest import WAIT, wait_until

import otpy
import otpy.pipeline as pl
import otpy.stage as stage
from otpy.pipeline._options import validate
from otpy.retry import RetryPolicy

from .pipeline_helpers import DUMMY, ListProducer, Log, Recorder, ack_of, base_options

pytestmark = pytest.mark.timeout(30)


class Echo(pl.Pipeline):
    def handle_message(self, processor, message, context):
        return message


class EchoBatches(Echo):
    def handle_batch(self, batcher, messages, batch_info, context):
        return messages


class NoCallbacks(pl.Pipeline):
    pass


class NotAProducer(stage.Consumer):
    def handle_events(self, events, from_):
        return None


def processors(**options: Any) -> dict[str, Any]:
    return {"default": options}


BAD: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("name not a str", {"name": 3}, TypeError, "name must be a non-empty str"),
    ("empty name", {"name": ""}, ValueError, "name must be a non-empty str"),
    ("producer not a dict", {"producer": [DUMMY]}, TypeError, "producer must be a dict"),
    ("producer without module", {"producer": {}}, ValueError, "producer needs 'module'"),
    (
        "unknown producer key",
        {"producer": {**DUMMY, "concurency": 2}},
        ValueError,
        "producer has unknown key(s) 'concurency'; allowed: module, concurrency, rate_limiting",
    ),
    (
        "module not a pair",
        {"producer": {"module": pl.DummyProducer}},
        TypeError,
        "pair (cls, options)",
    ),
    (
        "module not a class",
        {"producer": {"module": (3, {})}},
        TypeError,
        "Producer subclass first; got 3",
    ),
    (
        "module a consumer",
        {"producer": {"module": (NotAProducer, {})}},
        TypeError,
        "otpy.stage.Producer subclass",
    ),
    (
        "producer options not a dict",
        {"producer": {"module": (pl.DummyProducer, [])}},
        TypeError,
        "options as a dict second",
    ),
    (
        "producer concurrency 0",
        {"producer": {**DUMMY, "concurrency": 0}},
        ValueError,
        "producer['concurrency'] must be an int >= 1; got 0",
    ),
    (
        "producer concurrency a str",
        {"producer": {**DUMMY, "concurrency": "2"}},
        TypeError,
        "producer['concurrency'] must be an int >= 1; got '2'",
    ),
    (
        "producer concurrency a bool",
        {"producer": {**DUMMY, "concurrency": True}},
        TypeError,
        "producer['concurrency']",
    ),
    (
        "rate_limiting without keys",
        {"producer": {**DUMMY, "rate_limiting": {}}},
        ValueError,
        "producer['rate_limiting'] needs 'allowed_messages', 'interval'",
    ),
    (
        "rate_limiting allowed 0",
        {"producer": {**DUMMY, "rate_limiting": {"allowed_messages": 0, "interval": 1.0}}},
        ValueError,
        "producer['rate_limiting']['allowed_messages'] must be an int >= 1; got 0",
    ),
    (
        "rate_limiting interval 0",
        {"producer": {**DUMMY, "rate_limiting": {"allowed_messages": 1, "interval": 0}}},
        ValueError,
        "producer['rate_limiting']['interval'] must be seconds > 0; got 0",
    ),
    (
        "rate_limiting interval a str",
        {"producer": {**DUMMY, "rate_limiting": {"allowed_messages": 1, "interval": "1"}}},
        TypeError,
        "producer['rate_limiting']['interval']",
    ),
    (
        "rate_limiting unknown key",
        {
            "producer": {
                **DUMMY,
                "rate_limiting": {"allowed_messages": 1, "interval": 1.0, "burst": 2},
            }
        },
        ValueError,
        "unknown key(s) 'burst'",
    ),
    ("processors not a dict", {"processors": ["default"]}, TypeError, "processors must be a dict"),
    ("no processors", {"processors": {}}, ValueError, "exactly one key"),
    (
        "two processors",
        {"processors": {"a": {}, "b": {}}},
        ValueError,
        "exactly one key (one set of processors), such as 'default'; got ['a', 'b']",
    ),
    ("processor key not a str", {"processors": {1: {}}}, TypeError, "processors key"),
    (
        "processor options not a dict",
        {"processors": {"default": 4}},
        TypeError,
        "processors['default']",
    ),
    (
        "unknown processor key",
        {"processors": processors(max_demmand=5)},
        ValueError,
        "processors['default'] has unknown key(s) 'max_demmand'; "
        "allowed: concurrency, max_demand, min_demand, retry",
    ),
    (
        "processor concurrency 0",
        {"processors": processors(concurrency=0)},
        ValueError,
        "processors['default']['concurrency'] must be an int >= 1; got 0",
    ),
    (
        "processor concurrency a float",
        {"processors": processors(concurrency=2.0)},
        TypeError,
        "processors['default']['concurrency'] must be an int >= 1; got 2.0",
    ),
    (
        "max_demand 0",
        {"processors": processors(max_demand=0)},
        ValueError,
        "processors['default']['max_demand'] must be an int >= 1; got 0",
    ),
    (
        "min_demand not below max_demand",
        {"processors": processors(max_demand=4, min_demand=4)},
        ValueError,
        "processors['default']['min_demand'] must be less than max_demand (4); got 4",
    ),
    (
        "min_demand negative",
        {"processors": processors(min_demand=-1)},
        ValueError,
        "processors['default']['min_demand'] must be an int >= 0; got -1",
    ),
    (
        "retry not a policy",
        {"processors": processors(retry=3)},
        TypeError,
        "processors['default']['retry'] must be an otpy.retry.RetryPolicy or None; got 3",
    ),
    ("batchers not a dict", {"batchers": ["db"]}, TypeError, "batchers must be a dict"),
    ("batcher key not a str", {"batchers": {1: {}}}, TypeError, "batchers key"),
    ("batcher options not a dict", {"batchers": {"db": 1}}, TypeError, "batchers['db']"),
    (
        "unknown batcher key",
        {"batchers": {"db": {"size": 3}}},
        ValueError,
        "batchers['db'] has unknown key(s) 'size'; "
        "allowed: concurrency, batch_size, batch_timeout, max_demand",
    ),
    (
        "batch_size 0",
        {"batchers": {"db": {"batch_size": 0}}},
        ValueError,
        "batchers['db']['batch_size'] must be an int >= 1; got 0",
    ),
    (
        "batch_timeout 0",
        {"batchers": {"db": {"batch_timeout": 0}}},
        ValueError,
        "batchers['db']['batch_timeout'] must be seconds > 0; got 0",
    ),
    (
        "batch_timeout NaN",
        {"batchers": {"db": {"batch_timeout": float("nan")}}},
        ValueError,
        "batchers['db']['batch_timeout']",
    ),
    (
        "batcher concurrency 0",
        {"batchers": {"db": {"concurrency": 0}}},
        ValueError,
        "batchers['db']['concurrency'] must be an int >= 1; got 0",
    ),
    (
        "partition_by not callable",
        {"partition_by": 3},
        TypeError,
        "partition_by must be a function message -> int, or None; got 3",
    ),
    (
        "negative shutdown",
        {"shutdown": -1},
        ValueError,
        "shutdown must be seconds >= 0 or None; got -1",
    ),
    ("shutdown a str", {"shutdown": "30"}, TypeError, "shutdown must be seconds >= 0"),
    ("negative max_restarts", {"max_restarts": -1}, ValueError, "max_restarts must be an int >= 0"),
    ("max_seconds 0", {"max_seconds": 0}, ValueError, "max_seconds must be seconds > 0"),
    (
        "resubscribe_interval 0",
        {"resubscribe_interval": 0},
        ValueError,
        "resubscribe_interval must be seconds > 0",
    ),
]


class TestValidation:
    @pytest.mark.parametrize(
        ("change", "error", "text"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
    )
    def test_a_bad_option_raises_at_start_link_naming_it(self, runtime, change, error, text):
        before = set(runtime.processes())
        with pytest.raises(error) as info:
            EchoBatches.start_link(**base_options(**change))
        assert text in str(info.value)
        assert set(runtime.processes()) == before  # nothing was started
        assert otpy.whereis("p") is None

    @pytest.mark.parametrize(
        ("change", "error", "text"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
    )
    def test_child_spec_checks_the_same(self, runtime, change, error, text):
        with pytest.raises(error, match=None) as info:
            EchoBatches.child_spec(**base_options(**change))
        assert text in str(info.value)

    def test_a_missing_required_option_is_named(self, runtime):
        with pytest.raises(TypeError, match="'producer'"):
            Echo.start_link(name="p", processors={"default": {}})  # type: ignore[call-arg]
        with pytest.raises(ValueError, match="pipeline options need 'name', 'processors'"):
            Echo.child_spec(producer=DUMMY)
        with pytest.raises(ValueError, match=r"pipeline options have unknown key\(s\) 'batcher'"):
            Echo.child_spec(**base_options(), batcher={})

    def test_the_pipeline_class_must_define_its_callbacks(self, runtime):
        with pytest.raises(TypeError, match="NoCallbacks must define handle_message"):
            NoCallbacks.start_link(**base_options())
        with pytest.raises(TypeError, match="so it must define handle_batch"):
            Echo.start_link(**base_options(batchers={"db": {}}))
        with pytest.raises(TypeError, match=r"subclass of otpy\.pipeline\.Pipeline"):
            pl.Pipeline.start_link(**base_options())

    def test_defaults_are_broadways(self):
        config = validate(Echo, base_options(processors={"default": {}}))
        assert config.processor_concurrency == 2 * os.cpu_count()
        assert (config.max_demand, config.min_demand, config.retry) == (10, 5, None)
        assert config.producer_concurrency == 1
        assert config.rate_limiting is None
        assert config.shutdown == 30.0
        assert (config.max_restarts, config.max_seconds) == (3, 5.0)
        assert config.batchers == ()
        [batcher] = validate(EchoBatches, base_options(batchers={"db": {}})).batchers
        assert (batcher.concurrency, batcher.batch_size, batcher.batch_timeout) == (1, 100, 1.0)
        assert batcher.max_demand == 100
        assert validate(Echo, base_options(processors=processors(max_demand=1))).min_demand == 0
        assert validate(Echo, base_options(shutdown=None)).shutdown is None
        assert validate(Echo, base_options(shutdown=float("inf"))).shutdown is None
        policy = RetryPolicy(on=ConnectionError)
        assert validate(Echo, base_options(processors=processors(retry=policy))).retry is policy

    def test_the_default_concurrency_starts_two_processors_per_cpu(self, runtime):
        Echo.start_link(**base_options(processors={"default": {}}))
        n = 2 * os.cpu_count()
        assert otpy.whereis(f"p.Processor_default_{n - 1}") is not None
        assert otpy.whereis(f"p.Processor_default_{n}") is None
        assert pl.Pipeline.producer_names("p") == ["p.Producer_0"]
        pl.Pipeline.stop("p")


class TestProducerHooks:
    def test_validate_options_of_the_producer_runs_at_start_link(self, runtime):
        seen = []

        class Checked(pl.DummyProducer):
            pipeline_options = frozenset({"_index", "_pipeline", "_default_prefetch"})

            @staticmethod
            def validate_options(options):
                seen.append(options)
                if "queue" not in options:
                    raise ValueError("Checked needs 'queue'")

        with pytest.raises(ValueError, match="Checked needs 'queue'"):
            Echo.start_link(**base_options(producer={"module": (Checked, {})}))
        assert otpy.whereis("p") is None
        Echo.start_link(
            **base_options(
                producer={"module": (Checked, {"queue": "q"})},
                processors=processors(concurrency=3, max_demand=7),
            )
        )
        assert seen[-1] == {"queue": "q", "_index": 0, "_pipeline": "p", "_default_prefetch": 21}
        pl.Pipeline.stop("p")

    def test_internal_options_reach_only_producers_that_ask_for_them(self, runtime):
        got = Log()

        class Plain(pl.DummyProducer):
            def init(self, options):
                got.add(("plain", dict(options)))

        class Asking(pl.DummyProducer):
            pipeline_options = frozenset({"_index", "_concurrency"})

            def init(self, options):
                got.add(("asking", dict(options)))

        Echo.start_link(**base_options(producer={"module": (Plain, {"a": 1}), "concurrency": 2}))
        pl.Pipeline.stop("p")
        Echo.start_link(**base_options(producer={"module": (Asking, {"a": 1}), "concurrency": 2}))
        pl.Pipeline.stop("p")
        assert got.items() == [
            ("plain", {"a": 1}),
            ("plain", {"a": 1}),
            ("asking", {"a": 1, "_index": 0, "_concurrency": 2}),
            ("asking", {"a": 1, "_index": 1, "_concurrency": 2}),
        ]

    def test_the_producer_runs_as_its_own_class(self, runtime):
        class Where(pl.DummyProducer):
            def handle_call(self, request, caller):
                return (type(self).__qualname__, isinstance(self, Where), otpy.self())

        Echo.start_link(**base_options(producer={"module": (Where, {})}))
        name, is_where, pid = otpy.GenServer.call("p.Producer_0", "who")
        assert (name, is_where, pid) == (Where.__qualname__, True, otpy.whereis("p.Producer_0"))
        pl.Pipeline.stop("p")


class TestDummyProducer:
    def test_it_produces_nothing_and_test_messages_go_through(self, runtime):
        Echo.start_link(**base_options())
        ack = ack_of(pl.Pipeline.test_message("p", "hello"))
        assert [m.data for m in ack.successful] == ["hello"]
        pl.Pipeline.stop("p")

    def test_it_takes_an_options_dict(self, runtime):
        with pytest.raises(otpy.StartError) as info:
            pl.DummyProducer.start_link("nope")
        assert isinstance(info.value.reason, TypeError)
        assert "options dict" in str(info.value.reason)


class TestStarting:
    def test_a_producer_that_fails_to_start_makes_start_link_raise(self, runtime):
        class Down(stage.Producer):
            def init(self, options):
                raise ConnectionError("broker down")

        with pytest.raises(otpy.StartError) as info:
            Echo.start_link(**base_options(producer={"module": (Down, {})}))
        assert isinstance(info.value.reason, ConnectionError)
        assert otpy.whereis("p") is None
        assert otpy.whereis("p.Supervisor") is None

    def test_a_producer_that_emits_something_else_than_messages_crashes(self, runtime, caplog):
        class Raw(stage.Producer):
            def init(self, options):
                pass

            def handle_demand(self, demand):
                return list(range(demand))

        Echo.start_link(**base_options(producer={"module": (Raw, {})}))
        wait_until(lambda: "must emit otpy.pipeline.Message values; got 0" in caplog.text)
        pl.Pipeline.stop("p")

    def test_a_name_that_is_taken_raises(self, runtime):
        Echo.start_link(**base_options())
        with pytest.raises(otpy.AlreadyStartedError):
            Echo.start_link(**base_options())
        pl.Pipeline.stop("p")

    def test_a_producer_that_keeps_failing_is_restarted_with_backoff(self, runtime):
        """Its restarts wait (which_children shows "restarting"); the pipeline stays up."""
        failing = {"restart": False}
        starts = Log()

        class Flaky(stage.Producer):
            def init(self, options):
                starts.add(otpy.self())
                if failing["restart"]:
                    raise ConnectionError("broker down")

            def handle_demand(self, demand):
                return None

            def handle_cast(self, request):
                raise RuntimeError("lost the connection")

        top = Echo.start_link(**base_options(producer={"module": (Flaky, {})}))
        failing["restart"] = True
        otpy.GenServer.cast("p.Producer_0", "crash")
        wait_until(lambda: len(starts.items()) >= 4, timeout=WAIT)  # a few backed-off attempts

        def restarting():
            children = otpy.Supervisor.which_children("p.ProducerSupervisor")
            return children[0].pid == otpy.RESTARTING

        wait_until(restarting)
        assert otpy.is_alive(top)
        assert otpy.whereis("p.ProcessorSupervisor") is not None
        failing["restart"] = False
        wait_until(lambda: otpy.whereis("p.Producer_0") is not None, timeout=15)
        ack = ack_of(pl.Pipeline.test_message("p", 1), timeout=WAIT)
        assert len(ack.successful) == 1
        pl.Pipeline.stop("p")


class TestChildSpec:
    def test_it_is_a_supervisor_child_that_lets_the_drain_run(self, runtime):
        spec = Echo.child_spec(**base_options())
        assert (spec.id, spec.type, spec.shutdown, spec.restart) == (
            Echo,
            "supervisor",
            35.0,
            "permanent",
        )
        assert Echo.child_spec(**base_options(shutdown=1.0), id="orders").shutdown == 6.0
        assert Echo.child_spec(**base_options(shutdown=None)).shutdown is None
        assert Echo.child_spec(**base_options(), restart="transient").restart == "transient"

    def test_it_starts_under_a_supervisor(self, runtime):
        rec = Recorder()
        sup = otpy.Supervisor.start_link(
            [
                Echo.child_spec(
                    **base_options(
                        producer={"module": (ListProducer, {"count": 50, "recorder": rec})}
                    )
                )
            ]
        )
        rec.wait_for(50)
        [child] = otpy.Supervisor.which_children(sup)
        assert child.pid == otpy.whereis("p")
        otpy.Supervisor.stop(sup)
        assert otpy.whereis("p") is None
        rec.check()


class TestLookups:
    def test_calls_on_a_pipeline_that_does_not_run_raise_noproc(self, runtime):
        for call in (
            lambda: pl.Pipeline.test_message("nope", 1),
            lambda: pl.Pipeline.producer_names("nope"),
            lambda: pl.Pipeline.update_rate_limiting("nope", allowed_messages=1),
            lambda: pl.Pipeline.stop("nope"),
        ):
            with pytest.raises(otpy.NoProcError):
                call()

    def test_bad_arguments_to_the_client_functions(self, runtime):
        Echo.start_link(**base_options())
        with pytest.raises(TypeError, match="list of message data"):
            pl.Pipeline.test_batch("p", "abc")
        with pytest.raises(ValueError, match="at least one"):
            pl.Pipeline.test_batch("p", [])
        with pytest.raises(ValueError, match="batch_mode"):
            pl.Pipeline.test_batch("p", [1], batch_mode="now")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="metadata"):
            pl.Pipeline.test_message("p", 1, metadata=[1])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="without producer\\['rate_limiting'\\]"):
            pl.Pipeline.update_rate_limiting("p", allowed_messages=3)
        assert pl.Pipeline.get_rate_limiting("p") is None
        with pytest.raises(TypeError, match="a str"):
            pl.Pipeline.producer_names(3)  # type: ignore[arg-type]
        pl.Pipeline.stop("p")
