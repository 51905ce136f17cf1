"""otpy: Erlang/OTP's process model for Python.

Cheap isolated processes with mailboxes, links and monitors, scheduled on a
thread pool; GenServer, Agent and Task behaviours; supervision trees.

Example::

    import otpy

    class Stack(otpy.GenServer):
        def init(self, items):
            self.items = list(items)

        def handle_call(self, request, caller):
            if request == "pop":
                return self.items.pop()

        def handle_cast(self, request):
            self.items.append(request)

    with otpy.Runtime():
        Stack.start_link([1], name="stack")
        otpy.GenServer.cast("stack", 2)
        print(Stack.call("stack", "pop"))    # 2
"""

from . import ratelimit as ratelimit
from . import retry as retry
from . import telemetry as telemetry
from ._agent import Agent as Agent
from ._child_spec import BRUTAL_KILL as BRUTAL_KILL
from ._child_spec import ChildSpec as ChildSpec
from ._core import KILL as KILL
from ._core import KILLED as KILLED
from ._core import NOPROC as NOPROC
from ._core import NORMAL as NORMAL
from ._core import SHUTDOWN as SHUTDOWN
from ._core import TIMEOUT as TIMEOUT
from ._core import Down as Down
from ._core import Exit as Exit
from ._core import Pid as Pid
from ._core import ProcessInfo as ProcessInfo
from ._core import Ref as Ref
from ._core import Runtime as Runtime
from ._core import TimerRef as TimerRef
from ._core import callers as callers
from ._core import cancel_timer as cancel_timer
from ._core import demonitor as demonitor
from ._core import exit as exit
from ._core import is_alive as is_alive
from ._core import link as link
from ._core import monitor as monitor
from ._core import process_info as process_info
from ._core import processes as processes
from ._core import receive as receive
from ._core import register as register
from ._core import self as self
from ._core import send as send
from ._core import send_after as send_after
from ._core import sleep as sleep
from ._core import spawn as spawn
from ._core import spawn_link as spawn_link
from ._core import spawn_monitor as spawn_monitor
from ._core import spawn_opt as spawn_opt
from ._core import trap_exits as trap_exits
from ._core import unlink as unlink
from ._core import unregister as unregister
from ._core import whereis as whereis
from ._dynamic_supervisor import DynamicSupervisor as DynamicSupervisor
from ._exceptions import AlreadyRegisteredError as AlreadyRegisteredError
from ._exceptions import AlreadyStartedError as AlreadyStartedError
from ._exceptions import DeadlockError as DeadlockError
from ._exceptions import ExitError as ExitError
from ._exceptions import MailboxFullError as MailboxFullError
from ._exceptions import MaxChildrenError as MaxChildrenError
from ._exceptions import NoProcError as NoProcError
from ._exceptions import NotFoundError as NotFoundError
from ._exceptions import OtpError as OtpError
from ._exceptions import StartError as StartError
from ._exceptions import Timeout as Timeout
from ._gen_server import IGNORE as IGNORE
from ._gen_server import NOREPLY as NOREPLY
from ._gen_server import Continue as Continue
from ._gen_server import From as From
from ._gen_server import GenServer as GenServer
from ._gen_server import Stop as Stop
from ._partition_supervisor import Partition as Partition
from ._partition_supervisor import PartitionSupervisor as PartitionSupervisor
from ._partition_supervisor import partition as partition
from ._registry import Registry as Registry
from ._registry import via as via
from ._run import run as run
from ._supervisor import RESTARTING as RESTARTING
from ._supervisor import Backoff as Backoff
from ._supervisor import ChildCount as ChildCount
from ._supervisor import ChildInfo as ChildInfo
from ._supervisor import Supervisor as Supervisor
from ._supervisor import SupervisorSpec as SupervisorSpec
from ._supervisor import supervise as supervise
from ._task import AsyncStream as AsyncStream
from ._task import Task as Task
from ._task_supervisor import TaskSupervisor as TaskSupervisor

__version__ = "0.1.0.dev0"

__all__ = [
    "BRUTAL_KILL",
    "IGNORE",
    "KILL",
    "KILLED",
    "NOPROC",
    "NOREPLY",
    "NORMAL",
    "RESTARTING",
    "SHUTDOWN",
    "TIMEOUT",
    "Agent",
    "AlreadyRegisteredError",
    "AlreadyStartedError",
    "AsyncStream",
    "Backoff",
    "ChildCount",
    "ChildInfo",
    "ChildSpec",
    "Continue",
    "DeadlockError",
    "Down",
    "DynamicSupervisor",
    "Exit",
    "ExitError",
    "From",
    "GenServer",
    "MailboxFullError",
    "MaxChildrenError",
    "NoProcError",
    "NotFoundError",
    "OtpError",
    "Partition",
    "PartitionSupervisor",
    "Pid",
    "ProcessInfo",
    "Ref",
    "Registry",
    "Runtime",
    "StartError",
    "Stop",
    "Supervisor",
    "SupervisorSpec",
    "Task",
    "TaskSupervisor",
    "Timeout",
    "TimerRef",
    "callers",
    "cancel_timer",
    "demonitor",
    "exit",
    "is_alive",
    "link",
    "monitor",
    "partition",
    "process_info",
    "processes",
    "receive",
    "register",
    "run",
    "self",
    "send",
    "send_after",
    "sleep",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "spawn_opt",
    "supervise",
    "trap_exits",
    "unlink",
    "unregister",
    "via",
    "whereis",
]
