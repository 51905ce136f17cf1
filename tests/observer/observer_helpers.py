"""A small supervision tree to observe, and an HTTP client for the observer's endpoints."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import urljoin

from conftest import WAIT, wait_until

import otpy

USERS = ("alice", "bob")
BACKLOG = 40
"""Messages waiting in the mailer's mailbox while its handler is held."""
CALLS = 25
"""Calls the cache handles (after its restart), so it leads by messages handled."""


class Cache(otpy.GenServer):
    """A named key-value server."""

    def init(self) -> None:
        self.items: dict[Any, Any] = {}

    def handle_call(self, request: Any, caller: Any) -> Any:
        match request:
            case ("put", key, value):
                self.items[key] = value
                return "ok"
            case ("get", key):
                return self.items.get(key)
        raise ValueError(f"Cache does not understand {request!r}")


class Mailer(otpy.GenServer):
    """``("hold", event)`` blocks its handler until the event is set: meanwhile its mailbox grows."""

    def handle_cast(self, request: Any) -> None:
        match request:
            case ("hold", threading.Event() as event):
                event.wait(WAIT)  # holds a pool thread on purpose: a busy, backlogged server
            case ("mail", _):
                pass


class Session(otpy.GenServer):
    """A user's session, started under the ``sessions`` DynamicSupervisor."""

    def init(self, user: str) -> None:
        self.user = user


@dataclass
class Sample:
    root: otpy.Pid
    cache: otpy.Pid
    mailer: otpy.Pid
    sessions: otpy.Pid
    users: list[otpy.Pid]
    hold: threading.Event


def text(pid: otpy.Pid) -> str:
    """A pid as the observer writes it: ``"1.42.0"``."""
    return f"{pid.runtime_id}.{pid.id}.0"


@contextmanager
def sample_tree() -> Iterator[Sample]:
    """``app`` (one_for_one) over ``cache`` (restarted once, CALLS calls handled), ``mailer``
    (held in a handler with BACKLOG messages waiting) and ``sessions`` (a DynamicSupervisor
    with one Session per user, named ``session-USER``)."""
    hold = threading.Event()
    root = otpy.Supervisor.start_link(
        [
            Cache.child_spec(name="cache").replace(id="cache"),
            Mailer.child_spec(name="mailer").replace(id="mailer"),
            otpy.DynamicSupervisor.child_spec(id="sessions", name="sessions"),
        ],
        name="app",
        max_restarts=5,
    )
    try:
        first = otpy.whereis("cache")
        assert first is not None
        otpy.exit(first, "kill")
        wait_until(lambda: otpy.whereis("cache") not in (None, first))
        for i in range(CALLS):
            otpy.GenServer.call("cache", ("put", i, i))
        users = [
            otpy.DynamicSupervisor.start_child(
                "sessions", Session.child_spec(user, name=f"session-{user}")
            )
            for user in USERS
        ]
        otpy.GenServer.cast("mailer", ("hold", hold))
        mailer = otpy.whereis("mailer")
        assert mailer is not None
        wait_until(lambda: otpy.process_info(mailer).status == "running")
        for i in range(BACKLOG):
            otpy.GenServer.cast(mailer, ("mail", i))
        wait_until(lambda: otpy.process_info(mailer).message_queue_len == BACKLOG)
        cache, sessions = otpy.whereis("cache"), otpy.whereis("sessions")
        assert cache is not None and sessions is not None
        yield Sample(root, cache, mailer, sessions, users, hold)
    finally:
        hold.set()


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        assert self.headers["Content-Type"] == "application/json", self.headers["Content-Type"]
        return json.loads(self.body)


def http(
    url: str,
    path: str = "",
    *,
    method: str = "GET",
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request to the observer at ``url``; 4xx and 5xx answers are returned, not raised."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        urljoin(url, path), method=method, headers=sent, data=b"" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as answer:
            return Answer(answer.status, answer.headers, answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, exc.headers, exc.read())
