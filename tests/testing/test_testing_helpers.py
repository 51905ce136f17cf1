"""otpy.testing's mailbox assertions: assert_receive, assert_received, refute_receive, ANY."""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import typing

import attrs
import pytest
from conftest import WAIT, down_of

import otpy
from otpy.testing import ANY, assert_receive, assert_received, refute_receive

pytestmark = pytest.mark.timeout(30)


def send_self(*messages):
    for message in messages:
        otpy.send(otpy.self(), message)


def mailbox():
    """Take every message in the mailbox, oldest first."""
    taken = []
    while True:
        try:
            taken.append(otpy.receive(timeout=0))
        except otpy.Timeout:
            return taken


Point = collections.namedtuple("Point", "x y")


@attrs.frozen
class Event:
    kind: str
    payload: object


class TestAny:
    def test_it_equals_everything_and_reads_as_any(self):
        assert ANY == 1 and ANY == ("a", None) and not (ANY != object())
        assert repr(ANY) == "ANY"
        assert hash(ANY) == hash(ANY)

    def test_inside_an_attrs_value_it_matches_any_field(self, runtime):
        send_self(Event("b", 1), Event("a", {"x": 1}))
        assert assert_receive(Event("a", ANY)) == Event("a", {"x": 1})


class TestAssertReceive:
    def test_it_returns_the_oldest_match_and_leaves_the_others_in_order(self, runtime):
        send_self(1, ("a", 1), 2, ("a", 2), 3)
        assert assert_receive(("a", ANY)) == ("a", 1)
        assert mailbox() == [1, 2, ("a", 2), 3]

    def test_without_a_pattern_it_takes_the_oldest_message(self, runtime):
        send_self("first", "second")
        assert assert_receive() == "first"
        assert mailbox() == ["second"]

    def test_it_waits_for_a_message_that_comes_later(self, runtime):
        otpy.send_after(0.05, otpy.self(), "late")
        assert assert_receive("late", WAIT) == "late"

    def test_it_works_in_any_process(self, runtime):
        me = otpy.self()

        def body():
            otpy.send(me, ("got", assert_receive(("job", ANY), WAIT)))

        pid = otpy.spawn(body)
        otpy.send(pid, ("job", 7))
        assert assert_receive(("got", ANY), WAIT) == ("got", ("job", 7))

    def test_a_failure_says_what_it_waited_for_and_what_it_saw(self, runtime):
        send_self(("hello", 1), "x" * 1000)
        with pytest.raises(AssertionError) as info:
            assert_receive(("ready", ANY), timeout=0.01)
        lines = str(info.value).splitlines()
        assert lines[0] == (
            "assert_receive: no message matching ('ready', ANY) arrived within 0.01s."
        )
        assert lines[1:3] == ["The mailbox held 2 other message(s), oldest first:", "  ('hello', 1)"]
        assert lines[3].startswith("  'xxx") and lines[3].endswith("...") and len(lines[3]) < 310
        assert mailbox() == [("hello", 1), "x" * 1000]  # a failure takes nothing

    def test_a_failure_on_an_empty_mailbox_says_so(self, runtime):
        with pytest.raises(AssertionError, match=r"matching 'ping' arrived.*\nThe mailbox was empty\.$"):
            assert_receive("ping", timeout=0)

    def test_a_failure_lists_at_most_fifty_messages(self, runtime):
        send_self(*range(60))
        with pytest.raises(AssertionError) as info:
            assert_receive("none of them", timeout=0)
        lines = str(info.value).splitlines()
        assert lines[1] == "The mailbox held 60 other message(s), oldest first:"
        assert lines[2:4] == ["  0", "  1"] and lines[51] == "  49"
        assert lines[52] == "  ... and 10 more"

    def test_a_message_whose_repr_raises_is_still_listed(self, runtime):
        class Ugly:
            def __repr__(self):
                raise RuntimeError("no")

        send_self(Ugly())
        with pytest.raises(AssertionError, match="<Ugly whose repr raised RuntimeError>"):
            assert_receive("x", timeout=0)

    def test_none_waits_as_long_as_it_takes(self, runtime):
        otpy.send_after(0.02, otpy.self(), "eventually")
        assert assert_receive("eventually", timeout=None) == "eventually"

    @pytest.mark.parametrize("timeout, error", [(-1, ValueError), (float("nan"), ValueError), ("1", TypeError)])
    def test_a_bad_timeout_raises(self, runtime, timeout, error):
        with pytest.raises(error, match="timeout must be None or a number of seconds >= 0"):
            assert_receive(timeout=timeout)


class TestPatterns:
    def test_a_value_is_compared_with_eq(self, runtime):
        send_self(1.0, "1", (1, 2))
        assert assert_receive((1, 2)) == (1, 2)
        assert assert_receive(1) == 1.0  # 1 == 1.0
        assert mailbox() == ["1"]

    def test_any_inside_tuples_lists_and_dicts_needs_the_same_shape(self, runtime):
        send_self(("a", 1, 2), ["a"], {"k": 1, "extra": 2}, ("a", 1), ["a", [3]], {"k": {"n": 4}})
        assert assert_receive(("a", ANY)) == ("a", 1)
        assert assert_receive(["a", [ANY]]) == ["a", [3]]
        assert assert_receive({"k": {"n": ANY}}) == {"k": {"n": 4}}
        assert mailbox() == [("a", 1, 2), ["a"], {"k": 1, "extra": 2}]

    def test_a_tuple_pattern_does_not_match_a_list_but_matches_a_named_tuple(self, runtime):
        send_self([1, 2], Point(1, 2))
        assert assert_receive((ANY, 2)) == Point(1, 2)
        assert mailbox() == [[1, 2]]

    def test_a_type_matches_its_instances(self, runtime):
        send_self("text", 3, None)
        assert assert_receive(int) == 3
        assert assert_receive(int | type(None)) is None
        assert assert_receive(typing.Union[str, bytes]) == "text"  # noqa: UP007 the typing form

    def test_a_down_is_matched_by_type_or_by_value(self, runtime):
        pid, ref = otpy.spawn_monitor(lambda: None)
        assert assert_receive(otpy.Down(ref, pid, ANY), WAIT).reason == "normal"
        pid, ref = otpy.spawn_monitor(lambda: None)
        assert assert_receive(otpy.Down, WAIT).ref == ref

    def test_a_predicate_decides(self, runtime):
        send_self(1, 5, 10)
        assert assert_receive(lambda m: m > 4) == 5

    def test_a_predicate_that_raises_does_not_match_and_loses_nothing(self, runtime):
        send_self(7, ("ready", 1), None)
        assert assert_receive(lambda m: m[0] == "ready") == ("ready", 1)
        with pytest.raises(AssertionError) as info:
            assert_receive(lambda m: m[0] == "done", timeout=0)
        report = str(info.value)
        assert "predicate TestPatterns.test_a_predicate_that_raises" in report
        assert "The predicate raised for 2 of them (no match):" in report
        assert "  7: TypeError: 'int' object is not subscriptable" in report
        assert mailbox() == [7, None]

    def test_a_type_or_function_inside_a_tuple_is_a_value(self, runtime):
        send_self(("kind", 1), ("kind", int))
        assert assert_receive(("kind", int)) == ("kind", int)
        assert mailbox() == [("kind", 1)]

    @pytest.mark.parametrize(
        "pattern, error",
        [
            ((i for i in [1]), "is an iterator"),
            (iter([1]), "is an iterator"),
            (("a", iter([1])), "is an iterator"),
            ({"k": [map(str, [])]}, "is an iterator"),
            ({ANY, 1}, "ANY cannot match inside a set"),
            ({ANY: 1}, "ANY cannot be a dict key"),
            (typing.Any, "use otpy.testing.ANY"),
            (list[int], "cannot be used with isinstance"),
            (typing.Literal["a"], "cannot be used with isinstance"),
        ],
    )
    def test_a_pattern_that_cannot_match_meaningfully_raises_value_error(
        self, runtime, pattern, error
    ):
        send_self("kept")
        for helper in (assert_receive, assert_received, refute_receive):
            with pytest.raises(ValueError, match=re.escape(error)):
                helper(pattern)
        assert mailbox() == ["kept"]

    def test_a_coroutine_pattern_raises_value_error(self, runtime):
        async def fetch():
            return 1

        coroutine = fetch()
        try:
            with pytest.raises(ValueError, match="is an awaitable"):
                assert_receive(coroutine, timeout=0)
        finally:
            coroutine.close()


class TestAssertReceived:
    def test_it_takes_a_message_already_there(self, runtime):
        send_self("a", ("note", 1))
        assert assert_received(("note", ANY)) == ("note", 1)
        assert mailbox() == ["a"]

    def test_it_does_not_wait(self, runtime):
        pid, ref = otpy.spawn_monitor(otpy.receive)
        with pytest.raises(AssertionError, match=r"is in the mailbox\.\nThe mailbox was empty\.$"):
            assert_received(down_of(ref))
        otpy.send(pid, "go")
        assert_receive(down_of(ref), WAIT)


class TestRefuteReceive:
    def test_it_passes_when_nothing_matches_and_leaves_the_mailbox_alone(self, runtime):
        send_self("other", ("error", 1))
        refute_receive(("done", ANY), timeout=0.01)
        refute_receive(bytes | int, timeout=0)
        assert mailbox() == ["other", ("error", 1)]

    def test_it_fails_on_a_match_in_the_mailbox_and_takes_it(self, runtime):
        send_self("a", ("error", 1), "b")
        with pytest.raises(AssertionError) as info:
            refute_receive(("error", ANY))
        lines = str(info.value).splitlines()
        assert re.fullmatch(
            r"refute_receive: a message matching \('error', ANY\) arrived after \d\.\d{3}s "
            r"\(watching for 0\.1s\):",
            lines[0],
        )
        assert lines[1:] == [
            "  ('error', 1)",
            "The mailbox held 1 other message(s), oldest first:",
            "  'a'",
        ]
        assert mailbox() == ["a", "b"]

    def test_it_fails_on_a_match_that_arrives_while_it_watches(self, runtime):
        otpy.send_after(0.01, otpy.self(), "late")
        with pytest.raises(AssertionError, match="a message matching 'late' arrived"):
            refute_receive("late", WAIT)

    def test_with_no_pattern_any_message_fails_it(self, runtime):
        refute_receive(timeout=0)
        send_self(None)
        with pytest.raises(AssertionError, match="matching ANY arrived"):
            refute_receive(timeout=0)


class TestTimeFactor:
    def test_timeouts_are_multiplied_by_it(self, runtime, monkeypatch):
        monkeypatch.setenv("OTPY_TEST_TIMEFACTOR", "0.5")
        with pytest.raises(AssertionError) as info:
            assert_receive("x", timeout=0.02)
        assert "within 0.01s (timeout=0.02 x OTPY_TEST_TIMEFACTOR=0.5)." in str(info.value)
        send_self("y")
        with pytest.raises(AssertionError, match=r"watching for 0\.05s \(timeout=0\.1 x "):
            refute_receive("y")

    def test_unset_or_empty_means_one(self, runtime, monkeypatch):
        monkeypatch.setenv("OTPY_TEST_TIMEFACTOR", " ")
        with pytest.raises(AssertionError, match=r"within 0\.01s\.\n"):
            assert_receive("x", timeout=0.01)

    @pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan", "1,5"])
    def test_a_bad_value_raises_value_error_naming_it(self, runtime, monkeypatch, value):
        monkeypatch.setenv("OTPY_TEST_TIMEFACTOR", value)
        message = f"OTPY_TEST_TIMEFACTOR must be a finite number above 0 .*; got {value!r}"
        for call in (lambda: assert_receive(timeout=0), lambda: refute_receive(timeout=0)):
            with pytest.raises(ValueError, match=message):
                call()


def test_importing_otpy_testing_does_not_import_pytest(runtime):
    code = "import sys, otpy.testing; print('pytest' in sys.modules, '_pytest' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
