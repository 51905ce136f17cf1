"""Deaths that fan out far: link chains, wide monitors, deep trees, shutdown with all of them alive."""

from __future__ import annotations

import itertools
import sys

import pytest

import otpy
from otpy.testing import assert_receive
from tests.conftest import WAIT, down_of

pytestmark = pytest.mark.timeout(60)

CHAIN = 10_000


class Node(otpy.GenServer):
    """A server that links to whoever it is told to, and traps exits if asked."""

    def init(self, trap=False):
        if trap:
            otpy.trap_exits(True)

    def handle_call(self, request, caller):
        match request:
            case ("link", pid):
                otpy.link(pid)
                return "ok"

    def handle_info(self, message):
        match message:
            case otpy.Exit(reason=reason):
                raise otpy.Stop(("relayed", reason))


def chain(n, **init):
    """``n`` unlinked servers, each linked to the next."""
    pids = [Node.start(**init) for _ in range(n)]
    for a, b in itertools.pairwise(pids):
        otpy.GenServer.call(a, ("link", b))
    return pids


class TestLinkChains:
    def test_a_chain_of_ten_thousand_linked_processes_dies_with_the_heads_reason(self, runtime):
        pids = chain(CHAIN)
        refs = [otpy.monitor(pid) for pid in pids[:: CHAIN // 10]] + [otpy.monitor(pids[-1])]
        assert CHAIN > sys.getrecursionlimit()
        otpy.exit(pids[0], "boom")
        for ref in refs:
            assert assert_receive(down_of(ref), WAIT).reason == "boom"
        assert not any(otpy.is_alive(pid) for pid in pids)
        assert runtime.processes() == [otpy.self()]

    def test_a_kill_at_the_head_reaches_the_tail_as_killed(self, runtime):
        pids = chain(CHAIN)
        ref = otpy.monitor(pids[-1])
        otpy.exit(pids[0], "kill")
        assert assert_receive(down_of(ref), WAIT).reason == "killed"

    def test_a_crash_in_the_middle_kills_both_directions(self, runtime):
        pids = chain(CHAIN)
        first, last = otpy.monitor(pids[0]), otpy.monitor(pids[-1])
        otpy.exit(pids[CHAIN // 2], "boom")
        assert assert_receive(down_of(first), WAIT).reason == "boom"
        assert assert_receive(down_of(last), WAIT).reason == "boom"

    def test_a_trapping_chain_relays_the_reason_link_by_link(self, runtime):
        # Each node turns the Exit it traps into its own exit: a message per hop, not a recursion.
        pids = chain(2_000, trap=True)
        ref = otpy.monitor(pids[-1])
        otpy.exit(pids[0], "kill")
        reason = assert_receive(down_of(ref), WAIT).reason
        depth = 0
        while reason != "killed":
            assert reason[0] == "relayed"
            reason = reason[1]
            depth += 1
        assert depth == 1_999

    def test_a_linked_thread_process_at_the_end_of_a_chain_gets_exit_error(self, runtime):
        pids = chain(CHAIN)
        otpy.link(pids[-1])
        otpy.trap_exits(True)
        otpy.exit(pids[0], "boom")
        exit_ = assert_receive(lambda m: isinstance(m, otpy.Exit), WAIT)
        assert exit_ == otpy.Exit(pids[-1], "boom")
        otpy.trap_exits(False)


class TestWideFanOut:
    def test_ten_thousand_monitors_of_one_process_all_get_their_down(self, runtime):
        target = otpy.spawn(otpy.receive)
        me = otpy.self()

        class Watcher(otpy.GenServer):
            def init(self):
                self.ref = otpy.monitor(target)

            def handle_info(self, message):
                if isinstance(message, otpy.Down) and message.ref == self.ref:
                    otpy.send(me, ("down", message.reason))
                    raise otpy.Stop("normal")

        for _ in range(CHAIN):
            Watcher.start()
        otpy.exit(target, "boom")
        for _ in range(CHAIN):
            assert assert_receive(lambda m: type(m) is tuple and m[0] == "down", WAIT) == ("down", "boom")

    def test_a_process_linked_to_ten_thousand_others_kills_them_all(self, runtime):
        hub = Node.start()
        spokes = [Node.start() for _ in range(CHAIN)]
        for spoke in spokes:
            otpy.GenServer.call(spoke, ("link", hub))
        ref = otpy.monitor(spokes[-1])
        otpy.exit(hub, "boom")
        assert assert_receive(down_of(ref), WAIT).reason == "boom"
        assert not any(otpy.is_alive(pid) for pid in spokes)


class TestShutdown:
    def test_runtime_shutdown_with_a_long_chain_alive_completes(self):
        with otpy.Runtime() as rt:
            chain(CHAIN)
            assert len(rt.processes()) == CHAIN + 1
        assert rt.processes() == []

    def test_runtime_shutdown_with_a_trapping_chain_alive_completes(self):
        with otpy.Runtime() as rt:
            chain(2_000, trap=True)
        assert rt.processes() == []


class Recorder(otpy.GenServer):
    """A worker that reports its depth when it terminates."""

    def init(self, depth, log):
        otpy.trap_exits(True)
        self.depth = depth
        self.log = log

    def terminate(self, reason):
        otpy.send(self.log, ("terminated", self.depth))


def level(depth, log):
    """A supervisor at ``depth`` with a worker and, below it, the next level."""
    children = [Recorder.child_spec(depth, log, id="worker")]
    if depth > 0:
        children.append(
            otpy.ChildSpec(
                id="below",
                start=(otpy.Supervisor.start_link, (level(depth - 1, log),), {}),
                type="supervisor",
            )
        )
    return children


class TestDeepTrees:
    DEPTH = 500

    def test_a_tree_nested_500_deep_starts_and_shuts_down_in_order(self, runtime):
        me = otpy.self()
        root = otpy.Supervisor.start_link(level(self.DEPTH, me))
        node, depth = root, self.DEPTH
        while True:  # every level runs its worker, and the level below it
            children = {c.id: c.pid for c in otpy.Supervisor.which_children(node)}
            assert otpy.is_alive(children["worker"])
            if depth == 0:
                assert "below" not in children
                break
            node, depth = children["below"], depth - 1
        otpy.Supervisor.stop(root, timeout=WAIT * 4)
        # Children stop in reverse start order: each level's subtree before its worker,
        # so the deepest worker goes first and the root's last.
        order = [assert_receive(lambda m: type(m) is tuple and m[0] == "terminated", WAIT)[1] for _ in range(501)]
        assert order == list(range(self.DEPTH + 1))
        assert runtime.processes() == [otpy.self()]

    def test_runtime_shutdown_stops_a_deep_tree(self):
        with otpy.Runtime() as rt:
            me = otpy.self()
            otpy.Supervisor.start(level(self.DEPTH, me))
        assert rt.processes() == []


class TestRegistryCleanup:
    def test_a_process_with_ten_thousand_keys_dies_and_every_entry_goes(self, runtime):
        otpy.Registry.start_link(keys="duplicate", name="reg", partitions=2)

        class Holder(otpy.GenServer):
            def init(self):
                for key in range(CHAIN):
                    otpy.Registry.register("reg", key)

        pid = Holder.start()
        assert otpy.Registry.count("reg") == CHAIN
        ref = otpy.monitor(pid)
        otpy.exit(pid, "kill")
        assert_receive(down_of(ref), WAIT)
        assert otpy.Registry.count("reg") == 0

    def test_a_chain_of_registered_processes_dies_and_leaves_no_entry(self, runtime):
        otpy.Registry.start_link(keys="unique", name="reg")
        pids = [Node.start(name=otpy.via("reg", i)) for i in range(CHAIN)]
        for a, b in itertools.pairwise(pids):
            otpy.GenServer.call(a, ("link", b))
        ref = otpy.monitor(pids[-1])
        otpy.exit(pids[0], "boom")
        assert_receive(down_of(ref), WAIT)
        assert otpy.Registry.count("reg") == 0
        assert otpy.Registry.lookup("reg", CHAIN - 1) == []
