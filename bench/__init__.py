"""otpy's benchmark: otpy side by side with plain threads and Pykka, in one run.

Run it from the repository root::

    pip install -e '.[bench]'          # Pykka, the main Python peer
    python -m bench                    # full run: 3 interleaved rounds, medians
    python -m bench --quick            # smoke test: small sizes, one round
    python -m bench --only W1,W3 --rounds 5
    python -m bench --markdown         # a table to paste into README.md
    python -m bench --base /tmp/otpy-base   # also an older otpy, side by side (below)

Workloads (DESIGN.md, "Performance"):

======  ================================================================  ============
id      workload                                                          unit
======  ================================================================  ============
W1      20,000 synchronous calls to one server (reply = request + 1)      µs per call
W2      200,000 casts to one server, then one call to confirm the count    messages/s
W3      8 plain threads x 25,000 casts to one server, then a call         messages/s
W4      start 1,000 / 10,000 / 100,000 servers, call each once, stop all  s, KB/process
W5      ring of 1,000 processes, token passed 100 times round             µs per hop
W6      a one_for_one supervisor restarts a crashing worker 1,000 times   µs per restart
        (two rows: the worker killed, the worker raising)
W7      ``Task.async_stream`` over 100,000 items vs ThreadPoolExecutor    items/s
W8      1,000,000 ints through producer → producer_consumer → consumer    events/s
        (max_demand 1000) vs three threads joined by ``queue.Queue``s
        (two rows: one event per put, lists of up to 1,000 per put)
W9      Flow word count over a 10 MB text, stages=2, vs the sequential    MB/s
        ``collections.Counter``
======  ================================================================  ============

Contenders:

- ``otpy``: a ``GenServer`` subclass (``call``/``cast``/``stop``), ``Task.async_stream``,
  ``otpy.Supervisor`` for W6, ``otpy.stage`` for W8 and ``otpy.flow.Flow``
  for W9; every workload runs in its own ``with otpy.Runtime():`` block.
- ``threads``: one plain ``threading.Thread`` per server, serving a
  ``queue.SimpleQueue`` (the cost floor of a thread hand-off in CPython); W6 is
  a supervisor thread that starts a new worker thread when one ends; W7 is
  ``concurrent.futures.ThreadPoolExecutor().map``; W8 is three threads joined
  by two ``queue.Queue``s bounded at 1,000 events; W9 is the sequential
  ``Counter`` (no threads: the baseline Flow's parallelism is measured against).
- ``pykka``: a ``pykka.ThreadingActor`` driven with ``ask``/``tell``; Pykka has
  no supervisors, so W6 is a supervisor actor that starts a new worker actor
  when the old one's ``on_stop``/``on_failure`` hook tells it that it ended.
  It has no pool map, stages or flow: W7-W9 show n/a.

- ``otpy@base`` (only with ``--base PATH``): the ``otpy`` contender's code
  run on an older otpy, to measure a change to the runtime before and after
  in one run (see "Before and after" below).

The same server logic (``bench._workloads.Counter`` and ``RingNode``, and
W8's consumer logic ``Tally``) runs in every contender; a contender only supplies the
hosting (start, call, cast, stop; W8's stages).

W6 crashes the worker two ways, one row each: ``kill`` (otpy:
``otpy.exit(pid, "kill")``; a thread cannot be killed, so the threads worker
obeys a message by returning, and Pykka's is ``ActorRef.stop(block=False)``)
and ``raise`` (a cast or tell whose handler raises). Each cycle waits until
the replacement worker has told the benchmark that it is up. Crash reports
are silenced meanwhile (the ``otpy`` and ``pykka`` loggers at CRITICAL):
otpy's supervisor logs an error for every restart, after a kill too. Its
target, otpy ≤ 60 µs per restart (on 2 cores), is the issue's one absolute
time target; the others compare otpy with the other contenders in the same run.

W8 runs 1,000,000 ints (0 .. n-1) through a producer, a producer_consumer
that doubles them and a consumer that counts and sums them, and tells the
benchmark once it has seen them all; the stages are set up first and the
clock starts with the go (otpy's producer starts in ``demand="accumulate"``;
the go is ``stage.demand(producer, "forward")``). Its target, otpy ≥ 1.0 x
threads in events/s, is against the per-event ``Queue(maxsize=1000)`` row;
the second row, lists of up to 1,000 events per ``Queue(maxsize=1)`` item,
shows what batching alone buys the baseline. W9 counts the words of a
deterministic text (seeded, Zipf-weighted vocabulary, made once per run
outside the clock) and checks the counts; it has no target: under the GIL
Flow's stages share one core, and on free-threaded Python this is where
parallelism shows.

Rounds are interleaved (every contender runs every workload in each round, the
contender order rotating from round to round) and each cell shows the median
over rounds. Memory per process is the RSS delta (``/proc/self/statm``) in a
fresh interpreter while all N processes are alive, measured once.

Before and after (``--base PATH``): ``PATH`` is a directory holding an older
checkout's ``otpy/`` package, for instance the commit before a change::

    git worktree add /tmp/otpy-base 799fa1d     # a checkout (remove: git worktree remove)
    # or, leaving the repository's state alone, the files alone:
    mkdir /tmp/otpy-base && git archive 799fa1d | tar -x -C /tmp/otpy-base
    python -m bench --base /tmp/otpy-base --only W1,W2,W3,W4,W5,W6,W7,W8,W9

The run gains the column ``otpy@base`` (the header line gives its
``__version__`` and, if ``PATH`` is a git checkout, its commit from ``git -C
PATH rev-parse --short HEAD``) and the ratios ``otpy/otpy@base``: 1 is no
change, and with several rounds the parentheses give the min-max of the
round-by-round ratios, a gauge of the noise (the rounds interleave the
contenders, so a round's two samples ran close in time). It is the same
contender code (``bench._otpy``, ``_otpy_stage``, ``_otpy_flow``), imported a
second time against the base package, which is imported as ``otpy_base``
beside the current ``otpy`` (``bench._base`` says how). Every measurement
must leave no thread running, so that neither version's runtime disturbs the
other's: threads still alive 5 s after a measurement are reported. Without
``--base`` nothing changes; a ``PATH`` without ``otpy/__init__.py`` is an error
(exit status 2).

A measurement still running after the watchdog (``--watchdog``, 300 s) counts
as hung: every thread's stack goes to stderr, the results so far are printed,
and the run exits with status 3.
"""
