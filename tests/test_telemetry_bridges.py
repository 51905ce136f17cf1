"""Acceptance tests for the telemetry bridges: ``otpy.telemetry.otel`` and ``.prometheus``."""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading

import prometheus_client
import pytest
from conftest import WAIT, down_of, idle, in_thread, wait_until
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import otpy
from otpy import telemetry
from otpy.telemetry import otel
from otpy.telemetry.prometheus import Collector
from otpy.testing import assert_receive

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def no_handlers_left():
    """Every bridge a test makes is closed by the end of the test."""
    before = {h.id for h in telemetry.list_handlers()}
    yield
    left = {h.id for h in telemetry.list_handlers()} - before
    for handler_id in left:
        telemetry.detach(handler_id)
    assert not left, f"handlers left attached by the test: {left}"


@pytest.mark.parametrize(
    ("module", "library", "extra"),
    [
        ("otpy.telemetry.otel", "opentelemetry", "otel"),
        ("otpy.telemetry.prometheus", "prometheus_client", "prometheus"),
    ],
)
def test_a_bridge_without_its_library_raises_import_error_naming_the_extra(
    runtime, monkeypatch, module, library, extra
):
    monkeypatch.delitem(sys.modules, module)
    for name in [m for m in sys.modules if m == library or m.startswith(library + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, library, None)  # makes `import library` fail
    with pytest.raises(ImportError) as info:
        importlib.import_module(module)
    assert str(info.value) == f"{module} needs the '{extra}' extra: pip install 'otpy[{extra}]'"


# -- OpenTelemetry -------------------------------------------------------------------

JOB = ("myapp", "job")


class Otel:
    """An SDK tracer provider and meter provider that keep what they get in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)

    def instrument(self, **options) -> otel.Instrumentation:
        return otel.instrument(self.tracer_provider, self.meter_provider, **options)

    def finished(self):
        return self.spans.get_finished_spans()

    def points(self, name: str) -> list:
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def sdk():
    sdk = Otel()
    yield sdk
    sdk.shutdown()


class TestOtelSpans:
    def test_a_span_becomes_an_opentelemetry_span_with_its_metadata(self, runtime, sdk):
        with sdk.instrument(spans=[JOB]):
            with telemetry.span(JOB, {"job": "import", "pid": otpy.self(), "none": None}) as meta:
                meta["rows"] = 3
        [span] = sdk.finished()
        assert span.name == "myapp.job"
        assert dict(span.attributes) == {"job": "import", "pid": repr(otpy.self()), "rows": 3}
        assert span.status.status_code is StatusCode.UNSET
        assert span.end_time >= span.start_time

    def test_the_span_lasts_the_measured_duration(self, runtime, sdk):
        captured = {}
        telemetry.attach("test-stop", (*JOB, "stop"), lambda e, m, md, c: captured.update(m))
        with sdk.instrument(spans=[JOB]), telemetry.span(JOB):
            pass
        telemetry.detach("test-stop")
        [span] = sdk.finished()
        assert span.end_time - span.start_time == int(captured["duration"] * 1e9)

    def test_an_exception_is_recorded_and_sets_the_status_to_error(self, runtime, sdk):
        with sdk.instrument(spans=[JOB]), pytest.raises(ValueError):
            with telemetry.span(JOB, {"job": "import"}):
                raise ValueError("bad row")
        [span] = sdk.finished()
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ValueError: bad row"
        assert dict(span.attributes) == {"job": "import"}
        [event] = span.events
        assert event.name == "exception"
        assert event.attributes["exception.type"] == "ValueError"
        assert event.attributes["exception.message"] == "bad row"

    def test_otpy_spans_are_traced_by_default(self, runtime, sdk):
        prefix = ("otpy", "pipeline", "processor", "message")
        with sdk.instrument(), telemetry.span(prefix, {"pipeline": "orders"}):
            pass
        with sdk.instrument(otpy_events=False, spans=[JOB]), telemetry.span(prefix):
            pass
        [span] = sdk.finished()
        assert span.name == "otpy.pipeline.processor.message"

    def test_spans_nest_and_are_current_in_between(self, runtime, sdk):
        tracer = sdk.tracer_provider.get_tracer("test")
        with sdk.instrument(spans=[JOB, ("myapp", "step")]):
            with tracer.start_as_current_span("request"):
                with telemetry.span(JOB):
                    with telemetry.span(("myapp", "step")):
                        with tracer.start_as_current_span("query"):
                            pass
                assert trace.get_current_span() is not trace.INVALID_SPAN  # "request"
            assert trace.get_current_span() is trace.INVALID_SPAN
        spans = {span.name: span for span in sdk.finished()}
        assert set(spans) == {"request", "myapp.job", "myapp.step", "query"}

        def parent_of(name):
            return spans[name].parent.span_id

        assert parent_of("myapp.job") == spans["request"].context.span_id
        assert parent_of("myapp.step") == spans["myapp.job"].context.span_id
        assert parent_of("query") == spans["myapp.step"].context.span_id

    def test_starts_and_stops_pair_up_per_thread(self, runtime, sdk):
        a_started, b_started, a_stopped = threading.Event(), threading.Event(), threading.Event()

        def a():
            with telemetry.span(JOB, {"worker": "a"}) as meta:
                a_started.set()
                b_started.wait(WAIT)
                meta["stopped_by"] = "a"
            a_stopped.set()

        def b():
            a_started.wait(WAIT)
            with telemetry.span(JOB, {"worker": "b"}) as meta:  # opened after a's
                b_started.set()
                a_stopped.wait(WAIT)  # a stops first, while b is open
                meta["stopped_by"] = "b"

        with sdk.instrument(spans=[JOB]):
            threads = [threading.Thread(target=a), threading.Thread(target=b)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)
        finished = sdk.finished()
        assert [(s.attributes["worker"], s.attributes["stopped_by"]) for s in finished] == [
            ("a", "a"),
            ("b", "b"),
        ]
        assert all(span.parent is None for span in finished)

    def test_starts_and_stops_pair_up_per_asyncio_task(self, runtime, sdk):
        async def job(name, gate, release):
            with telemetry.span(JOB, {"task": name}) as meta:
                gate.set()
                await release.wait()
                meta["done"] = name

        async def main():
            a_in, b_in, a_go, b_go = (asyncio.Event() for _ in range(4))
            a = asyncio.create_task(job("a", a_in, a_go))
            await a_in.wait()
            b = asyncio.create_task(job("b", b_in, b_go))
            await b_in.wait()
            a_go.set()  # a stops while b is still open
            await a
            b_go.set()
            await b

        with sdk.instrument(spans=[JOB]):
            asyncio.run(main())
        spans = sdk.finished()
        assert [(s.attributes["task"], s.attributes["done"]) for s in spans] == [
            ("a", "a"),
            ("b", "b"),
        ]
        assert all(span.parent is None for span in spans)

    def test_a_stop_whose_start_came_before_instrument_is_ignored(self, runtime, sdk):
        with telemetry.span(JOB):
            instrumentation = sdk.instrument(spans=[JOB])
        instrumentation.uninstrument()
        assert sdk.finished() == ()

    def test_a_span_left_open_inside_another_ends_with_it(self, runtime, sdk):
        with sdk.instrument(spans=[JOB, ("myapp", "lost")]), telemetry.span(JOB):
            telemetry.execute(("myapp", "lost", "start"), {}, {})
        assert sorted(span.name for span in sdk.finished()) == ["myapp.job", "myapp.lost"]
        assert trace.get_current_span() is trace.INVALID_SPAN  # both were made current, and undone

    def test_spans_that_never_stop_are_ended_past_128_open_in_a_thread(self, runtime, sdk):
        def start_many():
            for _ in range(130):
                telemetry.execute((*JOB, "start"), {}, {})

        with sdk.instrument(spans=[JOB]):
            in_thread(start_many)
        assert len(sdk.finished()) == 2

    def test_uninstrument_detaches_the_bridge(self, runtime, sdk):
        instrumentation = sdk.instrument(spans=[JOB])
        assert [h.id for h in telemetry.list_handlers((*JOB, "start"))] == [
            instrumentation.handler_id
        ]
        assert instrumentation.uninstrument() is True
        assert instrumentation.uninstrument() is False
        with telemetry.span(JOB):
            pass
        assert sdk.finished() == ()
        assert not [h for h in telemetry.list_handlers() if h.id == instrumentation.handler_id]

    def test_bad_options_raise(self, runtime, sdk):
        with pytest.raises(ValueError, match="both a span event and a counted event"):
            sdk.instrument(spans=[JOB], counters=[(*JOB, "stop")])
        with pytest.raises(TypeError, match="tuple of str"):
            sdk.instrument(spans=["myapp.job"])
        with pytest.raises(ValueError, match="nothing to instrument"):
            sdk.instrument(otpy_events=False)


class TestOtelMetrics:
    def test_span_durations_go_to_a_histogram_with_error_type_on_failures(self, runtime, sdk):
        with sdk.instrument(spans=[JOB], metric_attributes=["job"]):
            with telemetry.span(JOB, {"job": "import", "row": 1}):
                pass
            with pytest.raises(KeyError), telemetry.span(JOB, {"job": "import"}):
                raise KeyError("x")
        points = {tuple(sorted(p.attributes.items())): p for p in sdk.points("myapp.job.duration")}
        assert set(points) == {
            (("job", "import"),),
            (("error.type", "KeyError"), ("job", "import")),
        }
        assert all(p.count == 1 for p in points.values())

    def test_otpy_events_become_counters(self, runtime, sdk):
        with sdk.instrument():
            for _ in range(2):
                telemetry.execute(("otpy", "supervisor", "restart"), {"restarts": 5}, {})
            telemetry.execute(("otpy", "mailbox", "drop"), {"count": 4}, {"pid": otpy.self()})
            telemetry.execute(
                ("otpy", "pipeline", "ack"), {"successful": 3, "failed": 1}, {"pipeline": "orders"}
            )
            telemetry.execute(("otpy", "process", "crash"), {}, {"reason": RuntimeError("x")})
        assert [p.value for p in sdk.points("otpy.supervisor.restart")] == [2]
        assert [p.value for p in sdk.points("otpy.mailbox.drop.count")] == [4]
        [successful] = sdk.points("otpy.pipeline.ack.successful")
        [failed] = sdk.points("otpy.pipeline.ack.failed")
        assert (successful.value, dict(successful.attributes)) == (3, {"pipeline": "orders"})
        assert failed.value == 1
        [crash] = sdk.points("otpy.process.crash")
        assert dict(crash.attributes) == {"error.type": "RuntimeError"}

    def test_user_counters_count_emissions_or_add_measurements(self, runtime, sdk):
        counters = {("myapp", "rows"): ("rows",), ("myapp", "login"): ()}
        with sdk.instrument(otpy_events=False, counters=counters):
            telemetry.execute(("myapp", "rows"), {"rows": 10}, {})
            telemetry.execute(("myapp", "rows"), {"rows": 5}, {})
            telemetry.execute(("myapp", "login"), {}, {})
        with sdk.instrument(otpy_events=False, counters=[("myapp", "logout")]):
            telemetry.execute(("myapp", "logout"), {}, {})
        assert [p.value for p in sdk.points("myapp.rows.rows")] == [15]
        assert [p.value for p in sdk.points("myapp.login")] == [1]
        assert [p.value for p in sdk.points("myapp.logout")] == [1]


# -- Prometheus ----------------------------------------------------------------------


@pytest.fixture
def registry():
    return prometheus_client.CollectorRegistry()


def stop_all(pids):
    for pid in pids:
        ref = otpy.monitor(pid)
        otpy.send(pid, "stop")
        assert_receive(down_of(ref), WAIT)


class TestPrometheusRuntimeMetrics:
    def test_process_counts_and_mailbox_lengths_come_from_the_runtime(self, runtime, registry):
        pids = [otpy.spawn(idle) for _ in range(3)]
        otpy.register("inbox", pids[0])
        for message in ["one", "two"]:
            otpy.send(pids[0], message)
        otpy.send(pids[1], "three")
        wait_until(lambda: all(otpy.process_info(p).status == "waiting" for p in pids))
        wait_until(lambda: otpy.process_info(pids[0]).message_queue_len == 2)
        with Collector(registry=registry):
            value = registry.get_sample_value
            statuses = {
                s: value("otpy_processes", {"status": s})
                for s in ("running", "runnable", "waiting")
            }
            total, longest = value("otpy_mailbox_messages"), value("otpy_mailbox_max_messages")
            inbox = value("otpy_process_mailbox_messages", {"name": "inbox"})
            text = prometheus_client.generate_latest(registry).decode()
        stop_all(pids)
        assert statuses == {"running": 1, "runnable": 0, "waiting": 3}  # the test's own and 3 idle
        assert (total, longest, inbox) == (3, 2, 2)
        assert "# TYPE otpy_processes gauge" in text
        assert 'otpy_process_mailbox_messages{name="inbox"} 2.0' in text

    def test_the_runtime_defaults_to_the_current_one(self, runtime, registry):
        pid = otpy.spawn(idle)
        wait_until(lambda: otpy.process_info(pid).status == "waiting")
        other = otpy.Runtime()
        try:
            with Collector(runtime=other, registry=registry):
                in_other = registry.get_sample_value("otpy_processes", {"status": "waiting"})
            with Collector(registry=registry):
                in_this = registry.get_sample_value("otpy_processes", {"status": "waiting"})
        finally:
            other.shutdown()
        stop_all([pid])
        assert (in_other, in_this) == (0, 1)


class TestPrometheusEventCounters:
    def test_events_feed_the_counters(self, runtime, registry):
        with Collector(registry=registry):
            for _ in range(2):
                telemetry.execute(("otpy", "supervisor", "restart"), {"restarts": 1}, {})
            telemetry.execute(("otpy", "supervisor", "max_intensity"), {"restarts": 4}, {})
            telemetry.execute(("otpy", "process", "crash"), {}, {"reason": "boom"})
            telemetry.execute(("otpy", "mailbox", "drop"), {"count": 5}, {})
            telemetry.execute(("otpy", "mailbox", "drop"), {"count": 2}, {})
            for successful, failed in [(3, 1), (2, 0)]:
                telemetry.execute(
                    ("otpy", "pipeline", "ack"),
                    {"successful": successful, "failed": failed},
                    {"pipeline": "orders"},
                )
            value = registry.get_sample_value
            got = {
                "restarts": value("otpy_supervisor_restarts_total"),
                "max_intensity": value("otpy_supervisor_max_intensity_total"),
                "crashes": value("otpy_process_crashes_total"),
                "drops": value("otpy_mailbox_dropped_messages_total"),
                "acked": value(
                    "otpy_pipeline_acked_messages_total",
                    {"pipeline": "orders", "result": "successful"},
                ),
                "failed": value(
                    "otpy_pipeline_acked_messages_total", {"pipeline": "orders", "result": "failed"}
                ),
            }
        assert got == {
            "restarts": 2,
            "max_intensity": 1,
            "crashes": 1,
            "drops": 7,
            "acked": 5,
            "failed": 1,
        }

    def test_counts_from_many_threads_add_up(self, runtime, registry):
        threads_n, each = 4, 500

        def restart_many():
            for _ in range(each):
                telemetry.execute(("otpy", "supervisor", "restart"), {"restarts": 1}, {})

        with Collector(registry=registry):
            threads = [threading.Thread(target=restart_many) for _ in range(threads_n)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)
            restarts = registry.get_sample_value("otpy_supervisor_restarts_total")
        assert restarts == threads_n * each

    def test_close_detaches_the_handlers_and_leaves_the_registry(self, runtime, registry):
        collector = Collector(registry=registry)
        assert {h.id for h in telemetry.list_handlers(("otpy",))} == {collector.handler_id}
        collector.close()
        assert telemetry.list_handlers(("otpy",)) == []
        assert registry.get_sample_value("otpy_supervisor_restarts_total") is None
        collector.close()  # a second close does nothing

    def test_a_collector_registered_yourself_works_and_names_clash_on_a_second(
        self, runtime, registry
    ):
        collector = Collector()
        registry.register(collector)
        telemetry.execute(("otpy", "supervisor", "restart"), {"restarts": 1}, {})
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            Collector(registry=registry)
        assert registry.get_sample_value("otpy_supervisor_restarts_total") == 1
        registry.unregister(collector)
        collector.close()
