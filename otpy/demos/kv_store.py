"""A key-value store as a GenServer, shared by clients that run at the same time.

Run it::

    python -m otpy demo kv_store              # or: python examples/kv_store.py
    python -m otpy demo kv_store --clients 5

What it shows:

* **State lives in one process.** ``KVStore`` keeps its dict on the instance (``self.data``).
  Only the server's own process touches it, one message at a time, so no lock guards it although
  several clients use the store at once.
* **A registered name.** The server starts with ``name="kv"``; clients reach it by that name,
  never by pid, and ``otpy.whereis("kv")`` finds it until it stops.
* **call and cast.** ``put``, ``get``, ``delete`` and ``keys`` are calls: the client waits for the
  reply. ``put_async`` is a cast: fire and forget. Messages from one process arrive in the order
  they were sent, so a client that casts a put and then calls ``get`` reads its own write.
* **A client API in front of the messages.** As in Elixir, the module's plain functions (``put``,
  ``get``, ...) wrap ``call``/``cast``, so the message format stays a detail of this module.
* **A clean stop.** ``otpy.GenServer.stop`` stops the server with reason ``"normal"``;
  ``terminate`` runs (and prints what the server handled) before ``stop`` returns, and the name
  is free again afterwards.

The clients are tasks (``otpy.Task.async_``) started by the main thread, which becomes an otpy
process of its own the first time it calls otpy. The clients' lines interleave differently from
run to run; each line, the final listing and the counts are the same every time.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

import otpy

NAME = "kv"
"""The name the store is registered under."""

CLIENT_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
PUTS_PER_CLIENT = 3

_print_lock = threading.Lock()


def say(line: str) -> None:
    """Print one line whole: several processes print at the same time, on different threads."""
    with _print_lock:
        print(line, flush=True)


class KVStore(otpy.GenServer):
    """The server: a dict, plus counters of the requests it handled (printed by ``terminate``)."""

    def init(self, initial: dict[str, object]) -> None:
        self.data: dict[str, object] = dict(initial)
        self.calls = 0
        self.casts = 0
        say(f"[kv] init: started with {len(self.data)} key(s): {sorted(self.data)}")

    def handle_call(self, request: Any, caller: Any) -> Any:
        self.calls += 1
        match request:
            case ("put", str(key), value):
                self.data[key] = value
                return "ok"
            case ("get", str(key)):
                return self.data.get(key)
            case ("delete", str(key)):
                return self.data.pop(key, None)
            case "keys":
                return sorted(self.data)
            case _:
                # Let it crash: a request nobody sends is a bug in a client.
                raise ValueError(f"KVStore does not understand the call {request!r}")

    def handle_cast(self, request: Any) -> None:
        self.casts += 1
        match request:
            case ("put", str(key), value):
                self.data[key] = value
            case _:
                raise ValueError(f"KVStore does not understand the cast {request!r}")

    def terminate(self, reason: Any) -> None:
        say(
            f"[kv] terminate(reason={reason!r}): handled {self.calls} calls and "
            f"{self.casts} casts; {len(self.data)} keys go with the process"
        )


# The client API: these functions run in the caller's process and send it messages.


def start_link(initial: dict[str, object]) -> otpy.Pid:
    """Start the store, registered as ``"kv"`` and linked to the caller."""
    pid = KVStore.start_link(initial, name=NAME)
    assert pid is not None  # init never returns otpy.IGNORE
    return pid


def put(key: str, value: object) -> None:
    """Store ``value`` under ``key`` and wait until the server has done it."""
    KVStore.call(NAME, ("put", key, value))


def put_async(key: str, value: object) -> None:
    """Store ``value`` under ``key`` without waiting: a cast never blocks and never raises."""
    otpy.GenServer.cast(NAME, ("put", key, value))


def get(key: str) -> object:
    """The value under ``key``, or ``None``."""
    return KVStore.call(NAME, ("get", key))


def delete(key: str) -> object:
    """Remove ``key``; returns the value it had, or ``None``."""
    return KVStore.call(NAME, ("delete", key))


def keys() -> list[str]:
    """All keys, sorted."""
    result: list[str] = KVStore.call(NAME, "keys")
    return result


def client(name: str) -> int:
    """One client's session, run in a task process of its own. Returns how many keys it put."""
    for i in range(1, PUTS_PER_CLIENT + 1):
        put(f"{name}:{i}", i * i)
        say(f"{name}: put {name}:{i} = {i * i}")
    put_async(f"{name}:note", f"hello from {name}")
    say(f"{name}: cast put {name}:note (no reply to wait for)")
    # The cast and this call come from the same process, so the cast is handled first.
    say(f"{name}: get {name}:note -> {get(f'{name}:note')!r}")
    say(f"{name}: delete {name}:1 -> {delete(f'{name}:1')!r}")
    say(f"{name}: get {name}:1 -> {get(f'{name}:1')!r}")
    return PUTS_PER_CLIENT + 1


def main(argv: list[str]) -> int:
    """Start the store, let the clients work concurrently, list the keys, stop the store."""
    parser = argparse.ArgumentParser(
        prog="python -m otpy demo kv_store",
        description="A key-value store GenServer shared by concurrent clients.",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=3,
        choices=range(1, len(CLIENT_NAMES) + 1),
        metavar=f"{{1..{len(CLIENT_NAMES)}}}",
        help="how many clients use the store at the same time (default: 3)",
    )
    args = parser.parse_args(argv)

    with otpy.Runtime():
        pid = start_link({"greeting": "hello"})
        say(f"main: KVStore runs as {pid}; whereis({NAME!r}) -> {otpy.whereis(NAME)}")

        names = CLIENT_NAMES[: args.clients]
        say(f"main: starting {len(names)} clients at once: {', '.join(names)}")
        tasks = [otpy.Task.async_(client, name) for name in names]
        written = otpy.Task.await_many(tasks, timeout=10.0)
        say(f"main: all clients done; they wrote {sum(written)} keys")

        say(f"main: keys -> {keys()}")
        say(f"main: get 'missing' -> {get('missing')!r}")

        say(f"main: stopping {NAME!r}")
        otpy.GenServer.stop(pid)  # reason "normal"; returns after terminate has run
        say(f"main: stopped; whereis({NAME!r}) -> {otpy.whereis(NAME)}")
    return 0
