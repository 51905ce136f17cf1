"""Acceptance tests for the PartitionSupervisor section of API.md.

Starting N copies of a child, ``otpy.partition(name, key)`` routing (ints by
``abs(key) % n``; other keys by a hash that is the same in every Python
process), the CPU-count default, ``with_arguments``, restarts (routing
follows a restarted partition), start failures and stopping.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from conftest import WAIT, down_of, wait_until

import otpy
from otpy._partition_supervisor import stable_hash
from otpy.testing import assert_receive

pytestmark = pytest.mark.timeout(60)

PS = otpy.PartitionSupervisor


# --- helpers -----------------------------------------------------------------------------------


class Shard(otpy.GenServer):
    """Knows its partition (the last start argument, via with_arguments) and keeps a log."""

    def init(self, *args):
        self.args = args
        self.log = []

    def handle_call(self, request, caller):
        match request:
            case "index":
                return self.args[-1]
            case "args":
                return self.args
            case "pid":
                return otpy.self()
            case "log":
                return list(self.log)
            case ("crash", exc):
                raise exc
        raise AssertionError(f"unexpected call {request!r}")

    def handle_cast(self, request):
        self.log.append(request)


def with_index(args, partition):
    return (*args, partition)


def start_shards(n=4, name="shards", **options):
    return PS.start_link(
        child_spec=Shard.child_spec("config"),
        partitions=n,
        name=name,
        with_arguments=with_index,
        **options,
    )


def index_for(key, name="shards"):
    return otpy.GenServer.call(otpy.partition(name, key), "index")


def pids_of(sup) -> list:
    return [c.pid for c in PS.which_children(sup)]


# --- start_link --------------------------------------------------------------------------------


class TestStartLink:
    def test_one_child_per_partition_with_the_partition_numbers_as_ids(self, runtime):
        sup = start_shards(4)
        infos = PS.which_children(sup)
        assert [i.id for i in infos] == [0, 1, 2, 3]
        assert all(i.type == "worker" and otpy.is_alive(i.pid) for i in infos)
        assert len({i.pid for i in infos}) == 4
        assert PS.count_children(sup) == otpy.ChildCount(4, 4, 0, 4)
        assert PS.partitions("shards") == 4

    def test_the_name_is_registered(self, runtime):
        sup = start_shards(2)
        assert otpy.whereis("shards") == sup

    def test_partitions_default_to_the_cpu_count(self, runtime):
        sup = PS.start_link(child_spec=Shard.child_spec(), name="shards")
        assert len(PS.which_children(sup)) == os.cpu_count()
        assert PS.partitions(sup) == os.cpu_count()

    def test_a_class_as_child_spec_means_its_child_spec(self, runtime):
        PS.start_link(child_spec=Shard, partitions=2, name="shards")
        assert otpy.GenServer.call(otpy.partition("shards", 1), "args") == ()

    def test_with_arguments_gives_each_copy_its_own_start_arguments(self, runtime):
        seen = []

        def args_for(args, partition):
            seen.append((args, partition))
            return (*args, f"shard-{partition}")

        sup = PS.start_link(
            child_spec=Shard.child_spec("config"),
            partitions=3,
            name="shards",
            with_arguments=args_for,
        )
        assert sorted(seen) == [(("config",), 0), (("config",), 1), (("config",), 2)]
        for info in PS.which_children(sup):
            assert otpy.GenServer.call(info.pid, "args") == ("config", f"shard-{info.id}")

    def test_without_with_arguments_every_copy_gets_the_same_arguments(self, runtime):
        sup = PS.start_link(child_spec=Shard.child_spec("same"), partitions=3, name="shards")
        assert {otpy.GenServer.call(p, "args") for p in pids_of(sup)} == {("same",)}

    def test_a_taken_name_raises_already_started_error(self, runtime):
        sup = start_shards(2)
        with pytest.raises(otpy.AlreadyStartedError) as info:
            start_shards(2)
        assert info.value.pid == sup
        assert len(pids_of(sup)) == 2

    def test_a_name_is_required(self, runtime):
        with pytest.raises(ValueError, match="name"):
            PS.start_link(child_spec=Shard.child_spec(), partitions=2, name=None)

    @pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
    def test_bad_partitions_raise_value_error_naming_the_value(self, runtime, bad):
        with pytest.raises(ValueError) as info:
            PS.start_link(child_spec=Shard.child_spec(), partitions=bad, name="shards")
        assert repr(bad) in str(info.value)

    def test_a_with_arguments_that_is_not_callable_raises_type_error(self, runtime):
        with pytest.raises(TypeError):
            PS.start_link(child_spec=Shard, partitions=2, name="shards", with_arguments=42)

    def test_a_partition_failing_to_start_raises_start_error_and_leaves_nothing(
        self, runtime, caplog
    ):
        otpy.self()
        baseline = set(otpy.processes())
        error = RuntimeError("partition 2 cannot start")

        class Picky(otpy.GenServer):
            def init(self, partition):
                if partition == 2:
                    raise error

        with pytest.raises(otpy.StartError) as info:
            PS.start_link(
                child_spec=Picky.child_spec(),
                partitions=4,
                name="picky",
                with_arguments=lambda args, p: (p,),
            )
        assert info.value.child_id == 2
        assert info.value.reason is error
        assert otpy.whereis("picky") is None
        assert set(otpy.processes()) == baseline

    def test_a_partition_supervisor_can_be_a_child_of_a_supervisor(self, runtime):
        root = otpy.Supervisor.start_link(
            [PS.child_spec(child_spec=Shard.child_spec(), partitions=2, name="shards")]
        )
        [info] = otpy.Supervisor.which_children(root)
        assert (info.id, info.type) == (PS, "supervisor")
        assert otpy.whereis("shards") == info.pid
        assert otpy.GenServer.call(otpy.partition("shards", 0), "args") == ()


# --- routing -----------------------------------------------------------------------------------


class TestPartition:
    def test_an_int_key_goes_to_abs_key_modulo_n(self, runtime):
        start_shards(4)
        for key in [*range(-9, 10), 10**20 + 3, -(10**20) - 1]:
            assert index_for(key) == abs(key) % 4, key

    def test_a_key_always_reaches_the_same_partition(self, runtime):
        start_shards(4)
        for key in ["alice", "bob", ("order", 7), b"raw", 2.5, None]:
            first = index_for(key)
            assert all(index_for(key) == first for _ in range(5)), key

    def test_a_str_key_routes_by_a_stable_hash(self, runtime):
        n = 5
        start_shards(n)
        assert stable_hash("abc") == 891568578  # computed once; must never change
        assert index_for("abc") == 891568578 % n
        for key in ["alice", "bob", "ünïcode", ""]:
            assert index_for(key) == stable_hash(key) % n

    def test_a_str_key_goes_to_the_same_partition_in_another_python_process(self, runtime):
        keys = ["abc", "alice", "ünïcode", ("user", 42), b"bytes", 2.5, None]
        n = 7
        start_shards(n)
        here = [index_for(key) for key in keys]
        script = (
            "import json, sys\n"
            "from otpy._partition_supervisor import stable_hash\n"
            f"keys = {keys!r}\n"
            f"print(json.dumps([stable_hash(k) % {n} for k in keys]))\n"
        )
        for seed in ("1", "12345"):
            env = {**os.environ, "PYTHONHASHSEED": seed}
            out = subprocess.run(
                [sys.executable, "-c", script],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            assert json.loads(out.stdout) == here, seed
        assert here[0] == 891568578 % n

    def test_keys_spread_over_all_partitions(self, runtime):
        start_shards(4)
        assert {index_for(f"user-{i}") for i in range(200)} == {0, 1, 2, 3}

    def test_cast_and_send_reach_the_partition_too(self, runtime):
        sup = start_shards(3)
        otpy.GenServer.cast(otpy.partition("shards", 4), ("cast", 1))
        assert otpy.GenServer.call(pids_of(sup)[1], "log") == [("cast", 1)]
        assert otpy.GenServer.call(pids_of(sup)[0], "log") == []

    def test_a_partition_of_an_unknown_name_raises_noproc_error(self, runtime):
        with pytest.raises(otpy.NoProcError):
            otpy.GenServer.call(otpy.partition("nobody", 1), "index")

    def test_routing_reaches_a_partition_after_it_crashed_and_restarted(self, runtime, caplog):
        sup = start_shards(4)
        old = pids_of(sup)
        ref = otpy.monitor(old[2])
        with pytest.raises(otpy.ExitError):
            otpy.GenServer.call(otpy.partition("shards", 6), ("crash", RuntimeError("boom")))
        assert_receive(down_of(ref), WAIT)
        wait_until(lambda: pids_of(sup)[2] not in (None, old[2]))
        new = pids_of(sup)
        assert new[:2] == old[:2] and new[3] == old[3]
        assert otpy.GenServer.call(otpy.partition("shards", 6), "pid") == new[2]
        assert index_for(6) == 2

    def test_routing_follows_many_kills_and_restarts(self, runtime, caplog):
        caplog.set_level(logging.CRITICAL + 1, logger="otpy")
        sup = start_shards(3, max_restarts=1000)
        for cycle in range(200):
            victim = cycle % 3
            old = pids_of(sup)[victim]
            otpy.exit(old, "kill")
            wait_until(lambda v=victim, o=old: pids_of(sup)[v] not in (None, o))
            assert index_for(victim + 3 * cycle) == victim
        assert all(otpy.is_alive(p) for p in pids_of(sup))

    def test_partitions_of_a_dead_supervisor_raise_noproc_error(self, runtime):
        with pytest.raises(otpy.NoProcError):
            PS.partitions("nobody")


# --- restarts and stop -------------------------------------------------------------------------


class TestRestarts:
    def test_a_crashed_partition_is_restarted_with_its_own_arguments(self, runtime, caplog):
        sup = start_shards(3)
        old = pids_of(sup)[1]
        ref = otpy.monitor(old)
        otpy.exit(old, "kill")
        assert_receive(down_of(ref), WAIT)
        wait_until(lambda: pids_of(sup)[1] not in (None, old))
        assert otpy.GenServer.call(pids_of(sup)[1], "args") == ("config", 1)

    def test_past_the_restart_intensity_the_partition_supervisor_exits(self, runtime, trap, caplog):
        sup = start_shards(2, max_restarts=0)
        otpy.exit(pids_of(sup)[0], "kill")
        exit_msg = assert_receive(lambda m: isinstance(m, otpy.Exit) and m.pid == sup, WAIT)
        assert exit_msg.reason == "shutdown"
        assert otpy.whereis("shards") is None

    def test_the_strategy_option_is_used(self, runtime, caplog):
        sup = start_shards(3, strategy="one_for_all")
        old = pids_of(sup)
        otpy.exit(old[1], "kill")
        wait_until(lambda: all(p not in (None, *old) for p in pids_of(sup)))


class TestStop:
    def test_stop_stops_every_partition_and_routing_then_fails(self, runtime):
        otpy.self()
        baseline = set(otpy.processes())
        sup = start_shards(4)
        children = pids_of(sup)
        PS.stop("shards")
        assert not otpy.is_alive(sup)
        assert not any(otpy.is_alive(p) for p in children)
        assert set(otpy.processes()) == baseline
        with pytest.raises(otpy.NoProcError):
            index_for(1)
