"""A live supervision tree under fire: chaos kills children, supervisors bring them back.

Run it::

    python -m otpy demo supervision               # or: python examples/supervision.py
    python -m otpy demo supervision --seed 7      # another sequence of victims
    python -m otpy demo supervision --events 4 --pause 0.2    # a short run

The tree (``root`` is an ``otpy.Supervisor``, strategy ``"one_for_one"``)::

    root        Supervisor, one_for_one, at most 3 restarts in 5s
    +-- registry    otpy.Registry "sessions_registry" with unique keys
    +-- sessions    DynamicSupervisor: a Session GenServer per user, each started with
    |   +-- alice       name=otpy.via("sessions_registry", user)
    |   +-- bob
    |   `-- carol
    +-- workers     PartitionSupervisor: 4 Counter GenServers, one per partition,
    |   +-- 0 .. 3      reached with otpy.partition("workers", customer)
    +-- tasks       TaskSupervisor: runs the orders as tasks, and the chaos monkey itself
    |   `-- chaos
    `-- billing     Supervisor, one_for_one, at most 2 restarts in 2s
        +-- invoicer
        `-- ledger

What happens, in order:

1. **Start.** ``root`` starts its children in list order, each one complete (a supervisor with
   all of its own children) before the next. Three sessions start under ``sessions``. Twenty
   orders run as tasks under ``tasks`` (``TaskSupervisor.async_stream_nolink``); each counts
   itself on the partition its customer routes to.
2. **Chaos.** A chaos task, itself a child of ``tasks``, wakes every ``--pause`` seconds,
   places four more orders, then picks a victim with ``random.Random(seed)``: a session, a
   partition, or (at most once a run) the whole ``workers`` supervisor. It kills the victim
   with ``otpy.exit(pid, "kill")``, an exit signal that cannot be trapped, waits until the
   victim's supervisor has started a replacement, and prints what happened and the tree.
3. **Finale.** ``billing`` allows 2 restarts within 2 seconds. Its ``ledger`` gets three bad
   entries in a row, and each one crashes it (``handle_cast`` raises ``TypeError``).
   ``billing`` restarts it twice; the third crash would be one restart too many, so
   ``billing`` stops its other child and exits with ``"shutdown"``. The failure climbs to
   ``root``, which restarts the whole ``billing`` subtree: a new ``billing`` with a fresh
   invoicer and ledger.
4. **Stop.** ``otpy.Supervisor.stop(root)`` stops the children in reverse start order (billing
   first, the registry last); the demo monitors them and prints the order they went down in.

How to read the output:

* A tree line is ``id  kind  restarts=N  state  pid``. ``restarts`` is ``ChildInfo.restarts``:
  how often the child's supervisor restarted it. A restarted child has a new pid, and its
  state starts over: a killed partition's ``count`` goes back to 0, and the orders it had
  counted are gone with the process.
* Sessions have no ids in a ``DynamicSupervisor`` (``ChildInfo.id`` is ``None``); the tree names
  each by the key its pid holds in the Registry (``otpy.Registry.keys``). After a restart,
  ``otpy.via("sessions_registry", user)`` finds the new process: the name outlives the pid.
* ``log:`` lines are the runtime's own error log (``logging`` records of the ``otpy`` loggers),
  printed one line each, without tracebacks, where they belong in the story.
* For one ``--seed`` every line is the same on every run except the pid numbers. No line races
  another: after each kill, the chaos task monitors the victim, waits for its ``Down``, then
  polls the supervisor's ``which_children`` until the replacement is there, and only then
  prints.

A note on the design: ``root`` is ``one_for_one`` so that each subtree recovers on its own. The
sessions depend on the registry, though (their names live there), and the Registry does not
take its registered processes down with it when it crashes; a real application would make
``root`` ``"rest_for_one"``, so that a crashed registry also restarts the sessions started after
it. Chaos leaves the registry alone for that reason, and leaves ``billing`` alone to keep its
restart budget for the finale.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import otpy

from ._logs import LogCollector, collected_logs

REGISTRY = "sessions_registry"
"""The name of the Registry that the sessions register in."""

USERS = ("alice", "bob", "carol")
PARTITIONS = 4
ORDERS = 20
ORDERS_PER_EVENT = 4
BILLING_MAX_RESTARTS = 2
BILLING_MAX_SECONDS = 2.0
ROOT_MAX_RESTARTS = 3
ROOT_MAX_SECONDS = 5.0
LEAF_MAX_RESTARTS = 100
"""``sessions`` and ``workers`` tolerate the chaos: they must not give up during the demo."""

WAIT = 5.0
"""How long to wait for a supervisor to react before the demo reports a failure."""


# -- the workers -----------------------------------------------------------------------------------


class Session(otpy.GenServer):
    """A user's session: registered in the Registry under the user's name."""

    def init(self, user: str) -> None:
        self.user = user

    def handle_call(self, request: Any, caller: Any) -> Any:
        match request:
            case "whoami":
                return self.user
        raise ValueError(f"Session does not understand the call {request!r}")


class Counter(otpy.GenServer):
    """One partition of ``workers``: counts the orders routed to it. The count is its state."""

    def init(self, partition: int) -> None:
        self.partition = partition
        self.count = 0

    def handle_call(self, request: Any, caller: Any) -> Any:
        match request:
            case "count":
                return self.count
            case "order":
                self.count += 1
                return self.partition
        raise ValueError(f"Counter does not understand the call {request!r}")


class Invoicer(otpy.GenServer):
    """A billing worker that never fails: it restarts only when its whole subtree does."""


class Ledger(otpy.GenServer):
    """A billing worker with a bug: an entry that is not a number crashes it."""

    def init(self) -> None:
        self.balance = 0

    def handle_cast(self, request: Any) -> None:
        match request:
            case ("post", int(amount)):
                self.balance += amount
            case ("post", amount):
                # The bug: no plan for a bad entry. Let it crash; billing restarts the ledger.
                raise TypeError(f"not an amount: {amount!r}")
            case _:
                raise ValueError(f"Ledger does not understand the cast {request!r}")


def place_order(customer: str) -> int:
    """One order, run as a task: count it on the customer's partition; returns the partition."""
    partition: int = otpy.GenServer.call(otpy.partition("workers", customer), "order")
    return partition


def place_orders(customers: list[str]) -> list[int]:
    """Run one task per order under ``tasks``, a few at a time; the partition of each order.

    ``async_stream_nolink`` runs the tasks as children of ``tasks``; when the stream is done it
    stops its workers, and their supervisor forgets them a moment later. Waiting for that keeps
    the printed tree the same from run to run.
    """
    me = otpy.self()
    partitions = []
    for result in otpy.TaskSupervisor.async_stream_nolink("tasks", customers, place_order):
        match result:
            case ("ok", int(partition)):
                partitions.append(partition)
            case ("exit", reason):
                raise DemoError(f"an order failed: {reason!r}")
    deadline = time.monotonic() + WAIT
    while any(pid != me for pid in otpy.TaskSupervisor.children("tasks")):
        if time.monotonic() > deadline:
            raise DemoError(f"the order tasks did not finish within {WAIT}s")
        otpy.sleep(0.005)
    return partitions


# -- the tree --------------------------------------------------------------------------------------


def billing_spec() -> otpy.ChildSpec:
    """The ``billing`` subtree: a supervisor with a tight restart budget."""
    return otpy.Supervisor.child_spec(
        [
            Invoicer.child_spec(name="invoicer").replace(id="invoicer"),
            Ledger.child_spec(name="ledger").replace(id="ledger"),
        ],
        id="billing",
        name="billing",
        strategy="one_for_one",
        max_restarts=BILLING_MAX_RESTARTS,
        max_seconds=BILLING_MAX_SECONDS,
    )


def root_children() -> list[otpy.ChildSpec]:
    """The root's children, in start order (they stop in the reverse order)."""
    return [
        otpy.Registry.child_spec(keys="unique", name=REGISTRY, id="registry"),
        otpy.DynamicSupervisor.child_spec(
            id="sessions",
            name="sessions",
            max_restarts=LEAF_MAX_RESTARTS,
            max_seconds=5.0,
        ),
        otpy.PartitionSupervisor.child_spec(
            id="workers",
            name="workers",
            child_spec=Counter.child_spec(),
            partitions=PARTITIONS,
            with_arguments=lambda args, partition: (partition,),
            max_restarts=LEAF_MAX_RESTARTS,
            max_seconds=5.0,
        ),
        otpy.TaskSupervisor.child_spec(id="tasks", name="tasks"),
        billing_spec(),
    ]


# -- printing the tree -----------------------------------------------------------------------------

_output_lock = threading.Lock()


def say(line: str = "") -> None:
    """Print one line whole (the main thread and the chaos task both print)."""
    with _output_lock:
        print(line, flush=True)


@dataclass
class Node:
    """One line of the printed tree, with the lines below it."""

    label: str
    kind: str
    pid: object
    restarts: int | None = None
    note: str = ""
    children: list[Node] | None = None


def session_node(info: otpy.ChildInfo) -> Node:
    """A session has no id in its DynamicSupervisor: name it by its key in the Registry."""
    user = "?"
    if isinstance(info.pid, otpy.Pid):
        keys = otpy.Registry.keys(REGISTRY, info.pid)
        user = str(keys[0]) if keys else "(not registered)"
    return Node(user, "session", info.pid, info.restarts)


def counter_node(info: otpy.ChildInfo) -> Node:
    """A partition's id is its number; its count is the state it would lose in a crash."""
    count = otpy.GenServer.call(info.pid, "count") if isinstance(info.pid, otpy.Pid) else "?"
    return Node(str(info.id), "counter", info.pid, info.restarts, f"count={count}")


def snapshot(root: str, chaos: otpy.Pid | None = None) -> Node:
    """Ask every supervisor under ``root`` for its children (``which_children``): the tree."""
    top: list[Node] = []
    for info in otpy.Supervisor.which_children(root):
        node = Node(str(info.id), info.type, info.pid, info.restarts)
        top.append(node)
        if not isinstance(info.pid, otpy.Pid):
            continue
        match info.id:
            case "registry":
                node.kind = "registry"
                node.note = f"entries={otpy.Registry.count(REGISTRY)}"
            case "sessions":
                children = otpy.DynamicSupervisor.which_children(info.pid)
                node.children = [session_node(c) for c in children]
            case "workers":
                children = otpy.PartitionSupervisor.which_children(info.pid)
                node.children = [counter_node(c) for c in children]
            case "tasks":
                children = otpy.DynamicSupervisor.which_children(info.pid)
                node.children = [
                    Node("chaos" if c.pid == chaos else "task", "task", c.pid, c.restarts)
                    for c in children
                ]
            case "billing":
                children = otpy.Supervisor.which_children(info.pid)
                node.children = [Node(str(c.id), c.type, c.pid, c.restarts) for c in children]
    return Node(root, "supervisor", otpy.whereis(root), None, "one_for_one", top)


def render(node: Node, indent: str = "  ") -> Iterator[str]:
    """The tree as lines: ``label  kind  restarts=N  note  pid``, the pid last."""

    def line(prefix: str, n: Node) -> str:
        restarts = "" if n.restarts is None else f"restarts={n.restarts}"
        head = f"{prefix}{n.label}"
        return f"{indent}{head:<20} {n.kind:<10} {restarts:<11} {n.note:<12} {n.pid}".rstrip()

    def walk(n: Node, prefix: str) -> Iterator[str]:
        kids = n.children or []
        for i, child in enumerate(kids):
            last = i == len(kids) - 1
            yield line(prefix + ("`-- " if last else "+-- "), child)
            yield from walk(child, prefix + ("    " if last else "|   "))

    yield line("", node)
    yield from walk(node, "")


def show_tree(chaos: otpy.Pid | None = None) -> None:
    """Print the whole tree under ``root``; ``chaos`` is the chaos task's pid, if it runs."""
    for text in render(snapshot("root", chaos)):
        say(text)


# -- the error log, one line per record ------------------------------------------------------------


def show_logs(logs: LogCollector) -> None:
    """Print the log records that came in since the last call, one line each."""
    for record in logs.drain():
        say(f"  log: {record}")


# -- waiting for a supervisor ----------------------------------------------------------------------


class DemoError(Exception):
    """A supervisor did not do what the demo expects within WAIT seconds."""


def down_of(ref: otpy.Ref) -> Callable[[object], bool]:
    """A ``match=`` predicate for the ``Down`` of monitor ``ref``."""
    return lambda m: isinstance(m, otpy.Down) and m.ref == ref


def wait_down(ref: otpy.Ref, what: str) -> object:
    """Wait for the ``Down`` of monitor ``ref``; its reason."""
    try:
        down = otpy.receive(timeout=WAIT, match=down_of(ref))
    except otpy.Timeout:
        raise DemoError(f"{what} did not go down within {WAIT}s") from None
    assert isinstance(down, otpy.Down)
    return down.reason


def wait_replaced(
    children: Callable[[], list[otpy.ChildInfo]], position: int, old: otpy.Pid, what: str
) -> otpy.ChildInfo:
    """Poll a supervisor's children until the one at ``position`` runs with a pid other than
    ``old``. A supervisor answers ``which_children`` only between restarts, so this sees either
    the dead child (not restarted yet) or its running replacement."""
    deadline = time.monotonic() + WAIT
    while True:
        infos = children()
        if position < len(infos):
            info = infos[position]
            if isinstance(info.pid, otpy.Pid) and info.pid != old:
                return info
        if time.monotonic() > deadline:
            raise DemoError(f"{what} was not restarted within {WAIT}s")
        otpy.sleep(0.005)


def kill(pid: otpy.Pid, what: str) -> None:
    """``otpy.exit(pid, "kill")`` and wait until the process is gone."""
    ref = otpy.monitor(pid)
    otpy.exit(pid, "kill")
    wait_down(ref, what)


# -- chaos -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Victim:
    """Something chaos may kill: which supervisor restarts it, and where it sits there."""

    kind: Literal["session", "partition", "supervisor"]
    name: str
    position: int
    pid: otpy.Pid


def victims(allow_supervisor: bool) -> list[Victim]:
    """The processes chaos may kill, always in the same order (so a seed picks the same ones)."""
    found: list[Victim] = []
    for i, info in enumerate(otpy.DynamicSupervisor.which_children("sessions")):
        if isinstance(info.pid, otpy.Pid):
            user = otpy.Registry.keys(REGISTRY, info.pid)[0]
            found.append(Victim("session", str(user), i, info.pid))
    for i, info in enumerate(otpy.PartitionSupervisor.which_children("workers")):
        if isinstance(info.pid, otpy.Pid):
            found.append(Victim("partition", str(info.id), i, info.pid))
    if allow_supervisor:
        for i, info in enumerate(otpy.Supervisor.which_children("root")):
            if info.id == "workers" and isinstance(info.pid, otpy.Pid):
                found.append(Victim("supervisor", "workers", i, info.pid))
    return found


def strike(victim: Victim, logs: LogCollector) -> None:
    """Kill ``victim``, wait for its supervisor to replace it, and print what happened."""
    match victim.kind:
        case "session":
            say(f"  chaos kills session {victim.name!r} {victim.pid}")
            kill(victim.pid, f"session {victim.name!r}")
            info = wait_replaced(
                lambda: otpy.DynamicSupervisor.which_children("sessions"),
                victim.position,
                victim.pid,
                f"session {victim.name!r}",
            )
            show_logs(logs)
            via = otpy.via(REGISTRY, victim.name)
            whoami = otpy.GenServer.call(via, "whoami")
            found = otpy.Registry.lookup(REGISTRY, victim.name)[0][0]
            say(f"  sessions restarted it (restart {info.restarts}): {info.pid}")
            say(f"  via({REGISTRY!r}, {victim.name!r}) now finds {found}; 'whoami' -> {whoami!r}")
        case "partition":
            count = otpy.GenServer.call(victim.pid, "count")
            say(f"  chaos kills partition {victim.name} of 'workers' {victim.pid} (count={count})")
            kill(victim.pid, f"partition {victim.name}")
            info = wait_replaced(
                lambda: otpy.PartitionSupervisor.which_children("workers"),
                victim.position,
                victim.pid,
                f"partition {victim.name}",
            )
            show_logs(logs)
            # An int key routes to partition key % PARTITIONS: this reaches the new process.
            fresh = otpy.GenServer.call(otpy.partition("workers", int(victim.name)), "count")
            say(f"  workers restarted it (restart {info.restarts}): {info.pid}")
            say(f"  its state started over: count={fresh} (the {count} orders died with it)")
        case "supervisor":
            say(
                f"  chaos kills the whole 'workers' PartitionSupervisor "
                f"{victim.pid}; its partitions are linked to it and die too"
            )
            kill(victim.pid, "workers")
            info = wait_replaced(
                lambda: otpy.Supervisor.which_children("root"),
                victim.position,
                victim.pid,
                "workers",
            )
            show_logs(logs)
            say(
                f"  root restarted 'workers' (restart {info.restarts}): {info.pid}, "
                f"with {PARTITIONS} fresh partitions (restarts=0, count=0)"
            )


def chaos(seed: int, events: int, pause: float, logs: LogCollector) -> int:
    """The chaos monkey (runs as a task under ``tasks``): ``events`` kills, ``pause`` s apart.

    Each event first places a few orders (so the partitions have something to lose), then
    kills one victim and prints what its supervisor did and the tree. Returns the kill count.
    """
    rng = random.Random(seed)
    me = otpy.self()
    supervisor_killed = False
    for number in range(1, events + 1):
        otpy.sleep(pause)
        customers = [f"customer-{n:02d}" for n in rng.sample(range(1, 100), ORDERS_PER_EVENT)]
        partitions = place_orders(customers)
        say(f"[event {number}] {len(customers)} orders -> partitions {partitions}")
        victim = rng.choice(victims(allow_supervisor=not supervisor_killed))
        supervisor_killed = supervisor_killed or victim.kind == "supervisor"
        strike(victim, logs)
        show_tree(chaos=me)
        say()
    return events


# -- the finale ------------------------------------------------------------------------------------


def ledger_restarted_or_billing_down(
    billing: otpy.Pid, billing_ref: otpy.Ref, old_ledger: otpy.Pid
) -> otpy.ChildInfo | otpy.Down:
    """After a ledger crash: the restarted ledger's ChildInfo, or the Down of billing."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            down = otpy.receive(timeout=0, match=down_of(billing_ref))
        except otpy.Timeout:
            pass
        else:
            assert isinstance(down, otpy.Down)
            return down
        try:
            infos = otpy.Supervisor.which_children(billing)
        except (otpy.NoProcError, otpy.ExitError):  # it died while we asked: the Down is next
            infos = []
        for info in infos:
            if info.id == "ledger" and isinstance(info.pid, otpy.Pid) and info.pid != old_ledger:
                return info
        if time.monotonic() > deadline:
            raise DemoError(f"billing neither restarted ledger nor stopped within {WAIT}s")
        otpy.sleep(0.005)


def billing_gives_up(logs: LogCollector) -> None:
    """Crash ``ledger`` until ``billing`` exceeds its restart intensity; watch root restart it."""
    say(
        f"finale: 'billing' allows {BILLING_MAX_RESTARTS} restarts within "
        f"{BILLING_MAX_SECONDS}s; its ledger gets {BILLING_MAX_RESTARTS + 1} bad entries in a row"
    )
    billing = otpy.whereis("billing")
    assert billing is not None
    billing_ref = otpy.monitor(billing)
    crash = 0
    while True:
        crash += 1
        ledger = otpy.whereis("ledger")
        assert ledger is not None
        say(f"[crash {crash}] cast ('post', 'ten euros') to ledger {ledger}: handle_cast raises")
        ref = otpy.monitor(ledger)
        otpy.GenServer.cast(ledger, ("post", "ten euros"))
        wait_down(ref, "ledger")
        outcome = ledger_restarted_or_billing_down(billing, billing_ref, ledger)
        show_logs(logs)
        if isinstance(outcome, otpy.ChildInfo):
            say(f"  billing restarted ledger (restart {outcome.restarts}): {outcome.pid}")
            continue
        say(
            f"  billing gave up: restart {crash} within {BILLING_MAX_SECONDS}s would be more "
            f"than max_restarts={BILLING_MAX_RESTARTS}, so it stopped invoicer and exited "
            f"with {outcome.reason!r}"
        )
        break
    position = [i.id for i in otpy.Supervisor.which_children("root")].index("billing")
    info = wait_replaced(
        lambda: otpy.Supervisor.which_children("root"), position, billing, "billing"
    )
    show_logs(logs)
    say(
        f"  the failure climbed to root, which restarted billing (restart {info.restarts}): "
        f"{info.pid}, with a fresh invoicer and ledger"
    )
    show_tree()
    say()


# -- main ------------------------------------------------------------------------------------------


def stop_root(root: otpy.Pid) -> None:
    """Stop the root and print the order in which its children went down."""
    children = otpy.Supervisor.which_children(root)
    refs = {otpy.monitor(c.pid): str(c.id) for c in children if isinstance(c.pid, otpy.Pid)}
    root_ref = otpy.monitor(root)
    say("stopping root: its children stop in reverse start order")
    otpy.Supervisor.stop(root)
    order = []
    while refs:
        down = otpy.receive(
            timeout=WAIT, match=lambda m: isinstance(m, otpy.Down) and m.ref in refs
        )
        assert isinstance(down, otpy.Down)
        order.append(f"{refs.pop(down.ref)} ({down.reason!r})")
    say(f"  down: {', '.join(order)}")
    reason = wait_down(root_ref, "root")
    say(f"  root down ({reason!r})")


def run(seed: int, events: int, pause: float) -> None:
    """Build the tree, unleash chaos, run the finale, stop the tree."""
    with collected_logs() as logs:
        root = otpy.Supervisor.start_link(
            root_children(),
            strategy="one_for_one",
            max_restarts=ROOT_MAX_RESTARTS,
            max_seconds=ROOT_MAX_SECONDS,
            name="root",
        )
        for user in USERS:
            otpy.DynamicSupervisor.start_child(
                "sessions", Session.child_spec(user, name=otpy.via(REGISTRY, user))
            )
        placed = place_orders([f"customer-{n:02d}" for n in range(1, ORDERS + 1)])
        spread = ", ".join(f"{placed.count(i)} on partition {i}" for i in range(PARTITIONS))
        say(f"started the tree, {len(USERS)} sessions; {ORDERS} orders placed as tasks: {spread}")
        show_tree()
        say()

        say(
            f"chaos: {events} events, {pause}s apart; each places {ORDERS_PER_EVENT} orders, "
            f"then kills a victim drawn with random.Random({seed})"
        )
        say()
        task = otpy.TaskSupervisor.async_nolink("tasks", chaos, seed, events, pause, logs)
        task.await_(timeout=events * (pause + WAIT) + WAIT)

        billing_gives_up(logs)
        stop_root(root)
        show_logs(logs)


def main(argv: list[str]) -> int:
    """Parse the options and run the demo in a runtime of its own."""
    parser = argparse.ArgumentParser(
        prog="python -m otpy demo supervision",
        description="A supervision tree under chaos: kills, restarts, and a failure that climbs.",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed for the chaos monkey's choices (default: 1)"
    )
    parser.add_argument(
        "--events", type=int, default=12, help="how many kills chaos makes (default: 12)"
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0.75,
        help="seconds between two kills (default: 0.75, about 10 s in all)",
    )
    args = parser.parse_args(argv)
    if args.events < 0:
        parser.error(f"--events must be >= 0; got {args.events}")
    if not args.pause >= 0:
        parser.error(f"--pause must be >= 0; got {args.pause}")

    say(f"otpy supervision demo: seed {args.seed}, {args.events} chaos events")
    say()
    try:
        with otpy.Runtime():
            run(args.seed, args.events, args.pause)
    except DemoError as exc:
        print(f"the demo went wrong: {exc}", file=sys.stderr)
        return 1
    except otpy.ExitError as exc:  # the chaos task crashed; await_ raised its reason here
        if not isinstance(exc.reason, DemoError):
            raise
        print(f"the demo went wrong: {exc.reason}", file=sys.stderr)
        return 1
    return 0
