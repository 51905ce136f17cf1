"""Ping-pong between two raw processes: spawn, send, selective receive, monitor and ``Down``.

Run it::

    python -m otpy demo ping_pong             # or: python examples/ping_pong.py
    python -m otpy demo ping_pong --rounds 10

What it shows:

* **Processes are functions.** ``otpy.spawn_monitor(pong)`` runs the plain function ``pong`` as a
  process. Messages are plain Python values (tuples and strings here); a process puts its own pid
  (``otpy.self()``) in a message so the other side knows whom to answer.
* **Selective receive.** ``otpy.receive(match=...)`` takes the first message the predicate
  accepts and leaves the others in the mailbox, in order. ``ping`` waits only for the pong of
  the current round; a note that ``main`` sends it meanwhile stays queued until ``ping`` reads it
  after the last round.
* **Monitors.** ``main`` monitors both players. When a monitored process ends, ``main`` gets
  ``otpy.Down(ref, pid, reason)``; the reason of a function that simply returns is ``"normal"``.
  ``main`` waits for each ``Down`` by its monitor's ``ref`` and unpacks it with
  ``case otpy.Down(pid=..., reason=...)``.
* **The main thread is a process too.** It can ``send``, ``receive`` and ``monitor`` like any
  other once it calls otpy.

The players take strict turns, so every line comes in the same order on every run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import otpy

RECEIVE_TIMEOUT = 5.0
"""A safety net: a player that hears nothing for this long crashes with otpy.Timeout."""


def pong() -> None:
    """Answer every ``("ping", n, sender)`` with ``("pong", n)`` until told ``"stop"``."""
    while True:
        match otpy.receive(timeout=RECEIVE_TIMEOUT):
            case ("ping", int(n), otpy.Pid() as sender):
                print(f"    pong: got ping {n}, answering")
                otpy.send(sender, ("pong", n))
            case "stop":
                print("    pong: got 'stop'; returning, so my exit reason is 'normal'")
                return
            case other:
                print(f"    pong: ignoring {other!r}")


def pong_number(n: int) -> Callable[[object], bool]:
    """A ``match=`` predicate that accepts only the pong of round ``n``."""
    return lambda message: message == ("pong", n)


def ping(partner: otpy.Pid, rounds: int) -> None:
    """Play ``rounds`` rounds against ``partner``, then read the rest of the mailbox and stop it."""
    me = otpy.self()
    for n in range(1, rounds + 1):
        print(f"  ping: sending ping {n}")
        otpy.send(partner, ("ping", n, me))
        reply = otpy.receive(timeout=RECEIVE_TIMEOUT, match=pong_number(n))
        print(f"  ping: got {reply!r}")
    # The receives above take only pongs: main's note, which came in meanwhile, is still queued.
    leftover = otpy.receive(timeout=RECEIVE_TIMEOUT)
    print(f"  ping: last round played; left in my mailbox: {leftover!r}")
    otpy.send(partner, "stop")


def wait_for_down(ref: object) -> otpy.Down:
    """Receive the ``Down`` message of the monitor ``ref``, whatever else is in the mailbox."""
    message = otpy.receive(
        timeout=RECEIVE_TIMEOUT,
        match=lambda m: isinstance(m, otpy.Down) and m.ref == ref,
    )
    if not isinstance(message, otpy.Down):
        raise TypeError(f"receive(match=...) returned {message!r}, which the match rejects")
    return message


def main(argv: list[str]) -> int:
    """Spawn pong and ping, monitor both, and report how each one ended."""
    parser = argparse.ArgumentParser(
        prog="python -m otpy demo ping_pong",
        description="Ping-pong between two processes, watched through monitors.",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="how many ping-pong rounds (default: 5)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")

    with otpy.Runtime():
        rounds = f"{args.rounds} round{'' if args.rounds == 1 else 's'}"
        print(f"main: spawning pong and ping for {rounds}, monitoring both")
        pong_pid, pong_ref = otpy.spawn_monitor(pong)
        ping_pid, ping_ref = otpy.spawn_monitor(ping, pong_pid, args.rounds)
        otpy.send(ping_pid, ("note", "from main: good game!"))

        # Both Downs first, then print: the players may still be printing until they end.
        # Whichever Down arrives first, the selective receive takes them in this order.
        downs = [("ping", wait_for_down(ping_ref)), ("pong", wait_for_down(pong_ref))]
        for role, down in downs:
            match down:
                case otpy.Down(pid=pid, reason=reason):
                    print(f"main: Down from {role} {pid}: reason {reason!r}")
        print(
            f"main: is_alive(ping) -> {otpy.is_alive(ping_pid)}, "
            f"is_alive(pong) -> {otpy.is_alive(pong_pid)}"
        )
    return 0
