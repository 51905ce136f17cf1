"""``python -m bench``: run the benchmark and print the table (see ``bench/__init__.py``)."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path
from time import perf_counter

from . import _report
from ._base import PACKAGE, BaseError, check_path, describe
from ._brokers import problems
from ._contender import BASE_NAME, Contender, Unavailable, columns, load
from ._memory import METHOD
from ._runner import Results, run_rounds
from ._workloads import FULL, QUICK, Case, Target, build_cases, build_targets, remeasured

WORKLOADS = tuple(f"W{i}" for i in range(1, 17))

_BASE_HELP = (
    "also run the otpy contender on an older otpy, side by side: PATH is a directory holding "
    "an older checkout's otpy/ package, made e.g. with `git worktree add /tmp/otpy-base "
    "799fa1d` or `mkdir /tmp/otpy-base && git archive 799fa1d | tar -x -C /tmp/otpy-base`. "
    f"Adds the column {BASE_NAME} (its version and git commit in the header line) and the "
    f"ratios otpy/{BASE_NAME}, with the min-max of the round-by-round ratios"
)


def _workload_list(text: str) -> list[str]:
    chosen = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"--only takes a comma-separated list of {', '.join(WORKLOADS)}; got {text!r}"
        )
    return chosen


def _base_path(text: str) -> str:
    try:
        return str(check_path(text))
    except BaseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark otpy against plain threads, Pykka and asyncio (and, with --base, "
        "an older otpy), side by side in one run.",
    )
    parser.add_argument(
        "--rounds",
        type=_positive(int),
        default=None,
        help="interleaved rounds; each cell shows the median (default: 3, 1 with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and one round: a smoke test, not a measurement",
    )
    parser.add_argument(
        "--only",
        type=_workload_list,
        default=list(WORKLOADS),
        metavar="W1,W3",
        help="run only these workloads",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print a Markdown table (for README.md) instead of aligned text",
    )
    parser.add_argument(
        "--watchdog",
        type=_positive(float),
        default=300.0,
        metavar="SECONDS",
        help="a measurement running longer counts as hung: print every stack and the results "
        "so far, then exit with status 3 (default: 300)",
    )
    parser.add_argument("--base", type=_base_path, default=None, metavar="PATH", help=_BASE_HELP)
    return parser.parse_args(argv)


def _load_contenders(base: str | None) -> tuple[list[Contender], dict[str, str]]:
    """Every contender of ``columns``, in column order; ``base`` adds ``otpy@base``.

    Raises:
        BaseError: ``base`` holds no usable otpy package.
    """
    contenders: list[Contender] = []
    unavailable: dict[str, str] = {}
    for name in columns(base is not None):
        try:
            contenders.append(load(name, base if name == BASE_NAME else None))
        except Unavailable as exc:
            unavailable[name] = str(exc)
            print(f"note: {exc}", file=sys.stderr)
    return contenders, unavailable


def _base_note(args: argparse.Namespace) -> list[str]:
    if args.base is None:
        return []
    import otpy

    here = Path(otpy.__file__ or ".").resolve().parent.parent
    base = describe(Path(args.base), sys.modules.get(PACKAGE))
    return [
        f"{BASE_NAME}: the otpy contender's code run on otpy {base} from {args.base}, "
        f"imported as {PACKAGE} next to the current otpy {describe(here, otpy)} from {here}; "
        f"otpy/{BASE_NAME} is otpy ÷ {BASE_NAME} (1 = no change; in parentheses the min-max "
        "of the round-by-round ratios, a measure of the noise)."
    ]


def _environment(contenders: Sequence[Contender]) -> str:
    implementation = platform.python_implementation()
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        implementation += ", free-threaded"
    versions = ", ".join(f"{c.name} {c.version}" for c in contenders)
    return (
        f"Python {platform.python_version()} ({implementation}) on {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs; {versions}"
    )


def _notes(
    args: argparse.Namespace,
    rounds: int,
    results: Results,
    unavailable: dict[str, str],
    summary: str,
    elapsed: float,
) -> list[str]:
    notes = [
        "otpy: a GenServer subclass (call/cast/stop), each workload in its own "
        "`with otpy.Runtime():`; W7 is `otpy.Task.async_stream(range(n), fn)` with fn(x) = x + 1 "
        "(ordered, default max_concurrency).",
        "threads: one plain threading.Thread per server serving a queue.SimpleQueue; "
        "its W7 is `concurrent.futures.ThreadPoolExecutor().map`; for W10-W14 it is the "
        "code a user writes by hand instead (below).",
        "pykka: one pykka.ThreadingActor per server, ask/tell.",
        "asyncio: tasks on one event loop, one `asyncio.run` per measurement: a server is a "
        "task serving an asyncio.Queue of (request, future) pairs, one at a time, replying with "
        "`future.set_result`; a call puts a pair and awaits the future (no timeout; W16: in "
        "`asyncio.wait_for`, for its timeout), a cast is `put_nowait((message, None))`. Its "
        "servers take calls from coroutines, so W1-W5 run as coroutines: W1 one coroutine "
        "awaits the calls one after the other; W2 one coroutine casts, then awaits the "
        "confirming call; W3 8 producer tasks on the same loop, let go together by an "
        "asyncio.Event (a cast never suspends, so each task casts its share in one turn: that "
        "is how tasks share a loop; 8 threads using `loop.call_soon_threadsafe` would measure "
        "cross-thread wake-ups, not asyncio code); W4 the servers are tasks, all run up to their "
        "first wait for a message (`asyncio.sleep(0)`, in the clock) before they count as alive; "
        "W5 the ring's nodes are tasks, the last one sets an asyncio.Event. W6: a supervisor "
        "task that awaits its worker task and starts a new one however it ended, kill = `task.cancel()`, raise = a "
        "message whose handling raises. W7: `asyncio.gather` of one coroutine per item, each "
        "holding an `asyncio.Semaphore(os.cpu_count())` while it calls fn. No stages, flow, "
        "pool, rate limiter or pipelines: W8-W14 n/a.",
        "W6: a one_for_one supervisor over one worker whose start tells the benchmark it is up; "
        "a cycle crashes the worker and waits for its replacement. otpy: "
        '`otpy.Supervisor.start_link([Worker.child_spec(...)])`, kill = `otpy.exit(pid, "kill")`; '
        "threads: a supervisor thread that joins the ended worker thread and starts another, "
        "kill = a message the worker obeys by returning (threads cannot be killed); "
        "pykka has no supervisors: a supervisor actor that starts a new actor when the old one's "
        "on_stop/on_failure tells it, kill = `ActorRef.stop(block=False)`. raise = a cast/tell "
        "whose handler raises. The otpy and pykka loggers are set to CRITICAL during W6 "
        "(otpy's supervisor logs an error for every restart, after a kill too). asyncio: see "
        "above.",
        "W8: producer → producer_consumer (doubles each int) → consumer (counts and sums), "
        "at most 1,000 events waiting between two stages; the clock runs from the go until "
        "the consumer has seen every event. otpy: otpy.stage Producer/ProducerConsumer/Consumer "
        'subscribed with max_demand 1000, the producer started with demand="accumulate" and '
        'the go is `stage.demand(producer, "forward")`; threads: three threads joined by two '
        "queue.Queue, either `Queue(maxsize=1000)` of single events (the issue's target) or "
        "`Queue(maxsize=1)` of lists of ≤ 1,000 events (batching like the stages, no target); "
        "pykka has no stages.",
        "W9: the words of a text made once per run, outside the clock (seeded: 10,000 random "
        "words with Zipf weights, 12 a line). otpy: `Flow.from_enumerable(lines, stages=2)"
        ".flat_map(str.split).partition(stages=2).reduce(dict, count)`; the threads column is "
        "the sequential baseline, no threads: one `collections.Counter` updated with "
        "`line.split()` line by line; pykka has no flow. No target: with the GIL the stages "
        "share one core; on free-threaded Python this is where parallelism shows.",
        "W10: plain threads, let go together, each run their transactions one after the other; "
        "fn hands back the worker it got (each thread keeps the set of workers it saw, which "
        "must hold no more than the pool's). otpy: `Pool.transaction(pool, fn)` on "
        "`Pool.start_link(Conn.child_spec(), size=4, max_overflow=0)`, Conn a GenServer that is "
        "never called; threads, the usual Python pool: a `queue.Queue` of 4 plain objects, "
        "`obj = q.get()`, `fn(obj)`, `q.put(obj)` in a `finally`.",
        "W11 calls: plain threads, let go together, call `try_acquire(1)` on one bucket of rate "
        "and capacity 1e9, so every call must succeed (the cost of asking). otpy: "
        "`TokenBucket.try_acquire(pid, 1)` on `TokenBucket.start_link(rate=1e9, capacity=1e9)`, "
        "by pid; threads, what a user writes: an object whose try_acquire refills "
        "(elapsed x rate, up to capacity) and takes under one `threading.Lock`. W11 rate: a "
        "bucket of rate 1,000/s and capacity 10, starting full; the threads call try_acquire "
        "in a loop until the window (5 s, 1 s with --quick) after their common start is over; "
        "the cell is (granted ÷ window - rate) ÷ rate in %, the full bucket's first 10 tokens "
        "included (+0.2 % over 5 s, +1 % over 1 s). Measured for otpy only (one window a round): "
        "the lock-based bucket is plain arithmetic.",
        "W12: per measurement a new stream holding the row's entries, each one field "
        '`{"order": JSON}` (XADD before the clock), and a new consumer group at id 0; the '
        "work per message, the same function on "
        "both sides: `json.loads` the order, add its amount to a total under a lock (the total is "
        "checked). The clock runs from the consumer's start until every entry was handled and "
        "XPENDING says 0 pending (looked at every 1 ms once all were handled); the stop comes "
        "after the clock. otpy: `Pipeline.start_link` with `RedisStreamProducer` (block 0.1 s), "
        "8 processors (handle_message does the work), one batcher of batch_size 100 "
        "(handle_batch returns the batch: the batch processor acks it, the producer's ack thread "
        "sends coalesced XACKs); threads, by hand: one reader thread `XREADGROUP COUNT 100 BLOCK "
        "100` handing each batch to a `ThreadPoolExecutor(8)` task that handles its entries and "
        "XACKs them in one command, at most 16 batches read and not acked (a BoundedSemaphore).",
        "W13: per measurement a new queue holding the row's messages (published before the clock: "
        "`basic_publish` in a loop on one channel); W12's work. The clock runs from the "
        "consumer's start until every message was handled and the consumer has stopped and "
        "closed its connection: AMQP cannot ask for a queue's unacked count, but RabbitMQ "
        "requeues what a closed connection left unacked, so the queue must then hold 0 ready "
        "messages. otpy: `RabbitMQProducer` with prefetch_count 80 (the pipeline's default for "
        "8 processors x max_demand 10), 8 processors acking what they handled (no batchers), "
        "`Pipeline.stop` (the drain) in the clock; threads, by hand, dramatiq's design: one "
        "thread owns the pika connection, `basic_qos(prefetch_count=80)`, `basic_consume` hands "
        "each delivery to a `ThreadPoolExecutor(8)` task that does the work and acks with "
        "`connection.add_callback_threadsafe(partial(channel.basic_ack, tag))`; its stop "
        "(basic_cancel, the pool's end, the last acks, close) in the clock. Measured in the "
        "first round only: RabbitMQ and pika move 5,000-8,000 messages/s on these machines and "
        "publishing 100,000 takes about 8 s, so each full-size round would add about a minute.",
        "W14: otpy: a Pipeline whose producer is a `stage.Producer` emitting "
        "`pl.Message(i, acknowledger=(acks, None, None))` as demand comes, the default "
        "processors (2 x CPU count, max_demand 10), handle_message calls the handler (it does "
        "nothing) and returns the message; the clock runs from `start_link` until the "
        "acknowledger (it counts, under a lock) was asked to ack all of them. threads: one "
        "thread (the benchmark's) calls the handler, then `acks.ack(None, [i], [])`, for each "
        "int in a loop.",
        "W15: one coroutine awaits the calls one after the other, reply = request + 1, each "
        "as a user writes it: `await otpy.aio.call(pid, i)` (its default 5 s timeout) vs a bare "
        "`await future` (no timeout); one `asyncio.wait_for` bounds the loop. inline: a plain GenServer: an idle "
        "server's handler runs on the loop's thread (no hand-off); inline_calls = False: every "
        "call goes through the server's mailbox and a pool thread, and the reply wakes the loop "
        "with `call_soon_threadsafe` (the cross-thread cost; no target). asyncio has one path, "
        "its queue, measured in both rows.",
        "W16: all calls at once (`asyncio.gather`, call i to server i % 100), each server taking "
        "one request at a time and answering 10 ms after taking it up: ideal = calls ÷ servers "
        "x 10 ms (1 s; 0.1 s with --quick). Threads alive = the most of `threading.active_count()` "
        "(Python threads: main, the runner's watchdog timer, the sampler, otpy's pool and timer "
        "threads), sampled every 10 ms "
        "by a thread of its own from the gather to its last reply. send_after + NOREPLY: "
        "handle_call queues (request, caller) and returns `otpy.NOREPLY`; "
        "`otpy.send_after(0.01, otpy.self(), due)` starts the head's wait, handle_info replies "
        "with `GenServer.reply` and starts the next (no thread held while waiting). otpy.sleep "
        "(literal, no target): handle_call calls `otpy.sleep(0.01)`, with inline_calls = False "
        "as otpy.aio's docs ask of slow handlers (inline, it would sleep on the loop's thread and "
        "block the loop); each sleeping server holds a pool thread (the pool grows for threads "
        "blocked in otpy waits). asyncio: each task awaits `asyncio.sleep(0.01)` before "
        "replying, the same code in both rows. Per-call timeout 120 s on both sides "
        "(`otpy.aio.call(pid, i, timeout=120)`, `asyncio.wait_for`).",
        "Absolute targets (they depend on the machine; the issue's figures are for 2 cores): "
        "W4 ≤ 2 KB and ≤ 0.8 KB per process, W6 ≤ 60 µs per restart, W11 ≥ 200,000 calls/s "
        "and within 2 % of the rate, W16 ≤ 2 x the ideal time with ≤ 16 threads; all other "
        "timing targets are ratios.",
        "Ratios are otpy ÷ the other contender in the row's unit; "
        "the unit's arrow says which way is better.",
        f"Cells are medians of {rounds} interleaved round(s) (W4 memory and W13: the first "
        "round only); W3, W6, W10, W11 calls, W12 and W14 also show min-max over rounds.",
        f"Memory (KB/process): {METHOD}.",
    ]
    notes += _base_note(args)
    if args.quick:
        notes.append("--quick: small sizes; the verdicts are only indicative.")
    notes += [f"{name}: {reason}" for name, reason in unavailable.items()]
    notes += [f"{broker} (W12/W13 n/a): {reason}" for broker, reason in problems().items()]
    notes += [
        f"W13 / {name}: measured again {times} time(s): RabbitMQ closed every connection during "
        "the measurement (something else ran `rabbitmqctl close_all_connections`), which voids it"
        for name, times in remeasured.items()
    ]
    notes += [f"error in {key} / {name}: {error}" for (key, name), error in results.errors.items()]
    notes += [
        f"{key} / {name} left {leftover} (they may have disturbed later measurements)"
        for (key, name), leftover in results.leftovers.items()
    ]
    notes.append(f"{summary}; run took {elapsed:.0f}s.")
    return notes


def _print_report(
    args: argparse.Namespace,
    rounds: int,
    cases: Sequence[Case],
    targets: Sequence[Target],
    contenders: Sequence[Contender],
    unavailable: dict[str, str],
    results: Results,
    elapsed: float,
) -> None:
    names = columns(args.base is not None)
    body = _report.rows(cases, targets, results, unavailable, names)
    head = _report.header(names)
    summary = _report.summary(targets, results)
    notes = _notes(args, rounds, results, unavailable, summary, elapsed)
    if args.markdown:
        print(f"{_environment(contenders)}\n")
        print(_report.render_markdown(body, head))
        print()
        print("\n".join(f"- {note}" for note in notes))
    else:
        print(_environment(contenders))
        print(_report.render_text(body, head))
        print("\n".join(f"* {note}" for note in notes))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 1 if any measurement failed, else 0."""
    args = parse_args(argv)
    rounds: int = args.rounds or (1 if args.quick else 3)
    sizes = QUICK if args.quick else FULL
    cases = [case for case in build_cases(sizes) if case.workload in args.only]
    shown = {case.key for case in cases}
    targets = [target for target in build_targets(sizes) if target.row in shown]

    started = perf_counter()
    try:
        contenders, unavailable = _load_contenders(args.base)
    except BaseError as exc:
        print(f"python -m bench: error: --base: {exc}", file=sys.stderr)
        return 2

    def report(results: Results) -> None:
        elapsed = perf_counter() - started
        _print_report(args, rounds, cases, targets, contenders, unavailable, results, elapsed)

    results = run_rounds(cases, contenders, rounds, args.watchdog, on_hang=report)
    report(results)
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
