"""Acceptance tests for the Registry section of API.md.

Unique and duplicate keys, partitions, every function, ``via`` names (as
``name=`` and as a call/cast/send target), listeners, meta, entries that go
with their owner before its ``Down`` arrives, the registry's own death, bad
arguments, and a stress test of lookups racing with owners that register and die.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections import deque

import pytest
from conftest import WAIT, down_of, tagged, wait_until

import otpy
from otpy.testing import assert_receive, refute_receive

pytestmark = pytest.mark.timeout(60)


Registry = otpy.Registry
via = otpy.via


# --- helpers -----------------------------------------------------------------------------------


def no_message(match, timeout: float = 0.05) -> bool:
    """True if no message that ``match`` accepts is in the mailbox (or arrives very soon)."""
    try:
        otpy.receive(timeout=timeout, match=match)
    except otpy.Timeout:
        return True
    return False


def run_in_process(fn, *args):
    """Run ``fn(*args)`` in a new process; its result, or the exception it raised."""
    me = otpy.self()
    ref = object()

    def body():
        try:
            result = fn(*args)
        except Exception as exc:
            otpy.send(me, ("ran", ref, False, exc))
        else:
            otpy.send(me, ("ran", ref, True, result))

    otpy.spawn(body)
    _, _, ok, value = assert_receive(lambda m: tagged("ran")(m) and m[1] is ref, WAIT)
    if not ok:
        raise value
    return value


class Owner(otpy.GenServer):
    """A server that registers itself under ``(registry, key, value)`` triples in init."""

    def init(self, *registrations):
        for reg, key, value in registrations:
            Registry.register(reg, key, value)

    def handle_call(self, request, caller):
        match request:
            case ("run", fn):
                return fn()
            case "crash":
                raise RuntimeError("owner crashed on purpose")
        raise AssertionError(f"unexpected call {request!r}")

    def handle_cast(self, request):
        match request:
            case ("echo", to, x):
                otpy.send(to, ("echo", x))
            case "crash":
                raise RuntimeError("owner crashed on purpose")

    def handle_info(self, message):
        match message:
            case ("echo", to, x):
                otpy.send(to, ("info", x))


def owner(*registrations) -> otpy.Pid:
    """An unlinked Owner holding ``registrations``."""
    pid = Owner.start(*registrations)
    assert pid is not None
    return pid


def stop_owner(pid) -> None:
    ref = otpy.monitor(pid)
    otpy.exit(pid, "kill")
    assert_receive(down_of(ref), WAIT)


def as_owner(pid, fn):
    """Run ``fn()`` inside owner ``pid`` (so Registry.register etc. act for it)."""
    return otpy.GenServer.call(pid, ("run", fn))


class Echo(otpy.GenServer):
    def init(self, tag="echo"):
        self.tag = tag

    def handle_call(self, request, caller):
        return (self.tag, request)

    def handle_cast(self, request):
        to, x = request
        otpy.send(to, ("cast", self.tag, x))

    def handle_info(self, message):
        to, x = message
        otpy.send(to, ("info", self.tag, x))


# --- starting and stopping ------------------------------------------------------------------------


class TestStartLink:
    def test_returns_the_pid_registers_the_name_and_links(self, runtime):
        pid = Registry.start_link(keys="unique", name="reg")
        assert otpy.whereis("reg") == pid
        assert otpy.self() in otpy.process_info(pid).links

    def test_defaults_to_unique_keys_one_partition_and_no_name(self, runtime):
        pid = Registry.start_link()
        Registry.register(pid, "k", 1)
        with pytest.raises(otpy.AlreadyRegisteredError):
            run_in_process(Registry.register, pid, "k", 2)
        assert otpy.process_info(pid).name is None

    def test_an_unnamed_registry_is_used_by_its_pid(self, runtime):
        reg = Registry.start_link(keys="duplicate")
        Registry.register(reg, "k", "v")
        assert Registry.lookup(reg, "k") == [(otpy.self(), "v")]

    def test_start_is_not_linked(self, runtime):
        pid = Registry.start(keys="duplicate", name="unlinked")
        assert otpy.self() not in otpy.process_info(pid).links
        Registry.stop(pid)

    def test_a_taken_name_raises_already_started_error(self, runtime):
        holder = Registry.start_link(name="taken")
        with pytest.raises(otpy.AlreadyStartedError) as info:
            Registry.start_link(name="taken")
        assert info.value.pid == holder

    def test_meta_given_at_start_is_readable(self, runtime):
        Registry.start_link(name="reg", meta={"owner": "me", ("t", 1): 2})
        assert Registry.meta("reg", "owner") == "me"
        assert Registry.meta("reg", ("t", 1)) == 2

    def test_the_process_shows_up_as_a_registry(self, runtime):
        pid = Registry.start_link(name="reg")
        assert "Registry" in otpy.process_info(pid).current

    @pytest.mark.parametrize("keys", ["uniq", "duplicates", None, 1])
    def test_unknown_keys_raise_value_error_naming_the_value(self, runtime, keys):
        with pytest.raises(ValueError, match=r"'unique' or 'duplicate'") as info:
            Registry.start_link(keys=keys)
        assert repr(keys) in str(info.value)

    @pytest.mark.parametrize(
        ("partitions", "error"),
        [
            (0, ValueError),
            (-2, ValueError),
            (1.0, TypeError),
            ("2", TypeError),
            (True, TypeError),
            (None, TypeError),
        ],
    )
    def test_partitions_must_be_an_int_of_at_least_one(self, runtime, partitions, error):
        with pytest.raises(error, match="partitions"):
            Registry.start_link(partitions=partitions)

    @pytest.mark.parametrize("listeners", ["listener", 42, [1], [None], [("a",)]])
    def test_listeners_must_be_names_or_pids(self, runtime, listeners):
        with pytest.raises(TypeError, match="listeners"):
            Registry.start_link(listeners=listeners)

    @pytest.mark.parametrize("name", [1, b"reg", ("reg",)])
    def test_a_name_that_is_not_a_str_raises_type_error(self, runtime, name):
        with pytest.raises(TypeError, match="name"):
            Registry.start_link(name=name)

    def test_meta_must_be_a_mapping(self, runtime):
        with pytest.raises(TypeError, match="meta"):
            Registry.start_link(meta=[("a", 1), "b"])

    def test_bad_options_leave_no_process_behind(self, runtime):
        before = set(otpy.processes())
        with pytest.raises(ValueError):
            Registry.start_link(partitions=0)
        assert set(otpy.processes()) == before


class TestChildSpec:
    def test_defaults_follow_elixir_id_is_the_name(self, runtime):
        spec = Registry.child_spec(keys="duplicate", name="topics", partitions=2)
        assert spec.id == "topics"
        assert spec.restart == "permanent"
        assert spec.type == "worker"
        assert Registry.child_spec().id is Registry
        assert Registry.child_spec(name="x", id="other").id == "other"
        assert Registry.child_spec(restart="transient").restart == "transient"

    def test_its_start_function_starts_the_registry_it_describes(self, runtime):
        spec = Registry.child_spec(keys="duplicate", name="topics", partitions=3, meta={"m": 1})
        fn, args, kwargs = spec.start
        pid = fn(*args, **kwargs)
        assert otpy.whereis("topics") == pid
        assert Registry.meta("topics", "m") == 1
        Registry.register("topics", "k", 1)
        Registry.register("topics", "k", 2)
        assert Registry.lookup("topics", "k") == [(otpy.self(), 1), (otpy.self(), 2)]

    def test_bad_options_raise_at_once(self, runtime):
        with pytest.raises(ValueError):
            Registry.child_spec(keys="many")


class TestStop:
    def test_stop_ends_the_registry_and_its_table(self, runtime):
        pid = Registry.start_link(name="reg")
        Registry.register("reg", "k")
        ref = otpy.monitor(pid)
        Registry.stop("reg")
        assert assert_receive(down_of(ref), WAIT).reason == "normal"
        with pytest.raises(otpy.NoProcError, match="reg"):
            Registry.lookup("reg", "k")
        with pytest.raises(otpy.NoProcError):
            Registry.lookup(pid, "k")

    def test_stop_with_a_reason_and_of_an_unknown_registry(self, runtime):
        pid = Registry.start(name="reg")
        ref = otpy.monitor(pid)
        Registry.stop("reg", reason="shutdown", timeout=WAIT)
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"
        with pytest.raises(otpy.NoProcError):
            Registry.stop("reg")

    def test_a_killed_registry_takes_its_table_along_and_spares_the_owners(self, runtime):
        reg = Registry.start(name="reg", keys="duplicate", partitions=2)
        owners = [owner(("reg", "k", i)) for i in range(4)]
        ref = otpy.monitor(reg)
        otpy.exit(reg, "kill")
        assert_receive(down_of(ref), WAIT)
        for fn, args in [
            (Registry.lookup, ("reg", "k")),
            (Registry.count, ("reg",)),
            (Registry.keys, ("reg", owners[0])),
            (Registry.register, ("reg", "k")),
            (Registry.meta, ("reg", "m")),
        ]:
            with pytest.raises(otpy.NoProcError):
                fn(*args)
        assert all(otpy.is_alive(p) for p in owners)
        # A new registry under the same name starts empty, and the old owners can join it.
        Registry.start_link(name="reg", keys="duplicate")
        assert Registry.count("reg") == 0
        as_owner(owners[0], lambda: Registry.register("reg", "k", "again"))
        assert Registry.lookup("reg", "k") == [(owners[0], "again")]
        for p in owners:
            stop_owner(p)
        assert Registry.count("reg") == 0

    def test_an_owner_that_outlives_its_registry_dies_cleanly_later(self, runtime):
        reg = Registry.start(name="reg")
        pid = owner(("reg", "k", 1))
        Registry.stop(reg)
        stop_owner(pid)  # its exit hook was removed with the table; nothing breaks


# --- registering ---------------------------------------------------------------------------------


class TestRegister:
    def test_registers_the_caller_visible_to_every_process(self, runtime):
        Registry.start_link(name="reg")
        Registry.register("reg", "k", {"v": 1})
        me = otpy.self()
        assert Registry.lookup("reg", "k") == [(me, {"v": 1})]
        assert run_in_process(Registry.lookup, "reg", "k") == [(me, {"v": 1})]

    def test_the_value_defaults_to_none(self, runtime):
        Registry.start_link(name="reg")
        Registry.register("reg", "k")
        assert Registry.lookup("reg", "k") == [(otpy.self(), None)]

    def test_a_unique_key_held_by_another_process_raises_with_the_holder(self, runtime):
        Registry.start_link(name="reg", partitions=4)
        holder = owner(("reg", "k", "theirs"))
        with pytest.raises(otpy.AlreadyRegisteredError) as info:
            Registry.register("reg", "k", "mine")
        assert info.value.pid == holder
        assert info.value.key == "k"
        assert "'k'" in str(info.value)
        assert Registry.lookup("reg", "k") == [(holder, "theirs")]
        assert Registry.keys("reg", otpy.self()) == []
        stop_owner(holder)

    def test_registering_a_unique_key_twice_raises_with_the_caller_and_keeps_the_value(
        self, runtime
    ):
        Registry.start_link(name="reg")
        Registry.register("reg", "k", 1)
        with pytest.raises(otpy.AlreadyRegisteredError) as info:
            Registry.register("reg", "k", 2)
        assert info.value.pid == otpy.self()
        assert Registry.lookup("reg", "k") == [(otpy.self(), 1)]
        assert Registry.keys("reg", otpy.self()) == ["k"]

    def test_a_duplicate_registry_keeps_every_entry_also_from_one_process(self, runtime):
        Registry.start_link(name="reg", keys="duplicate")
        Registry.register("reg", "k", 1)
        Registry.register("reg", "k", 2)
        other = owner(("reg", "k", 3))
        me = otpy.self()
        assert Registry.lookup("reg", "k") == [(me, 1), (me, 2), (other, 3)]
        assert Registry.count("reg") == 3
        stop_owner(other)

    def test_one_process_may_hold_many_keys(self, runtime):
        Registry.start_link(name="reg", partitions=8)
        keys = [f"k{i}" for i in range(50)] + [i for i in range(50)] + [("t", i) for i in range(50)]
        for key in keys:
            Registry.register("reg", key, key)
        assert sorted(map(repr, Registry.keys("reg", otpy.self()))) == sorted(map(repr, keys))
        assert all(Registry.lookup("reg", k) == [(otpy.self(), k)] for k in keys)
        assert Registry.count("reg") == 150

    def test_a_plain_thread_can_register_and_its_entry_goes_with_the_thread(self, runtime):
        Registry.start_link(name="reg")
        registered = threading.Event()
        release = threading.Event()
        seen = []

        def thread_body():
            Registry.register("reg", "thread", "t")
            seen.append(otpy.self())
            registered.set()
            release.wait(WAIT)

        thread = threading.Thread(target=thread_body)
        thread.start()
        assert registered.wait(WAIT)
        assert Registry.lookup("reg", "thread") == [(seen[0], "t")]
        release.set()
        thread.join(WAIT)
        wait_until(lambda: Registry.lookup("reg", "thread") == [])

    def test_concurrent_registrations_of_one_key_have_exactly_one_winner(self, runtime):
        Registry.start_link(name="reg", partitions=4)
        me = otpy.self()
        go = threading.Event()

        def contender():
            go.wait(WAIT)
            try:
                Registry.register("reg", "prize")
            except otpy.AlreadyRegisteredError as exc:
                otpy.send(me, ("lost", otpy.self(), exc.pid))
            else:
                otpy.send(me, ("won", otpy.self(), None))
            otpy.receive(match=lambda m: m == "stop")

        pids = [otpy.spawn(contender) for _ in range(8)]
        go.set()
        results = [assert_receive(lambda m: tagged("won")(m) or tagged("lost")(m), WAIT) for _ in pids]
        winners = [pid for tag, pid, _ in results if tag == "won"]
        assert len(winners) == 1
        assert {holder for tag, _, holder in results if tag == "lost"} == {winners[0]}
        assert Registry.lookup("reg", "prize") == [(winners[0], None)]
        for pid in pids:
            otpy.send(pid, "stop")

    @pytest.mark.parametrize("key", [[1], {"a": 1}, {1}])
    def test_an_unhashable_key_raises_type_error(self, runtime, key):
        Registry.start_link(name="reg")
        with pytest.raises(TypeError, match="hashable"):
            Registry.register("reg", key)


class TestUnregister:
    def test_removes_the_callers_entries_under_the_key_only(self, runtime):
        Registry.start_link(name="reg", keys="duplicate", partitions=3)
        Registry.register("reg", "a", 1)
        Registry.register("reg", "a", 2)
        Registry.register("reg", "b", 3)
        other = owner(("reg", "a", 4))
        Registry.unregister("reg", "a")
        assert Registry.lookup("reg", "a") == [(other, 4)]
        assert Registry.lookup("reg", "b") == [(otpy.self(), 3)]
        assert Registry.keys("reg", otpy.self()) == ["b"]
        assert Registry.count("reg") == 2
        stop_owner(other)

    def test_does_not_touch_a_unique_key_held_by_another_process(self, runtime):
        Registry.start_link(name="reg")
        holder = owner(("reg", "k", 1))
        Registry.unregister("reg", "k")
        assert Registry.lookup("reg", "k") == [(holder, 1)]
        stop_owner(holder)

    def test_a_key_the_caller_does_not_hold_is_a_no_op(self, runtime):
        Registry.start_link(name="reg")
        Registry.unregister("reg", "never")
        assert Registry.count("reg") == 0

    def test_the_key_is_free_again_and_the_process_can_register_anew(self, runtime):
        Registry.start_link(name="reg")
        Registry.register("reg", "k", 1)
        Registry.unregister("reg", "k")
        assert run_in_process(Registry.register, "reg", "k", 2) is None
        Registry.register("reg", "k2", 3)
        Registry.unregister("reg", "k2")
        Registry.register("reg", "k2", 4)
        assert Registry.lookup("reg", "k2") == [(otpy.self(), 4)]

    def test_an_owner_that_unregistered_everything_can_still_die_cleanly(self, runtime):
        Registry.start_link(name="reg", partitions=2)
        pid = owner(("reg", "a", 1), ("reg", "b", 2))
        as_owner(pid, lambda: Registry.unregister("reg", "a"))
        as_owner(pid, lambda: Registry.unregister("reg", "b"))
        as_owner(pid, lambda: Registry.register("reg", "c", 3))
        stop_owner(pid)
        assert Registry.count("reg") == 0


# --- reading -------------------------------------------------------------------------------------


class TestLookup:
    def test_an_unknown_key_gives_an_empty_list(self, runtime):
        Registry.start_link(name="reg")
        Registry.start_link(name="dup", keys="duplicate", partitions=4)
        assert Registry.lookup("reg", "nothing") == []
        assert Registry.lookup("dup", "nothing") == []

    @pytest.mark.parametrize("partitions", [1, 4])
    def test_a_duplicate_registry_finds_entries_of_many_processes(self, runtime, partitions):
        Registry.start_link(name="dup", keys="duplicate", partitions=partitions)
        pids = [owner(("dup", "topic", i)) for i in range(12)]
        found = Registry.lookup("dup", "topic")
        assert sorted(found, key=lambda e: e[1]) == [(p, i) for i, p in enumerate(pids)]
        for p in pids:
            stop_owner(p)
        assert Registry.lookup("dup", "topic") == []

    def test_a_partitioned_unique_registry_finds_every_key(self, runtime):
        Registry.start_link(name="reg", partitions=5)
        pids = {key: owner(("reg", key, key)) for key in ["a", "b", 3, ("t", 4), b"e", 6.5]}
        for key, pid in pids.items():
            assert Registry.lookup("reg", key) == [(pid, key)]
        for pid in pids.values():
            stop_owner(pid)

    def test_keys_that_compare_equal_find_the_same_entry(self, runtime):
        Registry.start_link(name="reg", partitions=7)
        Registry.register("reg", 1, "one")
        Registry.register("reg", ("x", 2), "tuple")
        assert Registry.lookup("reg", 1.0) == [(otpy.self(), "one")]
        assert Registry.lookup("reg", True) == [(otpy.self(), "one")]
        assert Registry.lookup("reg", ("x", 2.0)) == [(otpy.self(), "tuple")]

    def test_partitions_of_strs_and_tuples_are_the_same_in_every_run(self, runtime):
        from otpy._registry import _stable_hash

        assert _stable_hash("abc") == zlib.crc32(b"abc")
        assert _stable_hash(b"abc") == zlib.crc32(b"abc")
        assert _stable_hash(12) == 12
        assert _stable_hash(("abc", 12)) == 0x9259F29B7072  # a fixed number, whatever the seed

    def test_a_registry_is_read_from_a_plain_thread(self, runtime):
        Registry.start_link(name="reg")
        Registry.register("reg", "k", 1)
        seen = []
        thread = threading.Thread(target=lambda: seen.append(Registry.lookup("reg", "k")))
        thread.start()
        thread.join(WAIT)
        assert seen == [[(otpy.self(), 1)]]


class TestMatch:
    def test_returns_the_entries_whose_value_satisfies_the_predicate(self, runtime):
        Registry.start_link(name="dup", keys="duplicate", partitions=2)
        Registry.register("dup", "k", (1, "atom", 1))
        Registry.register("dup", "k", (2, "atom", 2))
        other = owner(("dup", "k", (3, "other", 1)))
        me = otpy.self()
        assert Registry.match("dup", "k", lambda v: v[0] == 1) == [(me, (1, "atom", 1))]
        assert Registry.match("dup", "k", lambda v: v[1] == "atom") == [
            (me, (1, "atom", 1)),
            (me, (2, "atom", 2)),
        ]
        assert Registry.match("dup", "k", lambda v: v[0] == v[2]) == [
            (me, (1, "atom", 1)),
            (me, (2, "atom", 2)),
        ]
        assert Registry.match("dup", "k", lambda v: v[1] == "other") == [(other, (3, "other", 1))]
        assert Registry.match("dup", "none", lambda v: True) == []
        stop_owner(other)

    def test_works_on_a_unique_registry(self, runtime):
        Registry.start_link(name="reg")
        Registry.register("reg", "k", 5)
        assert Registry.match("reg", "k", lambda v: v > 3) == [(otpy.self(), 5)]
        assert Registry.match("reg", "k", lambda v: v > 9) == []

    def test_the_predicate_runs_without_a_lock_so_it_may_use_the_registry(self, runtime):
        Registry.start_link(name="reg")
        Registry.register("reg", "k", 5)
        assert Registry.match("reg", "k", lambda v: Registry.count("reg") == 1) != []

    def test_a_predicate_that_raises_raises_in_the_caller(self, runtime):
        Registry.start_link(name="reg")
        Registry.register("reg", "k", 5)
        with pytest.raises(ZeroDivisionError):
            Registry.match("reg", "k", lambda v: v / 0)

    def test_a_predicate_that_is_not_callable_raises_type_error(self, runtime):
        Registry.start_link(name="reg")
        with pytest.raises(TypeError, match="function"):
            Registry.match("reg", "k", 5)


class TestDispatch:
    def test_calls_the_function_with_the_entries_in_the_caller(self, runtime):
        Registry.start_link(name="dup", keys="duplicate")
        Registry.register("dup", "topic", "a")
        other = owner(("dup", "topic", "b"))
        calls = []
        Registry.dispatch("dup", "topic", lambda entries: calls.append((otpy.self(), entries)))
        assert calls == [(otpy.self(), [(otpy.self(), "a"), (other, "b")])]
        stop_owner(other)

    def test_is_not_called_without_entries(self, runtime):
        Registry.start_link(name="reg")
        Registry.start_link(name="dup", keys="duplicate", partitions=3)
        calls = []
        Registry.dispatch("reg", "none", calls.append)
        Registry.dispatch("dup", "none", calls.append)
        assert calls == []

    def test_a_unique_registry_calls_it_once_with_the_single_entry(self, runtime):
        Registry.start_link(name="reg", partitions=4)
        Registry.register("reg", "k", 1)
        calls = []
        Registry.dispatch("reg", "k", calls.append)
        assert calls == [[(otpy.self(), 1)]]

    def test_a_partitioned_registry_calls_it_once_per_partition_with_entries(self, runtime):
        Registry.start_link(name="dup", keys="duplicate", partitions=4)
        pids = [owner(("dup", "topic", i)) for i in range(16)]
        calls = []
        Registry.dispatch("dup", "topic", calls.append)
        assert 1 <= len(calls) <= 4
        assert all(calls)
        assert sorted(v for entries in calls for _, v in entries) == list(range(16))
        for p in pids:
            stop_owner(p)

    def test_a_pubsub_broadcast_reaches_every_subscriber(self, runtime):
        Registry.start_link(name="pubsub", keys="duplicate", partitions=2)
        me = otpy.self()
        pids = [owner(("pubsub", "news", me)) for _ in range(5)]

        def broadcast(entries):
            for pid, reply_to in entries:
                otpy.send(pid, ("echo", reply_to, "hello"))

        Registry.dispatch("pubsub", "news", broadcast)
        assert [assert_receive(tagged("info"), WAIT) for _ in pids] == [("info", "hello")] * 5
        for p in pids:
            stop_owner(p)

    def test_an_exception_in_the_function_raises_in_the_caller(self, runtime):
        Registry.start_link(name="reg")
        Registry.register("reg", "k", 1)
        with pytest.raises(KeyError):
            Registry.dispatch("reg", "k", lambda entries: {}["missing"])
        with pytest.raises(TypeError, match="function"):
            Registry.dispatch("reg", "k", None)


class TestKeys:
    def test_lists_the_keys_of_a_process(self, runtime):
        Registry.start_link(name="reg", partitions=3)
        Registry.register("reg", "a")
        Registry.register("reg", "b")
        assert sorted(Registry.keys("reg", otpy.self())) == ["a", "b"]
        other = owner(("reg", "c", None))
        assert Registry.keys("reg", other) == ["c"]
        stop_owner(other)

    def test_a_duplicate_registry_lists_a_key_once_per_entry(self, runtime):
        Registry.start_link(name="dup", keys="duplicate", partitions=2)
        Registry.register("dup", "hello", 1)
        Registry.register("dup", "hello", 2)
        Registry.register("dup", "world", 3)
        assert sorted(Registry.keys("dup", otpy.self())) == ["hello", "hello", "world"]

    def test_a_process_without_keys_or_dead_has_none(self, runtime):
        Registry.start_link(name="reg")
        assert Registry.keys("reg", otpy.self()) == []
        pid = owner(("reg", "k", 1))
        stop_owner(pid)
        assert Registry.keys("reg", pid) == []

    def test_a_pid_argument_that_is_not_a_pid_raises_type_error(self, runtime):
        Registry.start_link(name="reg")
        with pytest.raises(TypeError, match="Pid"):
            Registry.keys("reg", "me")


class TestValues:
    def test_unique_registry_gives_the_value_of_that_pid_only(self, runtime):
        Registry.start_link(name="reg", partitions=2)
        Registry.register("reg", "k", "mine")
        other = owner(("reg", "o", "theirs"))
        assert Registry.values("reg", "k", otpy.self()) == ["mine"]
        assert Registry.values("reg", "k", other) == []
        assert Registry.values("reg", "o", other) == ["theirs"]
        assert Registry.values("reg", "none", otpy.self()) == []
        stop_owner(other)
        assert Registry.values("reg", "o", other) == []

    def test_duplicate_registry_gives_every_value_of_that_pid(self, runtime):
        Registry.start_link(name="dup", keys="duplicate", partitions=3)
        Registry.register("dup", "k", 1)
        Registry.register("dup", "k", 2)
        other = owner(("dup", "k", 3))
        assert Registry.values("dup", "k", otpy.self()) == [1, 2]
        assert Registry.values("dup", "k", other) == [3]
        stop_owner(other)

    def test_a_pid_argument_that_is_not_a_pid_raises_type_error(self, runtime):
        Registry.start_link(name="reg")
        with pytest.raises(TypeError, match="Pid"):
            Registry.values("reg", "k", None)


class TestCount:
    @pytest.mark.parametrize(("keys", "partitions"), [("unique", 1), ("duplicate", 4)])
    def test_counts_entries_across_partitions_as_they_come_and_go(self, runtime, keys, partitions):
        Registry.start_link(name="reg", keys=keys, partitions=partitions)
        assert Registry.count("reg") == 0
        pids = [owner(("reg", f"k{i}", i), ("reg", f"j{i}", i)) for i in range(6)]
        assert Registry.count("reg") == 12
        as_owner(pids[0], lambda: Registry.unregister("reg", "k0"))
        assert Registry.count("reg") == 11
        stop_owner(pids[1])
        assert Registry.count("reg") == 9
        for p in pids[2:] + pids[:1]:
            stop_owner(p)
        assert Registry.count("reg") == 0


class TestUpdateValue:
    def test_returns_new_and_old_and_stores_the_new_value(self, runtime):
        Registry.start_link(name="reg", partitions=2)
        Registry.register("reg", "hello", 1)
        assert Registry.update_value("reg", "hello", lambda v: v + 1) == (2, 1)
        assert Registry.lookup("reg", "hello") == [(otpy.self(), 2)]

    def test_a_key_the_caller_does_not_hold_raises_not_found(self, runtime):
        Registry.start_link(name="reg")
        holder = owner(("reg", "theirs", 1))
        with pytest.raises(otpy.NotFoundError):
            Registry.update_value("reg", "theirs", lambda v: v + 1)
        with pytest.raises(otpy.NotFoundError):
            Registry.update_value("reg", "nobody", lambda v: v + 1)
        assert Registry.lookup("reg", "theirs") == [(holder, 1)]
        stop_owner(holder)

    def test_a_function_that_raises_leaves_the_value(self, runtime):
        Registry.start_link(name="reg")
        Registry.register("reg", "k", 1)
        with pytest.raises(ZeroDivisionError):
            Registry.update_value("reg", "k", lambda v: v / 0)
        assert Registry.lookup("reg", "k") == [(otpy.self(), 1)]

    def test_a_duplicate_registry_raises_type_error(self, runtime):
        Registry.start_link(name="dup", keys="duplicate")
        Registry.register("dup", "k", 1)
        with pytest.raises(TypeError, match="unique"):
            Registry.update_value("dup", "k", lambda v: v + 1)

    def test_listeners_are_not_told(self, runtime):
        me = otpy.self()
        Registry.start_link(name="reg", listeners=[me])
        Registry.register("reg", "k", 1)
        assert_receive(tagged("register"), WAIT)
        Registry.update_value("reg", "k", lambda v: v + 1)
        refute_receive(lambda m: type(m) is tuple, timeout=0)


class TestMeta:
    def test_put_meta_then_meta_and_none_for_a_missing_key(self, runtime):
        Registry.start_link(name="reg")
        assert Registry.meta("reg", "custom") is None
        Registry.put_meta("reg", "custom", "value")
        Registry.put_meta("reg", ("tuple", "key"), [1])
        assert Registry.meta("reg", "custom") == "value"
        assert Registry.meta("reg", ("tuple", "key")) == [1]
        assert run_in_process(Registry.meta, "reg", "custom") == "value"

    def test_delete_meta_removes_a_key(self, runtime):
        Registry.start_link(name="reg", meta={"a": 1})
        Registry.delete_meta("reg", "a")
        Registry.delete_meta("reg", "never")
        assert Registry.meta("reg", "a") is None

    def test_meta_is_separate_from_the_entries(self, runtime):
        Registry.start_link(name="reg")
        Registry.put_meta("reg", "k", 1)
        assert Registry.count("reg") == 0
        assert Registry.lookup("reg", "k") == []

    def test_an_unhashable_meta_key_raises_type_error(self, runtime):
        Registry.start_link(name="reg")
        with pytest.raises(TypeError, match="hashable"):
            Registry.put_meta("reg", ["k"], 1)


# --- listeners -----------------------------------------------------------------------------------


class TestListeners:
    def test_register_and_unregister_are_announced_with_the_registry_name(self, runtime):
        me = otpy.self()
        Registry.start_link(name="reg", keys="duplicate", listeners=[me])
        Registry.register("reg", "k", "v")
        assert assert_receive(tagged("register"), WAIT) == ("register", "reg", "k", me, "v")
        Registry.unregister("reg", "k")
        assert assert_receive(tagged("unregister"), WAIT) == ("unregister", "reg", "k", me)

    def test_listeners_are_reached_by_name_and_an_unnamed_registry_sends_its_pid(self, runtime):
        otpy.register("listener", otpy.self())
        reg = Registry.start_link(listeners=("listener",))
        pid = owner((reg, "k", 1))
        assert assert_receive(tagged("register"), WAIT) == ("register", reg, "k", pid, 1)
        stop_owner(pid)

    def test_a_via_registration_is_announced(self, runtime):
        me = otpy.self()
        Registry.start_link(name="reg", listeners=[me])
        pid = Echo.start(name=via("reg", "echo", "val"))
        assert assert_receive(tagged("register"), WAIT) == ("register", "reg", "echo", pid, "val")
        stop_owner(pid)

    def test_nothing_is_sent_for_a_failed_registration_or_an_empty_unregister(self, runtime):
        me = otpy.self()
        Registry.start_link(name="reg", listeners=[me])
        holder = owner(("reg", "k", 1))
        assert_receive(tagged("register"), WAIT)
        with pytest.raises(otpy.AlreadyRegisteredError):
            Registry.register("reg", "k", 2)
        Registry.unregister("reg", "k")
        refute_receive(lambda m: type(m) is tuple, timeout=0)
        stop_owner(holder)

    def test_a_dying_owner_sends_nothing_the_listener_monitors_it_instead(self, runtime):
        me = otpy.self()
        Registry.start_link(name="reg", listeners=[me])
        pid = owner(("reg", "k", 1))
        assert_receive(tagged("register"), WAIT)
        stop_owner(pid)
        Registry.register("reg", "marker")
        # The next message is the marker's registration: the death sent no "unregister".
        assert assert_receive(lambda m: type(m) is tuple, WAIT)[:3] == ("register", "reg", "marker")

    def test_a_dead_or_unknown_listener_does_not_break_registration(self, runtime):
        dead, ref = otpy.spawn_monitor(lambda: None)
        assert_receive(down_of(ref), WAIT)
        me = otpy.self()
        Registry.start_link(name="reg", listeners=[dead, "nobody_has_this_name", me])
        Registry.register("reg", "k", 1)
        assert assert_receive(tagged("register"), WAIT) == ("register", "reg", "k", me, 1)
        assert Registry.lookup("reg", "k") == [(me, 1)]


# --- via -----------------------------------------------------------------------------------------


class TestVia:
    def test_a_via_name_registers_the_started_server_under_the_key(self, runtime):
        Registry.start_link(name="reg", partitions=4)
        pid = Echo.start_link(name=via("reg", "echo"))
        assert Registry.lookup("reg", "echo") == [(pid, None)]
        assert Registry.keys("reg", pid) == ["echo"]
        assert Registry.keys("reg", otpy.self()) == []

    def test_call_cast_and_send_reach_the_server_through_its_via_name(self, runtime):
        Registry.start_link(name="reg")
        Echo.start_link("e1", name=via("reg", ("echo", 1)))
        name = via("reg", ("echo", 1))
        me = otpy.self()
        assert otpy.GenServer.call(name, "hi") == ("e1", "hi")
        assert Echo.call(name, "again", timeout=WAIT) == ("e1", "again")
        otpy.GenServer.cast(name, (me, "c"))
        assert assert_receive(tagged("cast"), WAIT) == ("cast", "e1", "c")
        otpy.send(name, (me, "s"))
        assert assert_receive(tagged("info"), WAIT) == ("info", "e1", "s")

    def test_an_agent_can_be_named_with_via(self, runtime):
        Registry.start_link(name="reg")
        otpy.Agent.start_link(lambda: 41, name=via("reg", "agent"))
        otpy.Agent.update(via("reg", "agent"), lambda n: n + 1)
        assert otpy.Agent.get(via("reg", "agent"), lambda n: n) == 42

    def test_the_value_of_a_via_name_is_the_entrys_value(self, runtime):
        Registry.start_link(name="reg")
        pid = Echo.start_link(name=via("reg", "echo", {"role": "primary"}))
        assert Registry.lookup("reg", "echo") == [(pid, {"role": "primary"})]

    def test_a_taken_key_makes_start_raise_already_started_error_with_the_holder(self, runtime):
        Registry.start_link(name="reg")
        holder = Echo.start_link(name=via("reg", "echo"))
        before = set(otpy.processes())
        with pytest.raises(otpy.AlreadyStartedError) as info:
            Echo.start_link(name=via("reg", "echo"))
        assert info.value.pid == holder
        assert set(otpy.processes()) == before
        with pytest.raises(otpy.AlreadyStartedError):
            owner_pid = owner(("reg", "mine", None))
            try:
                Echo.start(name=via("reg", "mine"))
            finally:
                stop_owner(owner_pid)

    def test_a_failing_init_leaves_the_key_free(self, runtime):
        class Failing(otpy.GenServer):
            def init(self):
                raise ValueError("no")

        Registry.start_link(name="reg")
        with pytest.raises(otpy.StartError):
            Failing.start_link(name=via("reg", "k"))
        assert Registry.lookup("reg", "k") == []
        Echo.start_link(name=via("reg", "k"))

    def test_after_the_server_is_down_its_name_is_unknown_and_free(self, runtime):
        Registry.start_link(name="reg")
        pid = Echo.start(name=via("reg", "echo"))
        ref = otpy.monitor(pid)
        otpy.GenServer.stop(pid)
        assert_receive(down_of(ref), WAIT)
        with pytest.raises(otpy.NoProcError):
            otpy.GenServer.call(via("reg", "echo"), "hi")
        with pytest.raises(otpy.NoProcError):
            otpy.send(via("reg", "echo"), "hi")
        otpy.GenServer.cast(via("reg", "echo"), "hi")  # never raises
        new = Echo.start_link(name=via("reg", "echo"))
        assert otpy.GenServer.call(via("reg", "echo"), "hi") == ("echo", "hi")
        assert Registry.lookup("reg", "echo") == [(new, None)]

    def test_monitor_and_whereis_name_through_via(self, runtime):
        Registry.start_link(name="reg")
        pid = Echo.start(name=via("reg", "echo"))
        assert via("reg", "echo").whereis_name() == pid
        assert via("reg", "nobody").whereis_name() is None
        ref = otpy.monitor(via("reg", "echo"))
        otpy.exit(pid, "kill")
        assert assert_receive(down_of(ref), WAIT).pid == pid

    def test_unregister_name_unregisters_the_caller(self, runtime):
        Registry.start_link(name="reg")
        Registry.register("reg", "k")
        via("reg", "k").unregister_name()
        assert Registry.lookup("reg", "k") == []

    def test_a_duplicate_registry_refuses_via_but_cast_still_never_raises(self, runtime):
        Registry.start_link(name="dup", keys="duplicate")
        before = set(otpy.processes())
        with pytest.raises(TypeError, match="unique"):
            Echo.start_link(name=via("dup", "k"))
        assert set(otpy.processes()) == before
        Registry.register("dup", "k")
        with pytest.raises(TypeError, match="unique"):
            otpy.send(via("dup", "k"), "hi")
        with pytest.raises(TypeError, match="unique"):
            otpy.GenServer.call(via("dup", "k"), "hi")
        otpy.GenServer.cast(via("dup", "k"), "hi")

    def test_an_unknown_registry_raises_noproc_error_except_for_cast(self, runtime):
        with pytest.raises(otpy.NoProcError, match="nowhere"):
            otpy.GenServer.call(via("nowhere", "k"), "hi")
        with pytest.raises(otpy.NoProcError):
            otpy.send(via("nowhere", "k"), "hi")
        with pytest.raises(otpy.NoProcError):
            Echo.start_link(name=via("nowhere", "k"))
        otpy.GenServer.cast(via("nowhere", "k"), "hi")

    def test_a_via_name_is_a_frozen_value_equal_by_registry_and_key(self, runtime):
        a = via("reg", "k", 1)
        assert a == via("reg", "k", 2)
        assert hash(a) == hash(via("reg", "k"))
        assert a != via("reg", "other")
        assert repr(via("reg", "k")) == "otpy.via('reg', 'k')"
        assert repr(a) == "otpy.via('reg', 'k', value=1)"
        assert (a.registry, a.key, a.value) == ("reg", "k", 1)
        with pytest.raises(AttributeError):
            a.key = "x"

    @pytest.mark.parametrize(("registry", "key"), [(1, "k"), (None, "k"), ("reg", ["k"])])
    def test_a_bad_registry_or_key_raises_type_error(self, runtime, registry, key):
        with pytest.raises(TypeError):
            via(registry, key)


# --- owners' death -------------------------------------------------------------------------------


class TestEntriesGoWithTheirOwner:
    @pytest.mark.parametrize("how", ["kill", "crash", "normal", "exit_signal"])
    def test_entries_are_gone_when_the_down_arrives(self, runtime, how):
        Registry.start_link(name="reg", partitions=3)
        Registry.start_link(name="dup", keys="duplicate", partitions=3)
        pid = owner(("reg", "a", 1), ("reg", "b", 2), ("dup", "t", 3), ("dup", "t", 4))
        ref = otpy.monitor(pid)
        match how:
            case "kill":
                otpy.exit(pid, "kill")
            case "crash":
                otpy.GenServer.cast(pid, "crash")
            case "normal":
                otpy.GenServer.stop(pid)
            case "exit_signal":
                otpy.exit(pid, "shutdown")
        assert_receive(down_of(ref), WAIT)
        assert Registry.lookup("reg", "a") == []
        assert Registry.lookup("reg", "b") == []
        assert Registry.lookup("dup", "t") == []
        assert Registry.keys("reg", pid) == []
        assert Registry.values("dup", "t", pid) == []
        assert Registry.count("reg") == 0
        assert Registry.count("dup") == 0

    def test_a_linked_process_that_traps_exits_finds_the_key_free_on_the_exit(self, runtime):
        Registry.start_link(name="reg")
        otpy.trap_exits(True)
        try:
            pid = otpy.spawn_link(lambda: Registry.register("reg", "k"))
            assert assert_receive(lambda m: isinstance(m, otpy.Exit) and m.pid == pid, WAIT).reason == "normal"
            Registry.register("reg", "k", "mine")
            assert Registry.lookup("reg", "k") == [(otpy.self(), "mine")]
        finally:
            otpy.trap_exits(False)

    def test_a_process_killed_while_it_registers_leaves_no_entry(self, runtime):
        Registry.start_link(name="reg", partitions=2)

        def register_many():
            for i in range(10_000):
                Registry.register("reg", i)

        for _ in range(20):
            pid, ref = otpy.spawn_monitor(register_many)
            otpy.exit(pid, "kill")
            assert_receive(down_of(ref), WAIT)
            assert Registry.count("reg") == 0

    def test_a_server_restarted_under_its_via_name_gets_it_back_at_once(self, runtime):
        Registry.start_link(name="reg")
        for i in range(50):
            pid = Echo.start(i, name=via("reg", "worker"))
            ref = otpy.monitor(pid)
            otpy.exit(pid, "kill")
            assert_receive(down_of(ref), WAIT)
        Echo.start_link("last", name=via("reg", "worker"))
        assert otpy.GenServer.call(via("reg", "worker"), "x") == ("last", "x")


# --- bad registry arguments ------------------------------------------------------------------------


class TestUnknownRegistry:
    CALLS = [
        ("register", lambda reg: Registry.register(reg, "k")),
        ("unregister", lambda reg: Registry.unregister(reg, "k")),
        ("lookup", lambda reg: Registry.lookup(reg, "k")),
        ("match", lambda reg: Registry.match(reg, "k", bool)),
        ("dispatch", lambda reg: Registry.dispatch(reg, "k", print)),
        ("keys", lambda reg: Registry.keys(reg, otpy.self())),
        ("values", lambda reg: Registry.values(reg, "k", otpy.self())),
        ("count", lambda reg: Registry.count(reg)),
        ("update_value", lambda reg: Registry.update_value(reg, "k", str)),
        ("meta", lambda reg: Registry.meta(reg, "k")),
        ("put_meta", lambda reg: Registry.put_meta(reg, "k", 1)),
    ]

    @pytest.mark.parametrize(("what", "fn"), CALLS, ids=[c[0] for c in CALLS])
    def test_an_unknown_name_raises_noproc_error_naming_it(self, runtime, what, fn):
        with pytest.raises(otpy.NoProcError, match="no_such_registry") as info:
            fn("no_such_registry")
        assert info.value.target == "no_such_registry"
        assert f"Registry.{what}" in str(info.value)

    @pytest.mark.parametrize(("what", "fn"), CALLS, ids=[c[0] for c in CALLS])
    def test_a_dead_pid_raises_noproc_error(self, runtime, what, fn):
        pid, ref = otpy.spawn_monitor(lambda: None)
        assert_receive(down_of(ref), WAIT)
        with pytest.raises(otpy.NoProcError):
            fn(pid)

    @pytest.mark.parametrize(("what", "fn"), CALLS, ids=[c[0] for c in CALLS])
    def test_a_process_that_is_not_a_registry_raises_type_error(self, runtime, what, fn):
        Echo.start_link(name="not_a_registry")
        with pytest.raises(TypeError, match=r"not an otpy\.Registry"):
            fn("not_a_registry")

    @pytest.mark.parametrize("reg", [1, None, ("reg",), b"reg"])
    def test_a_registry_that_is_not_a_name_or_pid_raises_type_error(self, runtime, reg):
        with pytest.raises(TypeError, match="registry"):
            Registry.lookup(reg, "k")


# --- concurrency ---------------------------------------------------------------------------------


class TestConcurrentLookups:
    def test_no_lookup_returns_an_owner_after_its_down_was_delivered(self, runtime):
        """8 threads look up while owners register and die.

        Each reader monitors every owner it finds. Before each lookup it takes
        the Downs already in its mailbox: those were delivered before the
        lookup began, to monitors set before it began, so the lookup must not
        return any of those owners. (That includes ``Down(noproc)`` from
        monitoring an owner that had just died, which may come before its
        exit hook ran: reads skip dead pids for that.)
        """
        Registry.start_link(name="stress", partitions=4)
        Registry.start_link(name="stress_dup", keys="duplicate", partitions=4)
        keys = [f"k{i}" for i in range(12)]
        stop = threading.Event()
        failures: list[object] = []
        stats: list[tuple[int, int, int]] = []

        def try_register(key):
            try:
                Registry.register("stress", key, "u")
            except otpy.AlreadyRegisteredError:
                pass

        def register_and_leave(key):
            try_register(key)
            Registry.register("stress_dup", key, "d")

        def reader(seed):
            rng = random.Random(seed)
            dead: set[otpy.Pid] = set()
            reasons: dict[otpy.Pid, object] = {}
            monitored: set[otpy.Pid] = set()
            lookups = found_any = 0
            try:
                while not stop.is_set():
                    while True:
                        try:
                            down = otpy.receive(timeout=0)
                        except otpy.Timeout:
                            break
                        dead.add(down.pid)
                        reasons[down.pid] = down.reason
                    key = rng.choice(keys)
                    for reg in ("stress", "stress_dup"):
                        found = [pid for pid, _ in Registry.lookup(reg, key)]
                        lookups += 1
                        found_any += bool(found)
                        stale = [pid for pid in found if pid in dead]
                        if stale:
                            failures.append((reg, key, stale, [reasons[p] for p in stale]))
                        for pid in found:
                            if pid not in monitored:
                                monitored.add(pid)
                                otpy.monitor(pid)
            except BaseException as exc:  # reported to the test below
                failures.append(exc)
            stats.append((lookups, found_any, len(dead)))

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        rng = random.Random(42)
        live: deque[otpy.Pid] = deque()
        spawned: list[otpy.Pid] = []
        deadline = time.monotonic() + 2.0
        rounds = 0
        try:
            while time.monotonic() < deadline and not failures:
                rounds += 1
                key = rng.choice(keys)
                pid = Owner.start(("stress_dup", key, "d"))
                as_owner(pid, lambda k=key: try_register(k))
                live.append(pid)
                body = otpy.spawn(register_and_leave, rng.choice(keys))
                spawned.append(body)
                if rng.random() < 0.5:
                    otpy.exit(body, "kill")  # may land in the middle of its registration
                if len(live) > 6:
                    victim = live.popleft()
                    match rng.randrange(3):
                        case 0:
                            otpy.exit(victim, "kill")
                        case 1:
                            otpy.GenServer.cast(victim, "crash")
                        case 2:
                            otpy.GenServer.stop(victim)
        finally:
            stop.set()
            for t in threads:
                t.join(WAIT)
            for pid in list(live) + spawned:
                otpy.exit(pid, "kill")
        assert failures == []
        assert len(stats) == 8
        assert all(lookups > 50 for lookups, _, _ in stats), stats
        assert sum(found for _, found, _ in stats) > 100, stats
        assert sum(dead for _, _, dead in stats) > 20, stats
        assert rounds > 100
        wait_until(lambda: Registry.count("stress") == 0 and Registry.count("stress_dup") == 0)
