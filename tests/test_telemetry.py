"""Acceptance tests for the Telemetry section of API.md (``otpy.telemetry``)."""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback

import attrs
import pytest
from conftest import in_thread

from otpy import telemetry

pytestmark = pytest.mark.timeout(30)

FAILURE = ("telemetry", "handler", "failure")


@pytest.fixture(autouse=True)
def no_handlers_left():
    """Tests attach ids starting with "test-"; none may stay attached after the test."""
    before = {h.id for h in telemetry.list_handlers()}
    yield
    left = {h.id for h in telemetry.list_handlers()} - before
    for handler_id in left:
        telemetry.detach(handler_id)
    assert not left, f"handlers left attached by the test: {left}"


class Recorder:
    """A handler that records its calls; thread-safe."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.calls: list[tuple] = []
        self._lock = threading.Lock()

    def __call__(self, event, measurements, metadata, config) -> None:
        with self._lock:
            self.calls.append((event, measurements, metadata, config))

    @property
    def events(self) -> list[tuple[str, ...]]:
        with self._lock:
            return [call[0] for call in self.calls]


def fail(event, measurements, metadata, config):
    raise RuntimeError("handler is broken")


class TestAttach:
    def test_a_handler_gets_the_event_measurements_metadata_and_config(self, runtime):
        rec = Recorder()
        telemetry.attach("test-h", ("app", "job", "done"), rec, config={"c": 1})
        telemetry.execute(("app", "job", "done"), {"rows": 3}, {"job": "import"})
        telemetry.detach("test-h")
        assert rec.calls == [(("app", "job", "done"), {"rows": 3}, {"job": "import"}, {"c": 1})]

    def test_config_defaults_to_none(self, runtime):
        rec = Recorder()
        telemetry.attach("test-h", ("app", "x"), rec)
        telemetry.execute(("app", "x"), {}, {})
        telemetry.detach("test-h")
        assert rec.calls[0][3] is None

    def test_a_handler_gets_only_its_exact_event(self, runtime):
        rec = Recorder()
        telemetry.attach("test-h", ("a", "b"), rec)
        telemetry.execute(("a", "b", "c"), {}, {})
        telemetry.execute(("a",), {}, {})
        telemetry.execute(("a", "c"), {}, {})
        telemetry.execute(("a", "b"), {}, {})
        telemetry.detach("test-h")
        assert rec.events == [("a", "b")]

    def test_handlers_run_in_attach_order(self, runtime):
        order: list[str] = []
        for name in ["test-3", "test-1", "test-2"]:
            telemetry.attach(name, ("app", "x"), lambda e, m, md, c: order.append(c), config=name)
        telemetry.execute(("app", "x"), {}, {})
        for name in ["test-3", "test-1", "test-2"]:
            telemetry.detach(name)
        assert order == ["test-3", "test-1", "test-2"]

    def test_handlers_run_synchronously_in_the_emitting_thread(self, runtime):
        threads: list[threading.Thread] = []
        telemetry.attach(
            "test-h", ("app", "x"), lambda e, m, md, c: threads.append(threading.current_thread())
        )
        emitter = in_thread(
            lambda: (telemetry.execute(("app", "x"), {}, {}), threading.current_thread())[1]
        )
        telemetry.detach("test-h")
        assert threads == [emitter]
        assert emitter is not threading.current_thread()

    def test_attaching_an_attached_id_raises_value_error_and_keeps_the_first(self, runtime):
        first, second = Recorder(), Recorder()
        telemetry.attach("test-h", ("app", "x"), first)
        with pytest.raises(ValueError, match=r"test-h.*already attached"):
            telemetry.attach("test-h", ("app", "y"), second)
        with pytest.raises(ValueError, match="already attached"):
            telemetry.attach("test-h", ("app", "x"), second)
        telemetry.execute(("app", "x"), {}, {})
        telemetry.execute(("app", "y"), {}, {})
        assert [h.event for h in telemetry.list_handlers() if h.id == "test-h"] == [("app", "x")]
        telemetry.detach("test-h")
        assert first.events == [("app", "x")]
        assert second.calls == []

    def test_an_id_can_be_attached_again_after_detach(self, runtime):
        rec = Recorder()
        telemetry.attach("test-h", ("app", "x"), Recorder())
        telemetry.detach("test-h")
        telemetry.attach("test-h", ("app", "x"), rec)
        telemetry.execute(("app", "x"), {}, {})
        telemetry.detach("test-h")
        assert rec.events == [("app", "x")]

    @pytest.mark.parametrize("event", ["app.job", ["app", "job"], None, 42])
    def test_an_event_that_is_not_a_tuple_raises_type_error_naming_it(self, runtime, event):
        with pytest.raises(TypeError, match="non-empty tuple of str") as info:
            telemetry.attach("test-h", event, Recorder())
        assert repr(event) in str(info.value)
        assert telemetry.list_handlers() == []

    def test_an_empty_event_raises_value_error(self, runtime):
        with pytest.raises(ValueError, match=r"non-empty tuple of str.*got \(\)"):
            telemetry.attach("test-h", (), Recorder())

    def test_an_event_with_a_non_str_item_raises_type_error_naming_the_item(self, runtime):
        with pytest.raises(TypeError, match=r"item 3 is a int"):
            telemetry.attach("test-h", ("app", 3), Recorder())

    def test_a_handler_that_is_not_callable_raises_type_error(self, runtime):
        with pytest.raises(TypeError, match=r"handler function.*got 'nope'"):
            telemetry.attach("test-h", ("app", "x"), "nope")
        assert telemetry.list_handlers() == []

    def test_an_unhashable_id_raises_type_error(self, runtime):
        with pytest.raises(TypeError, match="hashable handler id"):
            telemetry.attach(["test-h"], ("app", "x"), Recorder())


class TestAttachMany:
    def test_one_id_gets_each_of_its_events(self, runtime):
        rec = Recorder()
        telemetry.attach_many("test-h", [("app", "a"), ("app", "b")], rec, config="c")
        for event in [("app", "a"), ("app", "b"), ("app", "c")]:
            telemetry.execute(event, {}, {})
        assert telemetry.detach("test-h") is True
        telemetry.execute(("app", "a"), {}, {})
        assert rec.events == [("app", "a"), ("app", "b")]
        assert {call[3] for call in rec.calls} == {"c"}

    def test_an_event_listed_twice_is_attached_once(self, runtime):
        rec = Recorder()
        telemetry.attach_many("test-h", iter([("app", "a"), ("app", "a")]), rec)
        telemetry.execute(("app", "a"), {}, {})
        telemetry.detach("test-h")
        assert rec.events == [("app", "a")]

    def test_a_single_event_raises_type_error_pointing_to_attach(self, runtime):
        with pytest.raises(TypeError, match=r"one event.*telemetry\.attach"):
            telemetry.attach_many("test-h", ("app", "a"), Recorder())

    def test_no_events_raises_value_error(self, runtime):
        with pytest.raises(ValueError, match="at least one event"):
            telemetry.attach_many("test-h", [], Recorder())

    def test_a_bad_event_in_the_list_attaches_nothing(self, runtime):
        with pytest.raises(TypeError, match=r"\['app', 'b'\]"):
            telemetry.attach_many("test-h", [("app", "a"), ["app", "b"]], Recorder())
        with pytest.raises(TypeError, match="list of events"):
            telemetry.attach_many("test-h", 7, Recorder())
        with pytest.raises(TypeError, match="handler function"):
            telemetry.attach_many("test-h", [("app", "a")], None)
        assert telemetry.list_handlers() == []

    def test_an_id_attached_with_attach_cannot_be_attached_again_with_attach_many(self, runtime):
        telemetry.attach("test-h", ("app", "a"), Recorder())
        with pytest.raises(ValueError, match="already attached"):
            telemetry.attach_many("test-h", [("app", "b")], Recorder())
        telemetry.detach("test-h")


class TestDetach:
    def test_detach_returns_whether_the_id_was_attached(self, runtime):
        telemetry.attach("test-h", ("app", "x"), Recorder())
        assert telemetry.detach("test-h") is True
        assert telemetry.detach("test-h") is False
        assert telemetry.detach("test-never") is False

    def test_a_detached_handler_gets_nothing_and_the_others_keep_theirs(self, runtime):
        gone, kept = Recorder(), Recorder()
        telemetry.attach("test-gone", ("app", "x"), gone)
        telemetry.attach("test-kept", ("app", "x"), kept)
        telemetry.detach("test-gone")
        telemetry.execute(("app", "x"), {}, {})
        telemetry.detach("test-kept")
        assert gone.calls == []
        assert kept.events == [("app", "x")]

    def test_an_unhashable_id_raises_type_error(self, runtime):
        with pytest.raises(TypeError, match="hashable"):
            telemetry.detach({})


class TestListHandlers:
    def test_list_handlers_returns_one_handler_per_id_and_event_in_attach_order(self, runtime):
        rec = Recorder()
        telemetry.attach("test-1", ("otpy", "supervisor", "restart"), rec, config=1)
        telemetry.attach_many(
            "test-2", [("otpy", "process", "crash"), ("otpy", "supervisor", "max_intensity")], rec
        )
        everything = telemetry.list_handlers()
        telemetry.detach("test-1")
        telemetry.detach("test-2")
        assert everything == [
            telemetry.Handler("test-1", ("otpy", "supervisor", "restart"), rec, 1),
            telemetry.Handler("test-2", ("otpy", "process", "crash"), rec, None),
            telemetry.Handler("test-2", ("otpy", "supervisor", "max_intensity"), rec, None),
        ]
        assert telemetry.list_handlers() == []

    def test_a_prefix_selects_the_events_that_start_with_it(self, runtime):
        rec = Recorder()
        telemetry.attach("test-1", ("otpy", "supervisor", "restart"), rec)
        telemetry.attach("test-2", ("otpy", "supervisor", "max_intensity"), rec)
        telemetry.attach("test-3", ("otpy", "process", "crash"), rec)
        telemetry.attach("test-4", ("otpyx",), rec)
        by_prefix = {
            prefix: [h.id for h in telemetry.list_handlers(prefix)]
            for prefix in [
                (),
                ("otpy",),
                ("otpy", "supervisor"),
                ("otpy", "supervisor", "restart"),
                ("otpy", "supervisor", "restart", "more"),
                ("other",),
            ]
        }
        for name in ["test-1", "test-2", "test-3", "test-4"]:
            telemetry.detach(name)
        assert by_prefix == {
            (): ["test-1", "test-2", "test-3", "test-4"],
            ("otpy",): ["test-1", "test-2", "test-3"],
            ("otpy", "supervisor"): ["test-1", "test-2"],
            ("otpy", "supervisor", "restart"): ["test-1"],
            ("otpy", "supervisor", "restart", "more"): [],
            ("other",): [],
        }

    def test_a_handler_shows_its_fields_and_is_frozen(self, runtime):
        rec = Recorder()
        telemetry.attach("test-h", ("app", "x"), rec, config={"k": "v"})
        [handler] = telemetry.list_handlers(("app",))
        telemetry.detach("test-h")
        assert (handler.id, handler.event, handler.function, handler.config) == (
            "test-h",
            ("app", "x"),
            rec,
            {"k": "v"},
        )
        assert type(handler).__module__ == "otpy.telemetry"
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            handler.id = "other"

    @pytest.mark.parametrize("prefix", ["otpy", ("otpy", 1), None])
    def test_a_bad_prefix_raises_type_error(self, runtime, prefix):
        with pytest.raises(TypeError, match="tuple of str"):
            telemetry.list_handlers(prefix)


class TestExecute:
    def test_metadata_defaults_to_an_empty_dict(self, runtime):
        rec = Recorder()
        telemetry.attach("test-h", ("app", "x"), rec)
        telemetry.execute(("app", "x"), {"n": 1})
        telemetry.detach("test-h")
        assert rec.calls == [(("app", "x"), {"n": 1}, {}, None)]

    def test_measurements_that_are_not_a_dict_raise_type_error(self, runtime):
        rec = Recorder()
        telemetry.attach("test-h", ("app", "x"), rec)
        with pytest.raises(TypeError, match=r"measurements as a dict; got \[1\]"):
            telemetry.execute(("app", "x"), [1], {})
        with pytest.raises(TypeError, match="metadata as a dict; got 'meta'"):
            telemetry.execute(("app", "x"), {}, "meta")
        telemetry.detach("test-h")
        assert rec.calls == []

    def test_an_event_nobody_listens_to_does_nothing(self, runtime):
        assert telemetry.execute(("app", "nobody"), {"n": 1}, {}) is None
        assert telemetry._handlers_for(("app", "nobody")) == ()

    def test_an_unhashable_event_raises_type_error_naming_it(self, runtime):
        with pytest.raises(TypeError, match=r"non-empty tuple of str.*\['app', 'x'\]"):
            telemetry.execute(["app", "x"], {}, {})

    def test_handlers_for_gives_the_attached_handlers_of_an_event(self, runtime):
        rec = Recorder()
        telemetry.attach("test-1", ("app", "x"), rec)
        telemetry.attach("test-2", ("app", "x"), rec)
        found = telemetry._handlers_for(("app", "x"))
        telemetry.detach("test-1")
        telemetry.detach("test-2")
        assert [h.id for h in found] == ["test-1", "test-2"]
        assert telemetry._handlers_for(("app", "x")) == ()


class TestFailingHandlers:
    def test_a_failing_handler_is_detached_from_all_its_events(self, runtime):
        telemetry.attach_many("test-bad", [("app", "a"), ("app", "b")], fail)
        telemetry.execute(("app", "a"), {}, {})
        assert [h for h in telemetry.list_handlers() if h.id == "test-bad"] == []
        assert telemetry.detach("test-bad") is False

    def test_the_exception_does_not_reach_the_emitter_and_the_other_handlers_run(self, runtime):
        before, after = Recorder(), Recorder()
        telemetry.attach("test-before", ("app", "a"), before)
        telemetry.attach("test-bad", ("app", "a"), fail)
        telemetry.attach("test-after", ("app", "a"), after)
        telemetry.execute(("app", "a"), {"n": 1}, {})
        telemetry.execute(("app", "a"), {"n": 2}, {})
        telemetry.detach("test-before")
        telemetry.detach("test-after")
        assert [call[1] for call in before.calls] == [{"n": 1}, {"n": 2}]
        assert [call[1] for call in after.calls] == [{"n": 1}, {"n": 2}]

    def test_a_failure_is_logged_with_its_traceback(self, runtime, caplog):
        telemetry.attach("test-bad", ("app", "a"), fail)
        with caplog.at_level(logging.ERROR, logger="otpy.telemetry"):
            telemetry.execute(("app", "a"), {}, {})
        [record] = [r for r in caplog.records if r.name == "otpy.telemetry"]
        assert record.levelno == logging.ERROR
        assert "'test-bad'" in record.getMessage()
        assert "('app', 'a')" in record.getMessage()
        assert "detached" in record.getMessage()
        exc = record.exc_info[1]
        assert isinstance(exc, RuntimeError) and str(exc) == "handler is broken"
        assert "in fail" in caplog.text  # the traceback is in the log

    def test_a_failure_emits_the_failure_event_with_handler_event_and_exception(self, runtime):
        rec = Recorder()
        telemetry.attach("test-watch", FAILURE, rec)
        telemetry.attach("test-bad", ("app", "a"), fail, config="c")
        telemetry.execute(("app", "a"), {}, {})
        telemetry.detach("test-watch")
        [(event, measurements, metadata, _)] = rec.calls
        assert event == FAILURE
        assert set(measurements) == {"monotonic_time", "system_time"}
        assert set(metadata) == {"handler_id", "event", "exception"}
        assert metadata["handler_id"] == "test-bad"
        assert metadata["event"] == ("app", "a")
        assert isinstance(metadata["exception"], RuntimeError)
        assert str(metadata["exception"]) == "handler is broken"

    def test_a_failing_failure_handler_is_detached_without_another_failure_event(
        self, runtime, caplog
    ):
        rec = Recorder()
        telemetry.attach("test-bad-watch", FAILURE, fail)
        telemetry.attach("test-watch", FAILURE, rec)
        telemetry.attach("test-bad", ("app", "a"), fail)
        with caplog.at_level(logging.ERROR, logger="otpy.telemetry"):
            telemetry.execute(("app", "a"), {}, {})
            telemetry.execute(FAILURE, {}, {"handler_id": "fake", "event": ("x",)})
        telemetry.detach("test-watch")
        assert [call[2]["handler_id"] for call in rec.calls] == ["test-bad", "fake"]
        ids = [h.id for h in telemetry.list_handlers()]
        assert "test-bad" not in ids and "test-bad-watch" not in ids
        assert len([r for r in caplog.records if r.name == "otpy.telemetry"]) == 2

    def test_only_the_failing_attachment_is_detached(self, runtime):
        rec = Recorder()

        def replace_then_fail(event, measurements, metadata, config):
            telemetry.detach("test-h")
            telemetry.attach("test-h", ("app", "a"), rec)
            raise RuntimeError("old handler fails after its id was reused")

        telemetry.attach("test-h", ("app", "a"), replace_then_fail)
        telemetry.execute(("app", "a"), {}, {})
        telemetry.execute(("app", "a"), {}, {})
        assert [h.function for h in telemetry.list_handlers() if h.id == "test-h"] == [rec]
        telemetry.detach("test-h")
        assert rec.events == [("app", "a")]

    def test_a_base_exception_is_not_caught(self, runtime):
        class Interrupt(BaseException):
            pass

        def interrupted(event, measurements, metadata, config):
            raise Interrupt

        telemetry.attach("test-h", ("app", "a"), interrupted)
        with pytest.raises(Interrupt):
            telemetry.execute(("app", "a"), {}, {})
        assert telemetry.detach("test-h") is True


class TestSpan:
    PREFIX = ("app", "job")
    EVENTS = [(*PREFIX, "start"), (*PREFIX, "stop"), (*PREFIX, "exception")]

    @pytest.fixture
    def rec(self):
        rec = Recorder()
        telemetry.attach_many("test-span", self.EVENTS, rec)
        yield rec
        telemetry.detach("test-span")

    def test_a_span_emits_start_then_stop_with_the_metadata_added_in_the_block(self, runtime, rec):
        with telemetry.span(self.PREFIX, {"job": "import"}) as meta:
            assert meta == {"job": "import"}
            meta["rows"] = 3
        [(start, start_m, start_md, _), (stop, stop_m, stop_md, _)] = rec.calls
        assert (start, stop) == (("app", "job", "start"), ("app", "job", "stop"))
        assert set(start_m) == {"monotonic_time", "system_time"}
        assert start_md == {"job": "import"}  # what the block added is not in the start event
        assert set(stop_m) == {"duration", "monotonic_time"}
        assert stop_md == {"job": "import", "rows": 3}
        assert stop_m["duration"] >= 0
        assert start_m["monotonic_time"] + stop_m["duration"] == pytest.approx(
            stop_m["monotonic_time"]
        )

    def test_the_metadata_given_to_span_is_not_changed(self, runtime, rec):
        given = {"job": "import"}
        with telemetry.span(self.PREFIX, given) as meta:
            meta["rows"] = 3
        assert given == {"job": "import"}

    def test_an_exception_emits_the_exception_event_and_propagates(self, runtime, rec):
        error = KeyError("missing")

        def explode():
            raise error

        with pytest.raises(KeyError) as info:
            with telemetry.span(self.PREFIX, {"job": "import"}) as meta:
                meta["step"] = 2
                explode()
        assert info.value is error
        assert rec.events == [("app", "job", "start"), ("app", "job", "exception")]
        _, measurements, metadata, _ = rec.calls[1]
        assert set(measurements) == {"duration", "monotonic_time"}
        assert metadata["job"] == "import" and metadata["step"] == 2
        assert metadata["kind"] is KeyError
        assert metadata["reason"] is error
        assert isinstance(metadata["stacktrace"], traceback.StackSummary)
        assert metadata["stacktrace"][-1].name == "explode"

    def test_span_decorates_a_function_making_each_call_a_span(self, runtime, rec):
        @telemetry.span(self.PREFIX)
        def double(x):
            """Doubles."""
            return 2 * x

        assert double(2) == 4
        assert double(x=5) == 10
        assert double.__name__ == "double" and double.__doc__ == "Doubles."
        assert rec.events == [(*self.PREFIX, "start"), (*self.PREFIX, "stop")] * 2
        assert [call[2] for call in rec.calls] == [{}, {}, {}, {}]

    def test_span_with_metadata_decorates_and_each_call_gets_fresh_metadata(self, runtime, rec):
        @telemetry.span(self.PREFIX, {"job": "report"})
        def work():
            return "done"

        assert work() == "done"
        assert work() == "done"
        assert [call[2] for call in rec.calls] == [{"job": "report"}] * 4
        assert len({id(call[2]) for call in rec.calls}) == 4

    def test_a_decorated_function_that_raises_emits_the_exception_event(self, runtime, rec):
        @telemetry.span(self.PREFIX)
        def broken():
            raise ValueError("no")

        with pytest.raises(ValueError, match="no"):
            broken()
        assert rec.events == [(*self.PREFIX, "start"), (*self.PREFIX, "exception")]
        assert rec.calls[1][2]["kind"] is ValueError

    def test_a_decorated_coroutine_function_spans_the_awaited_call(self, runtime, rec):
        order: list[object] = []
        telemetry.attach("test-order", (*self.PREFIX, "stop"), lambda *a: order.append("stop"))

        @telemetry.span(self.PREFIX)
        async def fetch():
            await asyncio.sleep(0)
            order.append("body")
            return 7

        assert asyncio.run(fetch()) == 7
        telemetry.detach("test-order")
        assert order == ["body", "stop"]
        assert rec.events == [(*self.PREFIX, "start"), (*self.PREFIX, "stop")]

    def test_a_span_object_serves_one_with_block(self, runtime, rec):
        cm = telemetry.span(self.PREFIX)
        with cm:
            pass
        with pytest.raises(RuntimeError, match="already used"), cm:
            pass

    def test_a_span_works_with_nobody_listening(self, runtime):
        with telemetry.span(("app", "quiet"), {"a": 1}) as meta:
            meta["b"] = 2
        assert meta == {"a": 1, "b": 2}

    def test_bad_arguments_raise(self, runtime):
        with pytest.raises(ValueError, match="non-empty"):
            telemetry.span(())
        with pytest.raises(TypeError, match="tuple of str"):
            telemetry.span("app.job")
        with pytest.raises(TypeError, match="metadata as a dict"):
            telemetry.span(("app",), [("a", 1)])
        with pytest.raises(TypeError, match="decorates a function"):
            telemetry.span(("app",))(42)


class TestConcurrency:
    def test_attach_and_detach_racing_with_execute_lose_no_handler(self, runtime):
        event = ("app", "hot")
        emitters, emissions, churners, rounds = 4, 2000, 3, 300
        counts = {f"test-stable-{i}": 0 for i in range(3)}
        lock = threading.Lock()
        errors: list[BaseException] = []

        def count(e, m, md, handler_id):
            with lock:
                counts[handler_id] += 1

        for handler_id in counts:
            telemetry.attach(handler_id, event, count, config=handler_id)
        start = threading.Barrier(emitters + churners)

        def emit():
            try:
                start.wait()
                for _ in range(emissions):
                    telemetry.execute(event, {}, {})
            except BaseException as exc:
                errors.append(exc)

        def churn(n):
            try:
                start.wait()
                for i in range(rounds):
                    transient = f"test-churn-{n}-{i}"
                    telemetry.attach_many(transient, [event, ("app", "other", str(n))], Recorder())
                    telemetry.attach(f"test-kept-{n}-{i}", ("app", "kept"), Recorder())
                    assert telemetry.detach(transient)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=emit) for _ in range(emitters)]
        threads += [threading.Thread(target=churn, args=(n,)) for n in range(churners)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert not any(t.is_alive() for t in threads)
        kept = {h.id for h in telemetry.list_handlers(("app", "kept"))}
        hot = [h.id for h in telemetry.list_handlers(event)]
        for handler_id in [*counts, *kept]:
            telemetry.detach(handler_id)
        assert errors == []
        assert counts == dict.fromkeys(counts, emitters * emissions)
        assert kept == {f"test-kept-{n}-{i}" for n in range(churners) for i in range(rounds)}
        assert hot == list(counts)
        assert telemetry.list_handlers(("app",)) == []
