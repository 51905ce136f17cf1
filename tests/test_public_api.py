"""The public surface of API.md is exported: every section's names, and nothing private."""

from __future__ import annotations

import pytest

import otpy

pytestmark = pytest.mark.timeout(30)

RUNTIME = ["Runtime"]
PROCESSES = [
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "self",
    "send",
    "receive",
    "link",
    "unlink",
    "monitor",
    "demonitor",
    "exit",
    "trap_exits",
    "is_alive",
    "register",
    "unregister",
    "whereis",
    "send_after",
    "cancel_timer",
    "sleep",
    "process_info",
    "processes",
    "Pid",
    "ProcessInfo",
    "Exit",
    "Down",
    "via",
    "NORMAL",
    "SHUTDOWN",
    "KILL",
    "KILLED",
]
GEN_SERVER = ["GenServer", "NOREPLY", "IGNORE", "Continue", "Stop", "ChildSpec"]
AGENT = ["Agent"]
TASK = ["Task", "BRUTAL_KILL"]
ERRORS = [
    "OtpError",
    "Timeout",
    "NoProcError",
    "ExitError",
    "StartError",
    "AlreadyStartedError",
    "AlreadyRegisteredError",
    "MaxChildrenError",
    "NotFoundError",
    "MailboxFullError",
    "DeadlockError",
]
CORE_ADDITIONS = ["spawn_opt", "callers"]
SUPERVISION = [
    "Supervisor",
    "supervise",
    "ChildInfo",
    "ChildCount",
    "DynamicSupervisor",
    "PartitionSupervisor",
    "partition",
    "Registry",
    "TaskSupervisor",
    "Backoff",
]
# API.md's "Names the built layers added" and "Running a service".
LAYER_ADDITIONS = [
    "RESTARTING",
    "NOPROC",
    "TIMEOUT",
    "Ref",
    "TimerRef",
    "From",
    "Partition",
    "SupervisorSpec",
    "AsyncStream",
    "run",
]
PUBLIC = (
    RUNTIME
    + PROCESSES
    + GEN_SERVER
    + AGENT
    + TASK
    + ERRORS
    + CORE_ADDITIONS
    + SUPERVISION
    + LAYER_ADDITIONS
)

SUBMODULES = {
    "telemetry": ["attach", "attach_many", "detach", "list_handlers", "execute", "span", "Handler"],
    "retry": ["RetryPolicy", "retry", "call", "set_testing"],
    "ratelimit": ["TokenBucket", "ConcurrencyLimiter"],
}

CLASSES = [
    "Runtime",
    "Pid",
    "ProcessInfo",
    "Exit",
    "Down",
    "GenServer",
    "Continue",
    "Stop",
    "ChildSpec",
    "Agent",
    "Task",
    "Supervisor",
    "DynamicSupervisor",
    "PartitionSupervisor",
    "Registry",
    "TaskSupervisor",
    *ERRORS,
]

METHODS = {
    "Runtime": ["current", "shutdown", "__enter__", "__exit__"],
    "GenServer": [
        "start",
        "start_link",
        "call",
        "cast",
        "reply",
        "stop",
        "child_spec",
        "init",
        "handle_call",
        "handle_cast",
        "handle_info",
        "handle_continue",
        "terminate",
    ],
    "Agent": ["start_link", "get", "update", "get_and_update", "cast", "stop"],
    "Task": [
        "async_",
        "await_",
        "yield_",
        "shutdown",
        "await_many",
        "yield_many",
        "start",
        "start_link",
        "async_stream",
    ],
    "Supervisor": [
        "start_link",
        "which_children",
        "count_children",
        "start_child",
        "terminate_child",
        "restart_child",
        "delete_child",
        "stop",
        "child_spec",
    ],
    "DynamicSupervisor": [
        "start_link",
        "start_child",
        "terminate_child",
        "which_children",
        "count_children",
        "stop",
    ],
    "PartitionSupervisor": ["start_link", "stop"],
    "Registry": [
        "start_link",
        "stop",
        "register",
        "unregister",
        "lookup",
        "keys",
        "values",
        "count",
        "match",
        "dispatch",
        "update_value",
        "meta",
        "put_meta",
    ],
    "TaskSupervisor": [
        "start_link",
        "async_",
        "async_nolink",
        "start_child",
        "async_stream",
        "async_stream_nolink",
        "children",
        "terminate_child",
        "stop",
    ],
}


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_is_exported_and_listed_in_all(runtime, name):
    assert hasattr(otpy, name), f"otpy.{name} is missing"
    assert name in otpy.__all__, f"{name} is not in otpy.__all__"


def test_nothing_private_is_listed_in_all(runtime):
    assert [name for name in otpy.__all__ if name.startswith("_")] == []


def test_every_name_in_all_exists_once(runtime):
    assert [name for name in otpy.__all__ if not hasattr(otpy, name)] == []
    assert len(otpy.__all__) == len(set(otpy.__all__))


@pytest.mark.parametrize("cls, methods", sorted(METHODS.items()))
def test_behaviours_have_their_documented_functions(runtime, cls, methods):
    missing = [m for m in methods if not callable(getattr(getattr(otpy, cls), m, None))]
    assert missing == []


def test_reason_constants_are_the_documented_strings(runtime):
    assert otpy.NORMAL == "normal"
    assert otpy.SHUTDOWN == "shutdown"
    assert otpy.KILL == "kill"
    assert otpy.KILLED == "killed"


def test_sentinels_are_distinct(runtime):
    assert otpy.NOREPLY is not otpy.IGNORE
    assert otpy.NOREPLY is not None and otpy.IGNORE is not None
    assert otpy.BRUTAL_KILL is not None


@pytest.mark.parametrize("name", CLASSES)
def test_classes_present_themselves_as_otpy(runtime, name):
    assert getattr(otpy, name).__module__ == "otpy"


@pytest.mark.parametrize("name", ERRORS)
def test_errors_derive_from_otp_error(runtime, name):
    assert issubclass(getattr(otpy, name), otpy.OtpError)


def test_deadlock_error_is_an_exit_error(runtime):
    assert issubclass(otpy.DeadlockError, otpy.ExitError)


@pytest.mark.parametrize("module, names", sorted(SUBMODULES.items()))
def test_submodules_have_their_documented_names(runtime, module, names):
    import importlib

    mod = importlib.import_module(f"otpy.{module}")
    assert [name for name in names if not hasattr(mod, name)] == []
    assert getattr(otpy, module) is mod  # `from otpy import telemetry` works after `import otpy`


def test_every_exported_name_is_in_the_contract(runtime):
    assert sorted(set(otpy.__all__) - set(PUBLIC)) == []


@pytest.mark.parametrize("name", ["From", "TimerRef"])
def test_from_and_timer_ref_present_themselves_by_their_public_names(runtime, name):
    cls = getattr(otpy, name)
    assert (cls.__module__, cls.__name__) == ("otpy", name)
    assert repr(cls) == f"<class 'otpy.{name}'>"
    assert "Example::" in (cls.__doc__ or "")


def test_a_timer_ref_says_what_became_of_it(runtime):
    tref = otpy.send_after(60, otpy.self(), "never")
    assert repr(tref).startswith("<otpy.TimerRef due in ")
    tref.cancel()
    assert repr(tref) == "<otpy.TimerRef cancelled>"
    fired = otpy.send_after(0, otpy.self(), "now")
    otpy.receive(timeout=5, match=lambda m: m == "now")
    assert repr(fired) == "<otpy.TimerRef fired>"


def test_a_caller_shows_its_pid(runtime):
    class Show(otpy.GenServer):
        def handle_call(self, request, caller):
            return repr(caller)

    assert otpy.GenServer.call(Show.start(), "?") == f"<otpy.From {otpy.self()!r}>"
