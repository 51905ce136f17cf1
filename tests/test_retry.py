"""Acceptance tests for API.md's "Retries (`otpy.retry`)" (the async_stream plug-in is
tested in test_task_retry.py).

RetryPolicy's defaults and validation, the wait formula (delays), on as a class, a
tuple or a function, what propagates and when, timeout, set_testing, telemetry, the
decorator and call, and retries inside processes (killed while waiting, in a
GenServer handler, from a plain thread).
"""

from __future__ import annotations

import inspect
import itertools
import math
import threading
import time

import attrs
import pytest
from conftest import WAIT, down_of, in_thread, tagged, wait_until

import otpy
import otpy.retry
from otpy import telemetry
from otpy.retry import RetryPolicy, retry
from otpy.testing import assert_receive, refute_receive

pytestmark = pytest.mark.timeout(30)

QUICK = {"wait_initial": 0.001, "wait_max": 1.0, "wait_exp_base": 2.0, "wait_jitter": 0.0}
"""Policy options whose waits are a few milliseconds and exactly foreseeable."""


# --- helpers -----------------------------------------------------------------------------------


class Flaky:
    """A function that raises the given exceptions one per call, then returns ``value``."""

    def __init__(self, *errors: BaseException, value: object = "done") -> None:
        self.lock = threading.Lock()
        self.errors = list(errors)
        self.value = value
        self.calls = 0
        self.args: list[tuple] = []

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.calls += 1
            self.args.append((args, kwargs))
            error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        return self.value


class Always:
    """A function that raises a new ``kind`` exception on every call; keeps them all."""

    def __init__(self, kind: type[BaseException] = ConnectionError) -> None:
        self.lock = threading.Lock()
        self.kind = kind
        self.raised: list[BaseException] = []

    @property
    def calls(self) -> int:
        with self.lock:
            return len(self.raised)

    def __call__(self, *args):
        with self.lock:
            error = self.kind(f"call {len(self.raised) + 1}")
            self.raised.append(error)
        raise error


class Recorder:
    """Collects the retry telemetry events: (event name, measurements, metadata, pid)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, dict, dict, otpy.Pid]] = []

    def handle(self, event, measurements, metadata, config):
        with self.lock:
            self.events.append((event[-1], dict(measurements), dict(metadata), otpy.self()))

    def of(self, name: str) -> list[tuple[dict, dict]]:
        with self.lock:
            return [(m, md) for (n, m, md, _) in self.events if n == name]

    def measurements(self, name: str) -> list[dict]:
        return [m for m, _ in self.of(name)]

    def pids(self, name: str) -> list[otpy.Pid]:
        with self.lock:
            return [pid for (n, _, _, pid) in self.events if n == name]


@pytest.fixture
def events():
    recorder = Recorder()
    handler = f"test-retry-{id(recorder)}"
    telemetry.attach(handler + "-s", ("otpy", "retry", "scheduled"), recorder.handle)
    telemetry.attach(handler + "-e", ("otpy", "retry", "exhausted"), recorder.handle)
    yield recorder
    telemetry.detach(handler + "-s")
    telemetry.detach(handler + "-e")


@pytest.fixture
def testing_mode():
    """set_testing may be switched on in the test; it is off again afterwards."""
    yield otpy.retry.set_testing
    otpy.retry.set_testing(False)


def expected_base(policy: RetryPolicy, n: int) -> float:
    """API.md's wait before retry n (1-based), without the jitter."""
    return min(policy.wait_max, policy.wait_initial * policy.wait_exp_base ** (n - 1))


# --- RetryPolicy -------------------------------------------------------------------------------


class TestRetryPolicy:
    def test_the_defaults_are_api_md_s(self, runtime):
        policy = RetryPolicy(on=ConnectionError)
        assert (
            policy.attempts,
            policy.timeout,
            policy.wait_initial,
            policy.wait_max,
            policy.wait_exp_base,
            policy.wait_jitter,
        ) == (10, 45.0, 0.1, 5.0, 2.0, 1.0)
        assert policy.on is ConnectionError

    def test_on_is_required(self, runtime):
        with pytest.raises(TypeError, match="on"):
            RetryPolicy()  # type: ignore[call-arg]

    def test_on_may_be_given_by_position_and_the_rest_by_keyword_only(self, runtime):
        assert RetryPolicy(OSError).on is OSError
        with pytest.raises(TypeError):
            RetryPolicy(OSError, 3)  # type: ignore[misc]

    def test_a_policy_is_a_frozen_comparable_value(self, runtime):
        policy = RetryPolicy(on=OSError, attempts=3)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            policy.attempts = 4  # type: ignore[misc]
        assert policy == RetryPolicy(on=OSError, attempts=3)
        assert hash(policy) == hash(RetryPolicy(on=OSError, attempts=3))
        assert attrs.evolve(policy, attempts=4).attempts == 4

    def test_it_presents_itself_as_otpy_retry_retry_policy(self, runtime):
        assert RetryPolicy.__module__ == "otpy.retry"
        assert repr(RetryPolicy(on=OSError)).startswith("RetryPolicy(on=<class 'OSError'>")

    @pytest.mark.parametrize(
        "good",
        [
            {"attempts": 1},
            {"timeout": None},
            {"timeout": 0},
            {"timeout": 3},
            {"wait_initial": 0, "wait_max": 0, "wait_jitter": 0},
            {"wait_exp_base": 1},
            {"wait_initial": 10.0, "wait_max": 1.0},
        ],
    )
    def test_boundary_values_are_accepted(self, runtime, good):
        policy = RetryPolicy(on=OSError, **good)
        for key, value in good.items():
            assert getattr(policy, key) == value


class TestValidation:
    @pytest.mark.parametrize(
        "key, bad, error",
        [
            ("attempts", 0, ValueError),
            ("attempts", -2, ValueError),
            ("attempts", 2.5, TypeError),
            ("attempts", True, TypeError),
            ("attempts", "3", TypeError),
            ("attempts", None, TypeError),
            ("timeout", -1, ValueError),
            ("timeout", -0.5, ValueError),
            ("timeout", math.nan, ValueError),
            ("timeout", "5", TypeError),
            ("timeout", True, TypeError),
            ("wait_initial", -0.1, ValueError),
            ("wait_initial", math.inf, ValueError),
            ("wait_initial", math.nan, ValueError),
            ("wait_initial", "0.1", TypeError),
            ("wait_initial", None, TypeError),
            ("wait_max", -1, ValueError),
            ("wait_max", math.inf, ValueError),
            ("wait_max", False, TypeError),
            ("wait_jitter", -1, ValueError),
            ("wait_jitter", math.inf, ValueError),
            ("wait_jitter", [1], TypeError),
            ("wait_exp_base", 0.5, ValueError),
            ("wait_exp_base", 0, ValueError),
            ("wait_exp_base", math.inf, ValueError),
            ("wait_exp_base", True, TypeError),
        ],
    )
    def test_a_bad_number_raises_naming_the_option_the_value_and_what_is_allowed(
        self, runtime, key, bad, error
    ):
        with pytest.raises(error) as info:
            RetryPolicy(on=OSError, **{key: bad})
        message = str(info.value)
        assert key in message
        assert repr(bad) in message
        assert ">=" in message

    def test_an_exception_instance_as_on_says_to_pass_its_class(self, runtime):
        with pytest.raises(TypeError) as info:
            RetryPolicy(on=ConnectionError("refused"))  # type: ignore[arg-type]
        assert "not an exception instance" in str(info.value)
        assert "on=ConnectionError" in str(info.value)

    @pytest.mark.parametrize("bad", [int, dict, (OSError, int)])
    def test_a_class_that_is_not_an_exception_is_refused(self, runtime, bad):
        with pytest.raises(TypeError) as info:
            RetryPolicy(on=bad)  # type: ignore[arg-type]
        assert "is not an exception class" in str(info.value)

    @pytest.mark.parametrize("bad", [KeyboardInterrupt, BaseException, (OSError, SystemExit)])
    def test_a_base_exception_that_is_not_an_exception_is_refused(self, runtime, bad):
        with pytest.raises(ValueError, match="never retried"):
            RetryPolicy(on=bad)

    def test_an_empty_tuple_is_refused(self, runtime):
        with pytest.raises(ValueError, match="selects nothing"):
            RetryPolicy(on=())

    @pytest.mark.parametrize("bad", [42, "ConnectionError", None, (OSError, "x"), [OSError]])
    def test_anything_else_is_refused_with_the_three_forms(self, runtime, bad):
        with pytest.raises(TypeError) as info:
            RetryPolicy(on=bad)  # type: ignore[arg-type]
        assert repr(bad if not isinstance(bad, tuple) else bad[1]) in str(info.value)


# --- delays ------------------------------------------------------------------------------------


class TestDelays:
    def test_the_waits_follow_the_formula_up_to_wait_max(self, runtime):
        policy = RetryPolicy(
            on=OSError,
            attempts=7,
            wait_initial=0.5,
            wait_exp_base=3.0,
            wait_max=10.0,
            wait_jitter=0,
        )
        assert list(policy.delays()) == [0.5, 1.5, 4.5, 10.0, 10.0, 10.0]

    def test_there_are_attempts_minus_one_waits(self, runtime):
        assert len(list(RetryPolicy(on=OSError).delays(seed=3))) == 9
        assert list(RetryPolicy(on=OSError, attempts=1).delays()) == []

    def test_the_same_seed_gives_the_same_list(self, runtime):
        policy = RetryPolicy(on=OSError)
        assert list(policy.delays(seed=1)) == list(policy.delays(seed=1))
        assert list(policy.delays(seed="abc")) == list(policy.delays(seed="abc"))
        assert list(policy.delays(seed=1)) != list(policy.delays(seed=2))

    def test_the_jitter_adds_between_zero_and_wait_jitter(self, runtime):
        policy = RetryPolicy(on=OSError, attempts=9, wait_initial=0.2, wait_jitter=0.5)
        extras = []
        for seed in range(40):
            for n, delay in enumerate(policy.delays(seed=seed), start=1):
                extra = delay - expected_base(policy, n)
                assert -1e-12 <= extra <= 0.5 + 1e-12
                extras.append(extra)
        assert max(extras) > 0.25 and min(extras) < 0.25  # spread over the range, not constant

    def test_the_cap_applies_before_the_jitter(self, runtime):
        policy = RetryPolicy(on=OSError, attempts=12, wait_initial=1.0, wait_max=3.0)
        late = list(policy.delays(seed=5))[4:]
        assert all(3.0 <= d <= 4.0 for d in late)
        assert max(late) > 3.0

    def test_huge_attempt_numbers_neither_overflow_nor_take_long(self, runtime):
        policy = RetryPolicy(on=OSError, attempts=10**9, wait_jitter=0)
        first = list(itertools.islice(policy.delays(), 3000))  # 2.0 ** 2999 would overflow
        assert first[:3] == [0.1, 0.2, 0.4]
        assert first[-1] == 5.0
        zero = RetryPolicy(on=OSError, attempts=10**9, wait_initial=0, wait_jitter=0)
        assert list(itertools.islice(zero.delays(), 2000, 2001)) == [0.0]
        int_base = RetryPolicy(on=OSError, attempts=10**9, wait_exp_base=3, wait_jitter=0)
        assert list(itertools.islice(int_base.delays(), 5000, 5001)) == [5.0]

    def test_a_seed_random_cannot_take_is_refused_at_once(self, runtime):
        with pytest.raises(TypeError):
            RetryPolicy(on=OSError).delays(seed=[1])  # type: ignore[arg-type]

    def test_delays_show_the_policy_whatever_set_testing_says(self, runtime, testing_mode):
        policy = RetryPolicy(on=OSError, attempts=3, wait_jitter=0)
        testing_mode(True, attempts=1)
        assert list(policy.delays()) == [0.1, 0.2]


# --- what is retried ---------------------------------------------------------------------------


class TestSelection:
    def test_a_selected_class_is_retried_until_the_call_succeeds(self, runtime):
        fn = Flaky(ConnectionError("a"), ConnectionError("b"))
        assert otpy.retry.call(fn, policy=RetryPolicy(on=ConnectionError, **QUICK)) == "done"
        assert fn.calls == 3

    def test_classes_match_with_isinstance(self, runtime):
        fn = Flaky(ConnectionRefusedError(), TimeoutError())
        assert otpy.retry.call(fn, policy=RetryPolicy(on=OSError, **QUICK)) == "done"
        assert fn.calls == 3

    def test_a_tuple_selects_each_of_its_classes(self, runtime):
        fn = Flaky(TimeoutError(), ConnectionError(), TimeoutError())
        policy = RetryPolicy(on=(ConnectionError, TimeoutError), **QUICK)
        assert otpy.retry.call(fn, policy=policy) == "done"
        assert fn.calls == 4

    def test_an_exception_on_does_not_select_propagates_at_once_without_telemetry(
        self, runtime, events
    ):
        error = ValueError("not transient")
        fn = Flaky(ConnectionError(), error)
        with pytest.raises(ValueError) as info:
            otpy.retry.call(fn, policy=RetryPolicy(on=ConnectionError, **QUICK))
        assert info.value is error
        assert fn.calls == 2
        assert len(events.of("scheduled")) == 1  # for the ConnectionError only
        assert events.of("exhausted") == []

    def test_the_arguments_reach_every_call(self, runtime):
        fn = Flaky(OSError())
        assert otpy.retry.call(fn, 1, 2, policy=RetryPolicy(on=OSError, **QUICK), k=3) == "done"
        assert fn.args == [((1, 2), {"k": 3})] * 2

    def test_a_base_exception_is_never_retried(self, runtime, events):
        class Abort(BaseException):
            pass

        asked = []
        fn = Flaky(Abort())
        policy = RetryPolicy(on=lambda exc: asked.append(exc) or True, **QUICK)
        with pytest.raises(Abort):
            otpy.retry.call(fn, policy=policy)
        assert fn.calls == 1
        assert asked == []
        assert events.events == []


class TestPredicate:
    def test_the_function_gets_the_exception_and_true_retries_after_the_computed_wait(
        self, runtime, events
    ):
        first, second = OSError(1), OSError(2)
        seen = []

        def transient(exc):
            seen.append(exc)
            return True

        fn = Flaky(first, second)
        policy = RetryPolicy(on=transient, **QUICK)
        assert otpy.retry.call(fn, policy=policy) == "done"
        assert seen == [first, second]
        assert [m["delay"] for m in events.measurements("scheduled")] == [0.001, 0.002]

    def test_false_stops_and_the_exception_propagates_without_telemetry(self, runtime, events):
        error = OSError("permanent")
        fn = Flaky(error)
        with pytest.raises(OSError) as info:
            otpy.retry.call(fn, policy=RetryPolicy(on=lambda exc: False, **QUICK))
        assert info.value is error
        assert fn.calls == 1
        assert events.events == []

    def test_a_number_is_the_wait_as_it_is_without_jitter(self, runtime, events):
        fn = Flaky(OSError(), OSError(), OSError())
        waits = iter([0.01, 0, 0.002])
        policy = RetryPolicy(on=lambda exc: next(waits), wait_initial=30.0, wait_jitter=1.0)
        assert otpy.retry.call(fn, policy=policy) == "done"
        assert [m["delay"] for m in events.measurements("scheduled")] == [0.01, 0.0, 0.002]

    def test_the_function_decides_per_exception(self, runtime):
        fn = Flaky(OSError(503), OSError(503), OSError(404))

        def server_side(exc):
            return exc.args[0] >= 500

        with pytest.raises(OSError) as info:
            otpy.retry.call(fn, policy=RetryPolicy(on=server_side, **QUICK))
        assert info.value.args == (404,)
        assert fn.calls == 3

    @pytest.mark.parametrize(
        "verdict, error",
        [
            (None, TypeError),
            ("1", TypeError),
            (-1.0, ValueError),
            (math.nan, ValueError),
            (math.inf, ValueError),
        ],
    )
    def test_a_bad_verdict_raises_with_the_failure_as_context(self, runtime, verdict, error):
        failure = OSError("boom")
        with pytest.raises(error) as info:
            otpy.retry.call(Flaky(failure), policy=RetryPolicy(on=lambda exc: verdict, **QUICK))
        assert repr(verdict) in str(info.value)
        assert "True" in str(info.value) and "False" in str(info.value)
        assert info.value.__context__ is failure


# --- giving up ---------------------------------------------------------------------------------


class TestGivingUp:
    def test_after_the_last_attempt_the_last_exception_propagates_as_it_is(self, runtime):
        fn = Always(ConnectionError)
        with pytest.raises(ConnectionError) as info:
            otpy.retry.call(fn, policy=RetryPolicy(on=ConnectionError, attempts=4, **QUICK))
        assert fn.calls == 4
        assert info.value is fn.raised[-1]
        assert info.value.__cause__ is None
        frames = [tb.tb_frame.f_code.co_name for tb in _walk(info.value.__traceback__)]
        assert "__call__" in frames  # the traceback still reaches into the function

    def test_one_attempt_means_no_retry(self, runtime, events):
        fn = Always()
        with pytest.raises(ConnectionError):
            otpy.retry.call(fn, policy=RetryPolicy(on=ConnectionError, attempts=1, **QUICK))
        assert fn.calls == 1
        assert events.measurements("scheduled") == []
        assert events.measurements("exhausted") == [{"attempts": 1}]

    def test_no_retry_is_made_whose_wait_would_end_after_the_timeout(self, runtime, events):
        fn = Always()
        policy = RetryPolicy(
            on=ConnectionError, wait_initial=20.0, wait_max=20.0, wait_jitter=0, timeout=5.0
        )
        with pytest.raises(ConnectionError):
            otpy.retry.call(fn, policy=policy)  # would wait 20 s: it gives up instead
        assert fn.calls == 1
        assert events.measurements("scheduled") == []
        assert events.measurements("exhausted") == [{"attempts": 1}]

    def test_the_timeout_bounds_the_whole_run_waits_included(self, runtime, events):
        fn = Always()
        policy = RetryPolicy(
            on=ConnectionError,
            attempts=1000,
            timeout=0.5,
            wait_initial=0.05,
            wait_exp_base=1.0,
            wait_jitter=0,
        )
        start = time.monotonic()
        with pytest.raises(ConnectionError) as info:
            otpy.retry.call(fn, policy=policy)
        elapsed = time.monotonic() - start
        waits = [m["delay"] for m in events.measurements("scheduled")]
        assert info.value is fn.raised[-1]
        assert 1 <= len(waits) <= 10  # ten waits of 0.05 s fit in 0.5 s, not more
        assert sum(waits) <= 0.5
        assert events.measurements("exhausted") == [{"attempts": fn.calls}]
        assert fn.calls == len(waits) + 1 < 1000
        assert elapsed >= sum(waits)

    def test_timeout_zero_allows_no_retry_that_waits(self, runtime):
        fn = Always()
        with pytest.raises(ConnectionError):
            otpy.retry.call(fn, policy=RetryPolicy(on=ConnectionError, timeout=0))
        assert fn.calls == 1

    def test_timeout_none_leaves_only_attempts(self, runtime):
        fn = Always()
        policy = RetryPolicy(on=ConnectionError, attempts=5, timeout=None, **QUICK)
        with pytest.raises(ConnectionError):
            otpy.retry.call(fn, policy=policy)
        assert fn.calls == 5


def _walk(tb):
    while tb is not None:
        yield tb
        tb = tb.tb_next


# --- telemetry ---------------------------------------------------------------------------------


class TestTelemetry:
    def test_scheduled_comes_before_every_wait_with_attempt_and_delay(self, runtime, events):
        first, second = ConnectionError(1), ConnectionError(2)
        fn = Flaky(first, second)
        assert otpy.retry.call(fn, policy=RetryPolicy(on=ConnectionError, **QUICK)) == "done"
        assert events.of("scheduled") == [
            ({"attempt": 1, "delay": 0.001}, {"target": fn, "exception": first}),
            ({"attempt": 2, "delay": 0.002}, {"target": fn, "exception": second}),
        ]
        assert events.of("exhausted") == []

    def test_exhausted_comes_once_with_the_calls_made_and_the_last_exception(self, runtime, events):
        fn = Always()
        with pytest.raises(ConnectionError):
            otpy.retry.call(fn, policy=RetryPolicy(on=ConnectionError, attempts=3, **QUICK))
        assert [m for m, _ in events.of("scheduled")] == [
            {"attempt": 1, "delay": 0.001},
            {"attempt": 2, "delay": 0.002},
        ]
        assert events.of("exhausted") == [
            ({"attempts": 3}, {"target": fn, "exception": fn.raised[-1]})
        ]

    def test_the_delay_includes_the_jitter(self, runtime, events):
        fn = Flaky(OSError())
        policy = RetryPolicy(on=OSError, wait_initial=0.001, wait_jitter=0.01)
        otpy.retry.call(fn, policy=policy)
        [scheduled] = events.measurements("scheduled")
        assert 0.001 <= scheduled["delay"] <= 0.011

    def test_the_target_of_a_decorated_function_is_the_function_itself(self, runtime, events):
        fn = Flaky(OSError())
        wrapped = retry(on=OSError, **QUICK)(fn)
        assert wrapped() == "done"
        [(_, metadata)] = events.of("scheduled")
        assert metadata["target"] is fn

    def test_the_events_are_emitted_by_the_process_that_retries(self, runtime, events):
        me = otpy.self()
        fn = Flaky(OSError())

        def body():
            otpy.retry.call(fn, policy=RetryPolicy(on=OSError, **QUICK))
            otpy.send(me, "finished")

        pid, ref = otpy.spawn_monitor(body)
        assert_receive(lambda m: m == "finished", WAIT)
        assert_receive(down_of(ref), WAIT)
        assert events.pids("scheduled") == [pid]


# --- set_testing -------------------------------------------------------------------------------


class TestSetTesting:
    def test_testing_mode_does_not_wait(self, runtime, testing_mode, events):
        fn = Flaky(OSError(), OSError())
        policy = RetryPolicy(
            on=OSError, attempts=3, wait_initial=20.0, wait_max=20.0, wait_jitter=0, timeout=None
        )
        testing_mode(True, attempts=3)
        start = time.monotonic()
        assert otpy.retry.call(fn, policy=policy) == "done"  # 40 s of waits otherwise
        assert time.monotonic() - start < 10.0
        assert fn.calls == 3
        assert [m["delay"] for m in events.measurements("scheduled")] == [0.0, 0.0]

    def test_testing_mode_skips_a_wait_the_on_function_asked_for(self, runtime, testing_mode):
        fn = Flaky(OSError())
        testing_mode(True, attempts=2)
        assert otpy.retry.call(fn, policy=RetryPolicy(on=lambda exc: 60.0)) == "done"

    def test_the_default_allows_one_call(self, runtime, testing_mode, events):
        fn = Always()
        testing_mode(True)
        with pytest.raises(ConnectionError):
            otpy.retry.call(fn, policy=RetryPolicy(on=ConnectionError))
        assert fn.calls == 1
        assert events.measurements("exhausted") == [{"attempts": 1}]

    def test_runs_make_at_most_the_smaller_of_both_numbers_of_calls(self, runtime, testing_mode):
        testing_mode(True, attempts=5)
        few = Always()
        with pytest.raises(ConnectionError):
            otpy.retry.call(few, policy=RetryPolicy(on=ConnectionError, attempts=2))
        assert few.calls == 2
        many = Always()
        with pytest.raises(ConnectionError):
            otpy.retry.call(many, policy=RetryPolicy(on=ConnectionError, attempts=50))
        assert many.calls == 5

    def test_set_testing_false_restores_normal_runs(self, runtime, testing_mode, events):
        testing_mode(True, attempts=1)
        testing_mode(False)
        fn = Flaky(OSError(), OSError())
        assert otpy.retry.call(fn, policy=RetryPolicy(on=OSError, **QUICK)) == "done"
        assert [m["delay"] for m in events.measurements("scheduled")] == [0.001, 0.002]

    @pytest.mark.parametrize(
        "args, error",
        [
            (("yes",), TypeError),
            ((1,), TypeError),
            ((True, 0), ValueError),
            ((True, 1.5), TypeError),
        ],
    )
    def test_bad_arguments_are_refused(self, runtime, testing_mode, args, error):
        with pytest.raises(error):
            otpy.retry.set_testing(*args)


# --- the decorator and call --------------------------------------------------------------------


class TestDecorator:
    def test_keywords_build_the_policy(self, runtime):
        fn = Always()
        wrapped = retry(on=ConnectionError, attempts=3, **QUICK)(fn)
        with pytest.raises(ConnectionError):
            wrapped("x")
        assert fn.calls == 3

    def test_a_policy_may_be_given_instead(self, runtime):
        policy = RetryPolicy(on=OSError, attempts=2, **QUICK)

        @retry(policy)
        def fetch(counter):
            counter.append(1)
            if len(counter) < 2:
                raise OSError("again")
            return len(counter)

        assert fetch([]) == 2

    def test_the_wrapper_keeps_the_function_s_name_doc_and_signature(self, runtime):
        def fetch(url: str, *, retries_seen: int = 0) -> str:
            """Fetch a page."""
            return url

        wrapped = retry(on=OSError)(fetch)
        assert wrapped.__name__ == "fetch"
        assert wrapped.__doc__ == "Fetch a page."
        assert wrapped.__wrapped__ is fetch  # type: ignore[attr-defined]
        assert inspect.signature(wrapped) == inspect.signature(fetch)
        assert wrapped("u") == "u"

    def test_methods_can_be_decorated(self, runtime):
        class Client:
            def __init__(self):
                self.calls = 0

            @retry(on=ConnectionError, **QUICK)
            def get(self, key):
                self.calls += 1
                if self.calls == 1:
                    raise ConnectionError
                return key

        client = Client()
        assert client.get("k") == "k"
        assert client.calls == 2

    def test_without_on_or_a_policy_it_says_on_is_required(self, runtime):
        with pytest.raises(TypeError, match="on="):
            retry(attempts=3)

    def test_a_bare_decorator_is_refused(self, runtime):
        with pytest.raises(TypeError, match="needs arguments"):

            @retry  # type: ignore[arg-type]
            def fetch():
                pass

    def test_an_exception_class_by_position_points_to_on(self, runtime):
        with pytest.raises(TypeError, match="on="):
            retry(ConnectionError)  # type: ignore[arg-type]

    def test_a_policy_and_keywords_together_are_refused(self, runtime):
        with pytest.raises(TypeError, match="not both"):
            retry(RetryPolicy(on=OSError), attempts=3)  # type: ignore[call-overload]

    def test_bad_options_are_refused_when_decorating(self, runtime):
        with pytest.raises(ValueError, match="attempts"):
            retry(on=OSError, attempts=0)
        with pytest.raises(TypeError, match="attempt"):
            retry(on=OSError, attempt=3)  # type: ignore[call-overload]

    def test_coroutine_and_generator_functions_are_refused(self, runtime):
        async def coro():
            pass

        def gen():
            yield 1

        for fn in (coro, gen):
            with pytest.raises(TypeError, match="plain functions"):
                retry(on=OSError)(fn)


class TestCall:
    def test_the_value_of_a_call_that_does_not_fail(self, runtime, events):
        fn = Flaky(value=42)
        assert otpy.retry.call(fn, policy=RetryPolicy(on=OSError)) == 42
        assert fn.calls == 1
        assert events.events == []

    def test_the_policy_must_be_a_retry_policy(self, runtime):
        with pytest.raises(TypeError, match="RetryPolicy"):
            otpy.retry.call(print, policy=OSError)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            otpy.retry.call(print)  # type: ignore[call-arg]

    def test_fn_must_be_callable(self, runtime):
        with pytest.raises(TypeError, match="callable"):
            otpy.retry.call(3, policy=RetryPolicy(on=OSError))  # type: ignore[arg-type]


# --- in processes ------------------------------------------------------------------------------


class TestInProcesses:
    def test_a_process_killed_while_it_waits_to_retry_stops_waiting_at_once(self, runtime, events):
        fn = Always()
        policy = RetryPolicy(
            on=ConnectionError, wait_initial=60.0, wait_max=60.0, wait_jitter=0, timeout=None
        )
        unwound = threading.Event()

        def body():
            try:
                otpy.retry.call(fn, policy=policy)
            finally:
                unwound.set()  # the process's code left the wait (not only its record died)

        pid, ref = otpy.spawn_monitor(body)
        wait_until(lambda: events.of("scheduled"))  # it is about to wait, or waiting
        assert events.measurements("scheduled") == [{"attempt": 1, "delay": 60.0}]
        otpy.exit(pid, "kill")
        assert assert_receive(down_of(ref), WAIT).reason == "killed"
        assert unwound.wait(WAIT), "the killed process was still waiting to retry"
        assert fn.calls == 1
        assert events.of("exhausted") == []

    def test_processes_waiting_to_retry_hold_no_slot_of_max_threads(self, runtime, events):
        policy = RetryPolicy(
            on=ConnectionError, wait_initial=60.0, wait_max=60.0, wait_jitter=0, timeout=None
        )
        with otpy.Runtime(max_threads=1):
            me = otpy.self()
            fns = [Always() for _ in range(3)]
            monitors = [otpy.spawn_monitor(otpy.retry.call, fn, policy=policy) for fn in fns]
            wait_until(lambda: len(events.of("scheduled")) == 3)
            otpy.spawn(lambda: otpy.send(me, "a fourth process ran"))
            assert assert_receive(lambda m: m == "a fourth process ran", WAIT) == "a fourth process ran"
            for pid, ref in monitors:
                otpy.exit(pid, "kill")
                assert_receive(down_of(ref), WAIT)

    def test_a_gen_server_handler_can_retry(self, runtime, events):
        class Store(otpy.GenServer):
            def init(self, fn):
                self.fn = fn
                self.served = 0

            def handle_call(self, request, caller):
                self.served += 1
                return (otpy.retry.call(self.fn, request, policy=policy), self.served)

        policy = RetryPolicy(on=ConnectionError, **QUICK)
        fn = Flaky(ConnectionError(), ConnectionError(), value="row")
        server = Store.start_link(fn)
        assert otpy.GenServer.call(server, "key") == ("row", 1)
        assert fn.args == [(("key",), {})] * 3
        assert events.pids("scheduled") == [server, server]
        assert otpy.GenServer.call(server, "key") == ("row", 2)  # still alive, state kept
        otpy.GenServer.stop(server)

    def test_a_gen_server_whose_retries_run_out_crashes_with_the_last_exception(
        self, runtime, trap, caplog
    ):
        class Store(otpy.GenServer):
            def handle_call(self, request, caller):
                return otpy.retry.call(
                    fn, policy=RetryPolicy(on=ConnectionError, attempts=2, **QUICK)
                )

        fn = Always()
        server = Store.start_link()
        with pytest.raises(otpy.ExitError) as info:
            otpy.GenServer.call(server, "key")
        assert info.value.reason is fn.raised[-1]
        assert assert_receive(lambda m: isinstance(m, otpy.Exit) and m.pid == server, WAIT).reason is fn.raised[-1]

    def test_a_plain_thread_can_retry(self, runtime):
        fn = Flaky(OSError(), OSError(), value="ok")
        assert (
            in_thread(lambda: otpy.retry.call(fn, policy=RetryPolicy(on=OSError, **QUICK))) == "ok"
        )
        assert fn.calls == 3

    def test_concurrent_runs_do_not_share_state(self, runtime, events):
        me = otpy.self()
        policy = RetryPolicy(on=OSError, attempts=4, **QUICK)

        def body(i):
            fn = Flaky(*[OSError(i)] * (i % 4), value=i)
            otpy.send(me, ("result", otpy.retry.call(fn, policy=policy), fn.calls))

        for i in range(40):
            otpy.spawn(body, i)
        results = sorted(assert_receive(tagged("result"), WAIT)[1:] for _ in range(40))
        assert results == [(i, i % 4 + 1) for i in range(40)]
        assert len(events.of("scheduled")) == sum(i % 4 for i in range(40))
        refute_receive(tagged("result"), timeout=0)
