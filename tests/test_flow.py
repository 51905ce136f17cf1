"""Tests for otpy.flow: Flow's operations, partitions, windows and triggers, and how it runs.

Results are compared with plain Python equivalents; order is checked only where Flow keeps it
(one source feeding one stage, or the windows of one stage). Several window tests are the
examples of Elixir's Flow documentation, with the same results.
"""

from __future__ import annotations

import gc
import itertools
from collections import Counter, defaultdict
from typing import Any

import pytest
from conftest import WAIT, down_of, tagged, wait_until

import otpy
import otpy.stage as stage
from otpy.flow import Flow, TriggerInfo, Window
from otpy.testing import assert_receive

pytestmark = pytest.mark.timeout(60)

WORDS = [f"w{i % 37}" for i in range(3000)]
LINES = [" ".join(WORDS[i : i + 7]) for i in range(0, len(WORDS), 7)]


# --- helpers -----------------------------------------------------------------------------------


def count(item: Any, acc: dict[Any, int]) -> dict[Any, int]:
    acc[item] = acc.get(item, 0) + 1
    return acc


def add(item: int, acc: int) -> int:
    return item + acc


def append(item: Any, acc: list[Any]) -> list[Any]:
    acc.append(item)
    return acc


def left_over() -> set[otpy.Pid]:
    """Live processes of the test's runtime other than the test's own.

    Filtered with is_alive: processes() may still list a process killed through a link a
    moment ago while another thread finishes settling its death.
    """
    return {pid for pid in otpy.processes() if otpy.is_alive(pid)} - {otpy.self()}


class Counted:
    """An endless iterable that counts the items read from it."""

    def __init__(self) -> None:
        self.reads = 0

    def __iter__(self):
        for i in itertools.count():
            self.reads += 1
            yield i


class Manual(stage.Producer):
    """Emits the lists it is cast; a cast of "stop" ends it normally, ("crash", exc) abnormally."""

    def handle_demand(self, demand):
        return []

    def handle_cast(self, request):
        if request == "stop":
            raise otpy.Stop("normal")
        if isinstance(request, tuple) and request[0] == "crash":
            raise request[1]
        return list(request)


class Finite(stage.Producer):
    """Emits range(n) on demand, then exits normally."""

    def init(self, n):
        self.next = 0
        self.n = n

    def handle_demand(self, demand):
        events = list(range(self.next, min(self.n, self.next + demand)))
        self.next += len(events)
        if self.next >= self.n:
            otpy.send(otpy.self(), "finished")
        return events

    def handle_info(self, message):
        raise otpy.Stop("normal")


# --- sources -----------------------------------------------------------------------------------


class TestFromEnumerable:
    def test_yields_every_item_of_the_iterable(self, runtime):
        assert sorted(Flow.from_enumerable(range(5000))) == list(range(5000))

    def test_from_enumerables_reads_every_iterable(self, runtime):
        flow = Flow.from_enumerables([range(100), "abc", [None]])
        assert Counter(map(repr, flow)) == Counter(map(repr, [*range(100), *"abc", None]))

    def test_an_empty_iterable_gives_an_empty_flow(self, runtime):
        assert list(Flow.from_enumerable([]).map(str)) == []
        assert list(Flow.from_enumerable([]).partition().reduce(dict, count)) == []

    def test_a_flow_is_a_description_that_runs_again_each_time_it_is_iterated(self, runtime):
        flow = Flow.from_enumerable(range(10)).map(lambda x: x * 2)
        assert sorted(flow) == sorted(flow) == list(range(0, 20, 2))

    def test_one_source_and_one_stage_keep_the_order(self, runtime):
        assert list(Flow.from_enumerable(range(3000), stages=1).map(str)) == [
            str(i) for i in range(3000)
        ]

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"stages": 0}, ValueError, r"stages must be an int >= 1; got 0"),
            ({"max_demand": 0}, ValueError, r"max_demand must be an int >= 1; got 0"),
            ({"max_demand": 10, "min_demand": 10}, ValueError, r"min_demand must be less"),
            ({"window": "global"}, TypeError, r"window must be an otpy.flow.Window"),
        ],
    )
    def test_bad_options_raise_at_the_call(self, runtime, kwargs, error, message):
        with pytest.raises(error, match=message):
            Flow.from_enumerable(range(3), **kwargs)

    def test_a_non_iterable_is_refused_at_the_call(self, runtime):
        with pytest.raises(TypeError, match=r"from_enumerables needs iterables; got 42"):
            Flow.from_enumerable(42)  # type: ignore[arg-type]


# --- mappers -------------------------------------------------------------------------------------


class TestMappers:
    def test_map_filter_reject_and_flat_map_match_python(self, runtime):
        flow = (
            Flow.from_enumerable(range(1000))
            .map(lambda x: x * 3)
            .filter(lambda x: x % 2 == 0)
            .reject(lambda x: x % 5 == 0)
            .flat_map(lambda x: [x, -x])
        )
        expected = [
            y for x in (x * 3 for x in range(1000)) if x % 2 == 0 and x % 5 != 0 for y in (x, -x)
        ]
        assert sorted(flow) == sorted(expected)

    def test_mapper_functions_run_in_stage_processes_not_in_the_consumer(self, runtime):
        me = otpy.self()
        flow = Flow.from_enumerable(range(200), stages=2, max_demand=10).each(
            lambda x: otpy.send(me, ("ran in", otpy.self()))
        )
        assert sorted(flow) == list(range(200))
        pids = {assert_receive(tagged("ran in"), WAIT)[1] for _ in range(200)}
        assert me not in pids
        assert 1 <= len(pids) <= 2

    def test_methods_return_a_new_flow_and_leave_the_old_one_as_it_was(self, runtime):
        base = Flow.from_enumerable(range(5))
        doubled = base.map(lambda x: 2 * x)
        assert sorted(base) == [0, 1, 2, 3, 4]
        assert sorted(doubled) == [0, 2, 4, 6, 8]

    def test_a_function_that_is_not_callable_is_refused_at_the_call(self, runtime):
        with pytest.raises(TypeError, match=r"Flow.map needs a function; got 3"):
            Flow.from_enumerable([1]).map(3)  # type: ignore[arg-type]

    def test_flat_map_of_something_not_iterable_crashes_the_flow(self, runtime):
        with pytest.raises(otpy.ExitError) as info:
            list(Flow.from_enumerable([1, 2]).flat_map(lambda x: x))
        assert isinstance(info.value.reason, TypeError)
        assert "must return an iterable" in str(info.value.reason)


# --- partition --------------------------------------------------------------------------------


def keys_per_partition(flow: Flow[Any]) -> list[tuple[int, int, frozenset[Any]]]:
    return list(
        flow.reduce(set, lambda e, acc: acc.add(e) or acc).on_trigger(
            lambda acc, info: ([(info.partition, info.partitions, frozenset(acc))], acc)
        )
    )


class TestPartition:
    def test_equal_keys_always_meet_in_the_same_partition(self, runtime):
        flow = Flow.from_enumerable(WORDS, stages=3, max_demand=50).partition(stages=4)
        results = keys_per_partition(flow)
        assert sorted(p for p, _, _ in results) == [0, 1, 2, 3]
        assert {n for _, n, _ in results} == {4}
        sets = [keys for _, _, keys in results]
        assert sum(len(s) for s in sets) == len(set(WORDS))  # no key in two partitions
        assert frozenset().union(*sets) == set(WORDS)

    def test_key_chooses_what_is_hashed(self, runtime):
        events = [(word, i) for i, word in enumerate(WORDS)]
        flow = Flow.from_enumerable(events).partition(key=lambda e: e[0], stages=3)
        sets = [{w for w, _ in keys} for _, _, keys in keys_per_partition(flow)]
        assert sum(len(s) for s in sets) == len(set(WORDS))

    def test_hash_returns_the_partition_itself(self, runtime):
        flow = Flow.from_enumerable(range(300)).partition(hash=lambda x: x % 3, stages=3)
        for partition, _, numbers in keys_per_partition(flow):
            assert numbers == set(range(partition, 300, 3))

    def test_hash_returning_none_drops_the_event(self, runtime):
        flow = Flow.from_enumerable(range(100)).partition(
            hash=lambda x: None if x % 2 else 0, stages=2
        )
        assert sorted(flow) == list(range(0, 100, 2))

    def test_a_hash_out_of_range_crashes_the_flow_with_a_clear_reason(self, runtime):
        flow = Flow.from_enumerable(range(10)).partition(hash=lambda x: 7, stages=2)
        with pytest.raises(otpy.ExitError) as info:
            list(flow)
        assert isinstance(info.value.reason, ValueError)
        assert "must return a partition in range(0, 2) or None" in str(info.value.reason)
        assert left_over() == set()


# --- reduce, group_by, emit, on_trigger ----------------------------------------------------------


class TestReduce:
    def test_word_count_equals_a_sequential_counter(self, runtime):
        flow = Flow.from_enumerable(LINES).flat_map(str.split).partition().reduce(dict, count)
        results = list(flow)
        assert len(results) == len(set(WORDS))  # every word once: partitions do not overlap
        assert dict(results) == Counter(WORDS)

    def test_reduce_without_partition_reduces_per_stage(self, runtime):
        flow = Flow.from_enumerable(range(1, 1001), stages=2, max_demand=10).reduce(lambda: 0, add)
        sums = list(flow.emit("state"))
        assert 1 <= len(sums) <= 2
        assert sum(sums) == sum(range(1, 1001))

    def test_group_by_collects_values_by_key_in_arrival_order_per_stage(self, runtime):
        flow = Flow.from_enumerable(range(500), stages=1).group_by(
            lambda x: x % 7, lambda x: x * 10
        )
        expected = defaultdict(list)
        for x in range(500):
            expected[x % 7].append(x * 10)
        assert dict(flow) == expected

    def test_a_second_reduce_needs_a_partition_first(self, runtime):
        flow = Flow.from_enumerable(WORDS).partition().reduce(dict, count)
        with pytest.raises(ValueError, match=r"reduces already"):
            flow.reduce(dict, count)
        histogram = flow.partition(key=lambda kv: kv[1]).reduce(
            dict, lambda kv, acc: count(kv[1], acc)
        )
        assert dict(histogram) == Counter(Counter(WORDS).values())

    def test_mappers_after_reduce_work_on_what_it_emits(self, runtime):
        flow = (
            Flow.from_enumerable(WORDS)
            .partition()
            .reduce(dict, count)
            .map(lambda kv: (kv[0].upper(), kv[1]))
            .filter(lambda kv: kv[0] != "W0")
        )
        expected = {w.upper(): n for w, n in Counter(WORDS).items() if w != "w0"}
        assert dict(flow) == expected


class TestEmit:
    def test_events_is_the_default_and_emits_the_items_of_the_accumulator(self, runtime):
        flow = Flow.from_enumerable(WORDS).partition(stages=2).reduce(dict, count)
        assert sorted(flow) == sorted(flow.emit("events")) == sorted(Counter(WORDS).items())
        lists = Flow.from_enumerable(range(10)).partition(stages=2).reduce(list, append)
        assert sorted(lists) == list(range(10))

    def test_state_emits_each_stage_accumulator_as_one_event(self, runtime):
        states = list(
            Flow.from_enumerable(WORDS).partition(stages=3).reduce(dict, count).emit("state")
        )
        assert len(states) == 3
        assert all(isinstance(s, dict) for s in states)
        assert sum(map(Counter, states), Counter()) == Counter(WORDS)

    def test_nothing_emits_nothing_yet_the_reduce_runs(self, runtime):
        me = otpy.self()

        def spy(item, acc):
            otpy.send(me, ("reduced", item))
            return acc

        assert (
            list(Flow.from_enumerable(range(20)).partition().reduce(list, spy).emit("nothing"))
            == []
        )
        assert sorted(assert_receive(tagged("reduced"), WAIT)[1] for _ in range(20)) == list(range(20))

    def test_emit_and_on_trigger_need_a_reduce_before_them_and_come_once(self, runtime):
        flow = Flow.from_enumerable([1])
        with pytest.raises(ValueError, match=r"emit works on what reduce/group_by accumulates"):
            flow.emit("state")
        with pytest.raises(ValueError, match=r"on_trigger works on what reduce"):
            flow.on_trigger(lambda acc, info: ([], acc))
        with pytest.raises(ValueError, match=r"has an emit/on_trigger already"):
            flow.reduce(list, append).emit("state").emit("nothing")
        with pytest.raises(ValueError, match=r"emit takes 'events', 'state' or 'nothing'"):
            flow.reduce(list, append).emit("all")  # type: ignore[arg-type]

    def test_on_trigger_gets_the_partition_and_the_window(self, runtime):
        flow = (
            Flow.from_enumerable(range(10))
            .partition(stages=2)
            .reduce(lambda: 0, add)
            .on_trigger(lambda acc, info: ([(info, acc)], acc))
        )
        results = sorted(flow)
        assert [info for info, _ in results] == [
            TriggerInfo(0, 2, "global", "global", "done"),
            TriggerInfo(1, 2, "global", "global", "done"),
        ]
        assert sum(total for _, total in results) == 45

    def test_an_accumulator_that_is_not_iterable_cannot_be_emitted_as_events(self, runtime):
        with pytest.raises(otpy.ExitError) as info:
            list(Flow.from_enumerable(range(10)).partition().reduce(lambda: 0, add))
        assert isinstance(info.value.reason, TypeError)
        assert "call emit('state') or on_trigger(...)" in str(info.value.reason)


# --- windows and triggers --------------------------------------------------------------------

ELIXIR_DATA = [
    ("elixir", 0),
    ("elixir", 1_000),
    ("erlang", 60_000),
    ("concurrency", 3_200_000),
    ("elixir", 4_000_000),
    ("erlang", 5_000_000),
    ("erlang", 6_000_000),
]
"""Flow.Window's documentation examples: (word, milliseconds)."""


def word_count_by_window(window: Window, data: list[tuple[str, int]]) -> Flow[Any]:
    return (
        Flow.from_enumerable(data)
        .partition(window=window, stages=1, max_demand=5)
        .reduce(dict, lambda event, acc: count(event[0], acc))
    )


HOUR = Window.fixed(1, "hour", lambda event: event[1] / 1000)


class TestWindows:
    def test_global_window_with_trigger_every_emits_the_running_state(self, runtime):
        window = Window.global_().trigger_every(10)
        flow = Flow.from_enumerable(range(1, 101)).partition(window=window, stages=1)
        assert list(flow.reduce(lambda: 0, add).emit("state")) == [
            55, 210, 465, 820, 1275, 1830, 2485, 3240, 4095, 5050, 5050,
        ]  # fmt: skip

    def test_count_window_is_done_every_n_events_and_at_the_end(self, runtime):
        flow = Flow.from_enumerable(range(1, 101)).partition(window=Window.count(10), stages=1)
        assert list(flow.reduce(lambda: 0, add).emit("state")) == [
            55, 155, 255, 355, 455, 555, 655, 755, 855, 955, 0,
        ]  # fmt: skip

    def test_fixed_window_groups_events_by_event_time(self, runtime):
        assert list(word_count_by_window(HOUR, ELIXIR_DATA).emit("state")) == [
            {"elixir": 2, "erlang": 1, "concurrency": 1},
            {"elixir": 1, "erlang": 2},
        ]

    def test_fixed_window_drops_an_event_that_comes_after_its_window_is_done(self, runtime):
        late = [*ELIXIR_DATA[1:], ELIXIR_DATA[0]]
        assert list(word_count_by_window(HOUR, late).emit("state")) == [
            {"elixir": 1, "erlang": 1, "concurrency": 1},
            {"elixir": 1, "erlang": 2},
        ]

    def test_allowed_lateness_emits_a_watermark_then_done_with_the_late_event(self, runtime):
        late = [*ELIXIR_DATA[1:], ELIXIR_DATA[0]]
        window = HOUR.allowed_lateness(5, "minutes")
        flow = word_count_by_window(window, late).on_trigger(
            lambda acc, info: ([(info.window, info.name, dict(acc))], acc)
        )
        assert list(flow) == [
            (0, "watermark", {"elixir": 1, "erlang": 1, "concurrency": 1}),
            (0, "done", {"elixir": 2, "erlang": 1, "concurrency": 1}),
            (3600, "done", {"elixir": 1, "erlang": 2}),
        ]

    def test_fixed_windows_of_several_producers_match_a_sequential_count(self, runtime):
        def events(seed: int) -> list[tuple[float, str]]:
            times = sorted((i * 7.3 + seed) % 500 for i in range(400))
            return [(t, f"k{int(t * 13) % 5}") for t in times]

        a, b = events(1), events(2)
        flow = (
            Flow.from_enumerables([a, b])
            .partition(window=Window.fixed(25, lambda e: e[0]), stages=1, max_demand=20)
            .reduce(dict, lambda e, acc: count(e[1], acc))
            .on_trigger(lambda acc, info: ([(info.window, info.name, dict(acc))], acc))
        )
        results = list(flow)
        windows = [w for w, _, _ in results]
        assert windows == sorted(windows), "one stage emits its windows in order"
        assert {name for _, name, _ in results} == {"done"}
        expected: dict[int, Counter[str]] = defaultdict(Counter)
        for t, key in a + b:
            expected[int(t // 25) * 25][key] += 1
        assert {w: acc for w, _, acc in results if acc} == expected

    def test_periodic_window_closes_by_processing_time(self, runtime):
        producer = Manual.start_link()
        flow = (
            Flow.from_stages([producer])
            .partition(window=Window.periodic(0.02), stages=1)
            .reduce(lambda: 0, add)
            .on_trigger(lambda acc, info: ([(info.window, acc)] if acc else [], acc))
        )
        with flow.stream() as results:
            otpy.GenServer.cast(producer, range(1, 11))
            before_end = []
            while sum(total for _, total in before_end) < 55:  # the input is still open
                before_end.append(next(results))
            otpy.GenServer.cast(producer, "stop")
            after_end = list(results)
        assert after_end == []
        windows = [w for w, _ in before_end]
        assert windows == sorted(set(windows))

    def test_trigger_periodically_emits_while_the_input_is_still_open(self, runtime):
        producer = Manual.start_link()
        window = Window.global_().trigger_periodically(20, "milliseconds")
        flow = Flow.from_stages([producer]).partition(window=window, stages=1)
        flow = flow.reduce(lambda: 0, add).on_trigger(lambda acc, info: ([(info.name, acc)], acc))
        with flow.stream() as results:
            otpy.GenServer.cast(producer, range(1, 11))
            seen = next(x for x in results if x[1] == 55)
            assert seen == (("periodically", 20, "milliseconds"), 55)
            otpy.GenServer.cast(producer, "stop")
            assert list(results)[-1] == ("done", 55)

    def test_a_trigger_that_keeps_the_accumulator_emits_a_snapshot_of_it(self, runtime):
        window = Window.global_().trigger_every(2)
        flow = Flow.from_enumerable(range(6)).partition(window=window, stages=1)
        assert list(flow.reduce(list, append).emit("state")) == [
            [0, 1],
            [0, 1, 2, 3],
            [0, 1, 2, 3, 4, 5],
            [0, 1, 2, 3, 4, 5],
        ]

    def test_on_trigger_may_reset_the_accumulator(self, runtime):
        window = Window.global_().trigger_every(10)
        flow = Flow.from_enumerable(range(1, 101)).partition(window=window, stages=1)
        flow = flow.reduce(lambda: 0, add).on_trigger(lambda acc, info: ([acc], 0))
        assert list(flow) == [55, 155, 255, 355, 455, 555, 655, 755, 855, 955, 0]

    def test_a_punctuation_trigger_splits_where_its_function_says(self, runtime):
        def on_bang(events, acc):
            if "!" in events:
                i = events.index("!")
                return ("trigger", "bang", events[:i], events[i + 1 :], acc)
            return ("cont", acc)

        window = Window.global_().trigger(lambda: None, on_bang)
        flow = (
            Flow.from_enumerable(list("ab!c!d"))
            .partition(window=window, stages=1)
            .reduce(list, append)
            .on_trigger(lambda acc, info: ([(info.name, "".join(acc))], []))
        )
        assert list(flow) == [("bang", "ab"), ("bang", "c"), ("done", "d")]

    def test_a_window_on_a_layer_that_does_not_reduce_is_refused(self, runtime):
        flow = Flow.from_enumerable([1]).partition(window=Window.count(3)).map(str)
        with pytest.raises(ValueError, match=r"a count window \(or a trigger\) was set on a part"):
            list(flow)
        assert left_over() == set()

    def test_window_arguments_are_checked(self, runtime):
        with pytest.raises(TypeError, match=r"Window.fixed needs by="):
            Window.fixed(10, "seconds")
        with pytest.raises(ValueError, match=r"unknown time unit 'fortnight'"):
            Window.periodic(1, "fortnight")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"must be a finite number > 0; got -1"):
            Window.periodic(-1)
        with pytest.raises(ValueError, match=r"allowed_lateness is only for fixed windows"):
            Window.count(3).allowed_lateness(1)
        with pytest.raises(ValueError, match=r"has one already"):
            Window.global_().trigger_every(2).trigger_every(3)
        assert (
            Window.fixed(2, "minutes", len) == Window.fixed(120, len) == Window.fixed(120, 1, len)
        )


# --- departition and take_sort ---------------------------------------------------------------


class TestDepartition:
    def test_merges_the_partitions_states_into_one(self, runtime):
        def merge(state, acc):
            acc.update(state)
            return acc

        flow = Flow.from_enumerable(WORDS).partition(stages=3).reduce(dict, count)
        assert list(flow.departition(dict, merge)) == [Counter(WORDS)]
        assert list(flow.departition(dict, merge, len)) == [len(set(WORDS))]

    def test_merges_each_window_separately_in_window_order(self, runtime):
        window = Window.fixed(100, lambda x: x)
        flow = (
            Flow.from_enumerable(range(1000), stages=1)
            .partition(window=window, stages=3)
            .reduce(lambda: 0, add)
            .emit("state")
            .departition(lambda: 0, add)
        )
        assert list(flow) == [sum(range(i, i + 100)) for i in range(0, 1000, 100)]

    def test_needs_a_reduce_before_it(self, runtime):
        with pytest.raises(ValueError, match=r"departition merges what the partitions accumulate"):
            Flow.from_enumerable([1]).departition(dict, dict.update)


class TestTakeSort:
    def test_keeps_the_n_largest_over_all_partitions(self, runtime):
        counts = Counter(w for i, w in enumerate(WORDS) for _ in range(i % 5))
        events = [w for w, n in counts.items() for _ in range(n)]
        flow = Flow.from_enumerable(events).partition(stages=3).reduce(dict, count)
        key = lambda kv: (kv[1], kv[0])  # noqa: E731
        assert list(flow.take_sort(5, key=key, reverse=True)) == [
            sorted(counts.items(), key=key, reverse=True)[:5]
        ]

    def test_keeps_the_n_smallest_by_default(self, runtime):
        flow = Flow.from_enumerable(range(500)).partition(stages=4).reduce(list, append)
        assert list(flow.take_sort(3)) == [[0, 1, 2]]

    def test_n_must_be_positive(self, runtime):
        with pytest.raises(ValueError, match=r"take_sort's n must be an int >= 1; got 0"):
            Flow.from_enumerable([1]).reduce(list, append).take_sort(0)


# --- from_stages -------------------------------------------------------------------------------


class TestFromStages:
    def test_consumes_producers_until_they_exit_normally(self, runtime):
        producers = [Finite.start_link(1000), Finite.start_link(300)]
        flow = Flow.from_stages(producers, max_demand=50).map(lambda x: -x)
        assert sorted(flow) == sorted([-x for x in range(1000)] + [-x for x in range(300)])

    def test_a_producer_that_crashes_ends_the_flow_with_exit_error(self, runtime):
        producer = Manual.start()  # unlinked: its crash must reach us through the flow only
        flow = Flow.from_stages([producer]).map(lambda x: x)
        with flow.stream() as results:
            otpy.GenServer.cast(producer, [1, 2, 3])
            assert sorted(itertools.islice(results, 3)) == [1, 2, 3]
            otpy.GenServer.cast(producer, ("crash", RuntimeError("disk on fire")))
            with pytest.raises(otpy.ExitError) as info:
                next(results)
        assert isinstance(info.value.reason, RuntimeError)
        assert left_over() == set()

    def test_is_reachable_as_otpy_stage_flow(self, runtime):
        assert stage.Flow is Flow


# --- running -----------------------------------------------------------------------------------


class TestRun:
    def test_run_returns_none_after_every_side_effect(self, runtime):
        me = otpy.self()
        flow = Flow.from_enumerable(range(300)).each(lambda x: otpy.send(me, ("saw", x)))
        assert flow.run() is None
        assert sorted(assert_receive(tagged("saw"), WAIT)[1] for _ in range(300)) == list(range(300))
        assert left_over() == set()

    def test_run_of_a_reducing_flow_runs_its_triggers(self, runtime):
        me = otpy.self()

        def report(acc, info):
            otpy.send(me, ("total", acc))
            return ([acc], acc)

        Flow.from_enumerable(range(100)).partition(stages=1).reduce(lambda: 0, add).on_trigger(
            report
        ).run()
        assert assert_receive(tagged("total"), WAIT) == ("total", 4950)


class TestConsumption:
    def test_an_endless_input_is_read_only_as_far_as_demand_allows(self, runtime):
        source = Counted()
        flow = (
            Flow.from_enumerable(source, stages=2, max_demand=20)
            .map(lambda x: x + 1)
            .partition(stages=2, max_demand=20)
        )
        with flow.stream() as results:
            taken = list(itertools.islice(results, 3000))
        assert len(taken) == 3000
        # In flight at most: each stage's demand and backlog, per layer; never the whole input.
        assert source.reads - len(taken) <= 400, source.reads
        assert left_over() == set()

    def test_breaking_out_of_a_loop_and_dropping_the_iterator_stops_every_process(self, runtime):
        for x in Flow.from_enumerable(itertools.count()).map(lambda x: x):
            if x is not None:
                break
        gc.collect()
        # The finaliser hands the kills to the timer thread (it may run inside a lock).
        wait_until(lambda: left_over() == set())

    def test_closing_stops_every_process_and_the_iterator_yields_nothing_more(self, runtime):
        results = iter(Flow.from_enumerable(itertools.count()).partition().map(str))
        next(results)
        assert left_over() != set()
        results.close()
        assert left_over() == set()
        assert list(results) == []

    def test_the_flow_stops_when_its_consumer_exits_even_normally(self, runtime):
        kept = []

        def consume_one_and_return():
            results = iter(Flow.from_enumerable(itertools.count()).partition().map(str))
            next(results)
            kept.append(results)  # still referenced: only the consumer's exit can stop the flow

        _, ref = otpy.spawn_monitor(consume_one_and_return)
        assert assert_receive(down_of(ref), WAIT).reason == "normal"
        wait_until(lambda: left_over() == set())

    def test_a_crash_in_a_map_raises_exit_error_and_leaves_no_process(self, runtime):
        flow = Flow.from_enumerable(range(100)).map(lambda x: 1 // (x - 50)).partition()
        with pytest.raises(otpy.ExitError, match=r"^Flow: process exited with reason Zero") as info:
            list(flow)
        assert isinstance(info.value.reason, ZeroDivisionError)
        assert info.value.__cause__ is info.value.reason
        assert left_over() == set()

    def test_a_crash_is_seen_by_an_owner_that_traps_exits(self, runtime, trap):
        flow = Flow.from_enumerable(range(100)).map(lambda x: 1 // (x - 50))
        with pytest.raises(otpy.ExitError) as info:
            list(flow)
        assert isinstance(info.value.reason, ZeroDivisionError)
        assert info.value.__cause__ is info.value.reason
        assert left_over() == set()

    def test_an_iterable_that_fails_raises_exit_error(self, runtime):
        def failing():
            yield 1
            raise OSError("read error")

        with pytest.raises(otpy.ExitError) as info:
            list(Flow.from_enumerable(failing()).map(str))
        assert isinstance(info.value.reason, OSError)

    def test_only_the_process_that_started_iterating_may_go_on(self, runtime):
        me = otpy.self()
        results = iter(Flow.from_enumerable(range(10), max_demand=1))
        next(results)  # one event at a time: the next one must come through the mailbox

        def other():
            try:
                next(results)
            except ValueError as exc:
                otpy.send(me, ("refused", str(exc)))

        otpy.spawn(other)
        assert "iterate it in one process" in assert_receive(tagged("refused"), WAIT)[1]
        results.close()

    def test_the_flow_runs_in_the_current_runtime(self, runtime):
        me = otpy.self()
        list(Flow.from_enumerable([1]).each(lambda x: otpy.send(me, otpy.Runtime.current())))
        assert assert_receive(lambda m: isinstance(m, otpy.Runtime), WAIT) is runtime

    def test_repr_shows_the_chain(self, runtime):
        flow = Flow.from_enumerable([1]).map(str).partition(stages=2).reduce(dict, count)
        assert repr(flow) == (
            "<otpy.Flow from_enumerables(1) | map | partition(stages=2) | reduce>"
        )
