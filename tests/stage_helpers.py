"""Stages shared by the stage, dispatcher and ConsumerSupervisor tests."""

from __future__ import annotations

from conftest import nothing_pending as no_message

import otpy
import otpy.stage as stage

__all__ = ["Numbers", "no_message", "settle"]


class Numbers(stage.Producer):
    """Counts from 0 on demand, up to ``limit`` (None: forever); reports each demand."""

    def init(self, limit=None, observer=None):
        self.next = 0
        self.limit = limit
        self.observer = observer
        self.demands = []

    def handle_demand(self, demand):
        self.demands.append(demand)
        if self.observer is not None:
            otpy.send(self.observer, ("demand", demand))
        high = self.next + demand if self.limit is None else min(self.next + demand, self.limit)
        events = list(range(self.next, high))
        self.next = high
        return events

    def handle_call(self, request, caller):
        match request:
            case "demands":
                return list(self.demands)
            case "ping":
                return "pong"
        raise AssertionError(f"unexpected call {request!r}")


def settle(*pids):
    """Call each stage in turn: whatever it sent before now has reached the next one."""
    for pid in pids:
        otpy.GenServer.call(pid, "ping")
