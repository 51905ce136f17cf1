"""The otpy runtime: processes on a thread pool. Start reading here.

This package is self-contained: it imports nothing from otpy but two leaf
modules, ``otpy._exceptions`` and ``otpy.telemetry`` (which imports nothing
from otpy). The behaviours above it (GenServer, Agent, Task, supervisors,
stages, pools, ``otpy.aio``) use only the names exported here and never touch
a :class:`Process`'s fields.

Reading order
-------------

1. ``_types.py``: ``Pid``, ``Ref``, ``Exit``, ``Down``, the reason strings,
   ``check_timeout``.
2. ``_scheduler.py``: the run queue, the elastic pool of worker threads and
   ``ThreadState`` (what the runtime knows about each OS thread). Its
   docstring draws the scheduling loop.
3. ``_process.py``: the ``Process`` record (mailbox, links, monitors, flags),
   how a turn runs, how death settles everything, and the operations a
   process performs on itself (``receive``, ``call``, ``sleep``).
4. ``_timers.py``: one timer thread with a heap for ``send_after`` and
   delayed actions.
5. ``_runtime.py``: the process table, names, which runtime a call uses,
   shutdown.
6. ``_api.py``: the functions ``otpy`` re-exports (``spawn``, ``send``,
   ``receive``, ``link``, ``monitor``, ``exit``, ``send_after``, ...).
7. ``_hooks.py``: what only the behaviours use (``spawn_reactive``,
   ``spawn_task``, ``call``, ``send_quiet``, ``run_inline``, ``on_exit``,
   ``set_data``, and the thread-free waits of ``otpy.aio``).

Locks, outermost first
----------------------

A thread may take a lock only while holding locks above it in this table;
no runtime lock is held while user code, a callback or another object's
locking method runs (the one exception: exit hooks and telemetry handlers run
after every lock is released).

==========================  ======================================================
``_runtime._global_lock``   the stack of ``with``-entered runtimes, the default one
``Runtime._lock``           the process table, names, zombies, shutdown state
``Process._lock``           one process's alive flag, reason, name, trap flag,
                            links, monitors, watchers, hooks, current wait; one
                            of ``LOCK_STRIPES`` locks that processes share (pid
                            id modulo), so two are taken only by
                            ``_process._lock_order`` (a shared one once)
``Scheduler._lock``         the pool's counters and worker list
``_Bound.lock``             a bounded mailbox's count, drops and blocked senders
``TimerWheel._lock``        the timer heap (actions run after it is released)
``Scheduler._watch``        the slot watcher's worker list and sleep (it
                            releases it before queueing what it took)
``thread_start_lock``       held while the runtime starts a thread (no
                            asynchronous interrupt goes out meanwhile)
==========================  ======================================================

Test-and-set flags, never waited on while another lock is held:
``Process._sched`` (the run flag: whoever holds it runs the process; taken
with ``acquire(False)`` only) and ``Reply._claim`` (the first of a reply, a
death, a timeout or an abandon decides a result). ``Reply._done`` is waited
on only by the one waiter of a result, holding no lock. The telemetry
handler table is copy-on-write: emitters read it without a lock.

Exit signals (Erlang's rules, in ``Process.exit_signal`` and ``Process.die``)
-----------------------------------------------------------------------------

* A process that ends with a reason other than ``"normal"`` sends it to its
  links; a link that does not trap exits dies with the same reason, one that
  traps gets ``Exit(pid, reason)`` as a message.
* ``otpy.exit(pid, "kill")`` kills unconditionally (trapping or not); its links
  see the reason ``"killed"``.
* ``otpy.exit(pid, "normal")`` is ignored by a process that does not trap
  exits (unless it sends it to itself); a link's ``"normal"`` death never
  kills.
* When a process dies, everything it owned is settled at once under its lock
  (alive flag, name, links, monitors, waiters), its exit hooks have run just
  before (a Registry drops its entries there), its links get their signals
  before its waiters wake (a linked caller dies first), then monitors get
  ``Down``. The signals of a death that causes more deaths are sent from a
  work list (``_process._fan_out``), never by recursion: chains of any length.
* Python cannot stop a running thread: the code of a dead process is stopped
  at its next otpy call (``ProcessExit``), and only if it makes none for 0.2 s
  by an asynchronous exception, as a last resort.

The inline-call fast path
-------------------------

``call`` (``_process.call``) hands the request to the target's mailbox and
waits, unless the target is reactive, idle (its run flag is free and its
mailbox empty), not too deep in nested inline runs, and its recent handlers
took far less than the caller's timeout (which must be at least
``INLINE_MIN_TIMEOUT``): then the calling thread takes the run flag and runs
the handler itself, as the target (``otpy.self()`` is the target), in the
target's contextvars context. No thread hand-off, a round trip of a few
microseconds. A handler that then overruns the timeout makes the caller get
``Timeout`` when it returns; calls with short timeouts always go through the
mailbox, where the timeout is exact. Deadlock detection
(``_process._check_deadlock``) covers both paths: every caller records whom it
calls before it calls.

The hand-off slot
-----------------

A message that a worker's turn sends to an idle process makes that process
runnable; while the turn belongs to a quick process (``SLOT_COST``), the
first such process waits in the worker's slot (``ThreadState.next``) and
runs on the same thread right after the turn, instead of waking another
worker (``Scheduler.submit``, ``Scheduler._run_chain``). The slot goes to the
run queue before the turn handles another message and before the worker
blocks in an otpy wait (``blocking_wait``) or runs another process's code
inline (``Process._run_here``); a turn that blocks where otpy cannot see it
is covered by the slot watcher (``Scheduler._watch_slots``), which queues a
process that sat in a slot for ``SLOT_WATCH`` seconds.
"""

from ._api import (
    NameResolver,
    ProcessInfo,
    TimerRef,
    callers,
    cancel_timer,
    current,
    demonitor,
    exit,
    is_alive,
    link,
    monitor,
    process_info,
    processes,
    receive,
    register,
    resolve,
    self,
    send,
    send_after,
    sleep,
    spawn,
    spawn_link,
    spawn_monitor,
    spawn_opt,
    trap_exits,
    unlink,
    unregister,
    whereis,
)
from ._hooks import (
    NOTHING,
    StartIgnored,
    Waiter,
    arm,
    begin_call,
    call,
    call_until_exit,
    cancel_on_exit,
    data_of,
    defer_front,
    disarm,
    end_task,
    host_task,
    kill_later,
    kill_quietly,
    on_exit,
    parent,
    poll,
    prepare_kill_later,
    run_inline,
    send_quiet,
    set_data,
    set_restarts,
    spawn_reactive,
    spawn_task,
    wait_done,
    wait_reply,
)
from ._process import INLINE_MIN_TIMEOUT, Call, ProcessExit, Reply, describe
from ._runtime import Runtime
from ._types import (
    KILL,
    KILLED,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    TIMEOUT,
    Down,
    Exit,
    Pid,
    Ref,
    check_timeout,
    is_normal_exit,
)

__all__ = [
    "INLINE_MIN_TIMEOUT",
    "KILL",
    "KILLED",
    "NOPROC",
    "NORMAL",
    "NOTHING",
    "SHUTDOWN",
    "TIMEOUT",
    "Call",
    "Down",
    "Exit",
    "NameResolver",
    "Pid",
    "ProcessExit",
    "ProcessInfo",
    "Ref",
    "Reply",
    "Runtime",
    "StartIgnored",
    "TimerRef",
    "Waiter",
    "arm",
    "begin_call",
    "call",
    "call_until_exit",
    "callers",
    "cancel_on_exit",
    "cancel_timer",
    "check_timeout",
    "current",
    "data_of",
    "defer_front",
    "demonitor",
    "describe",
    "disarm",
    "end_task",
    "exit",
    "host_task",
    "is_alive",
    "is_normal_exit",
    "kill_later",
    "kill_quietly",
    "link",
    "monitor",
    "on_exit",
    "parent",
    "poll",
    "prepare_kill_later",
    "process_info",
    "processes",
    "receive",
    "register",
    "resolve",
    "run_inline",
    "self",
    "send",
    "send_after",
    "send_quiet",
    "set_data",
    "set_restarts",
    "sleep",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "spawn_opt",
    "spawn_reactive",
    "spawn_task",
    "trap_exits",
    "unlink",
    "unregister",
    "wait_done",
    "wait_reply",
    "whereis",
]
