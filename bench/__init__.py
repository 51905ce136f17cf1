"""otpy's benchmark: otpy side by side with plain threads, Pykka and asyncio, in one run.

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
W10     8 threads x 10,000 ``Pool.transaction`` on a pool of 4 workers    transactions/s
        vs a ``queue.Queue`` of 4 objects
W11     8 threads call ``TokenBucket.try_acquire`` on one bucket: the     calls/s,
        calls per second (rate 1e9), and the granted rate of a bucket     % off rate
        of rate 1,000/s over 5 s (otpy only)
W12     100,000 Redis stream entries through a ``Pipeline`` (8            messages/s
        processors, batches of 100) vs redis-py by hand (XREADGROUP
        COUNT 100, ``ThreadPoolExecutor(8)``, XACK per batch)
W13     100,000 RabbitMQ messages through a ``Pipeline`` (8 processors)   messages/s
        vs pika by hand (dramatiq's design; first round only)
W14     200,000 messages from a producer in the process, a handler that   messages/s
        does nothing: a ``Pipeline`` vs one thread's loop
W15     20,000 sequential calls ``await otpy.aio.call`` vs an         µs per call
        asyncio-queue actor (two rows: otpy's inline path, its mailbox)
W16     10,000 concurrent calls ``aio.call`` to 100 servers, each         s, threads
        taking 10 ms per request, one at a time (two rows: the wait as    alive (max)
        a ``send_after`` timer, or a literal ``otpy.sleep``)
======  ================================================================  ============

Contenders:

- ``otpy``: a ``GenServer`` subclass (``call``/``cast``/``stop``), ``Task.async_stream``,
  ``otpy.Supervisor`` for W6, ``otpy.stage`` for W8, ``otpy.flow.Flow``
  for W9, ``otpy.pool.Pool`` for W10, ``otpy.ratelimit.TokenBucket`` for W11,
  ``otpy.pipeline.Pipeline`` for W12-W14 and ``otpy.aio.call`` for W15-W16;
  every workload runs in its own ``with otpy.Runtime():`` block.
- ``threads``: one plain ``threading.Thread`` per server, serving a
  ``queue.SimpleQueue`` (the cost floor of a thread hand-off in CPython); W6 is
  a supervisor thread that starts a new worker thread when one ends; W7 is
  ``concurrent.futures.ThreadPoolExecutor().map``; W8 is three threads joined
  by two ``queue.Queue``s bounded at 1,000 events; W9 is the sequential
  ``Counter`` (no threads: the baseline Flow's parallelism is measured against).
  W10-W14 are what a user writes by hand instead: a ``queue.Queue`` of
  plain objects (``obj = q.get()``, ``fn(obj)``, ``q.put(obj)``), a token
  bucket object behind a ``threading.Lock``, a redis-py consumer and a pika
  consumer on a ``ThreadPoolExecutor`` (below), and a loop.
- ``pykka``: a ``pykka.ThreadingActor`` driven with ``ask``/``tell``; Pykka has
  no supervisors, so W6 is a supervisor actor that starts a new worker actor
  when the old one's ``on_stop``/``on_failure`` hook tells it that it ended.
  It has no pool map, stages, flow, pool, rate limiter, pipelines or event
  loop side: W7-W16 show n/a.
- ``asyncio`` (the realistic alternative for many lightweight things): tasks
  on one event loop. A server is a task serving an ``asyncio.Queue`` of
  ``(request, future)`` pairs one at a time, replying with
  ``future.set_result``; a cast is ``put_nowait((message, None))``. Its
  servers take calls from coroutines, not from plain threads, so W1-W5 run
  as coroutines in one ``asyncio.run`` (W3's 8 producers are 8 tasks on the
  same loop, W4's servers are tasks); W6 is a supervisor task that awaits
  its worker task and starts a new one when it ends (``kill`` is
  ``task.cancel()``); W7 is ``asyncio.gather`` over one coroutine per item
  under an ``asyncio.Semaphore(os.cpu_count())``. No stages, flow, pool,
  rate limiter or pipelines: W8-W14 show n/a.

- ``otpy@base`` (only with ``--base PATH``): the ``otpy`` contender's code
  run on an older otpy, to measure a change to the runtime before and after
  in one run (see "Before and after" below).

The same server logic (``bench._workloads.Counter`` and ``RingNode``, and
W8's consumer logic ``Tally``) runs in every contender; a contender only supplies the
hosting (start, call, cast, stop; W8's stages).

W6 crashes the worker two ways, one row each: ``kill`` (otpy:
``otpy.exit(pid, "kill")``; a thread cannot be killed, so the threads worker
obeys a message by returning, Pykka's is ``ActorRef.stop(block=False)`` and
asyncio's ``task.cancel()``) and ``raise`` (a cast, tell or queued message
whose handler raises). Each cycle waits until
the replacement worker has told the benchmark that it is up. Crash reports
are silenced meanwhile (the ``otpy`` and ``pykka`` loggers at CRITICAL):
otpy's supervisor logs an error for every restart, after a kill too. Its
target, otpy ≤ 60 µs per restart (on 2 cores), is one of the issue's few
absolute targets (with W11's ≥ 200,000 calls/s and 2 % of the rate, and
W16's 2 x the ideal time with at most 16 threads); the others compare otpy
with the other contenders in the same run.

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

W10 lets 8 plain threads go at once (a barrier), each running 10,000
transactions whose function hands back the worker it got; every transaction
must come back, on no more workers than the pool has. otpy's pool is
``Pool.start_link(Conn.child_spec(), size=4, max_overflow=0)`` with a
trivial GenServer ``Conn``; its target is otpy ≥ 0.5 x the ``queue.Queue``
pool's transactions per second.

W11's first row lets 8 threads call ``try_acquire(1)`` 50,000 times each on
one bucket of rate and capacity 1e9 (otpy's by pid), where every call must
succeed: the cost of asking, against a ``threading.Lock``-protected bucket
written inline. Its second row is otpy's bucket of rate 1,000/s and capacity
10 (starting full), with 8 threads asking in a loop for 5 s (1 s with
``--quick``): the granted tokens ÷ 5 s, as a deviation from the rate in per
cent (the first 10 tokens included: +0.2 %); target ≤ 2 % either way. One
such window a round, for otpy only.

W12 and W13 need Redis on 127.0.0.1:6379 and RabbitMQ on 127.0.0.1:5672
(guest/guest) and their clients (redis-py, pika); a broker that does not
answer, or a client that is not installed, makes the row n/a, with the
reason and how to start the broker in the notes (``bench._brokers``). Each
measurement gets a stream (or a queue) of its own, filled before the clock:
100,000 entries ``{"order": "<JSON>"}`` (``XADD``) and a new consumer group
at id 0, or 100,000 messages of the same JSON (``basic_publish`` in a loop).
Both sides do the same work per message (``Orders.take``: ``json.loads``, add
the amount to a total under a lock; the total is checked). W12's clock runs
from the consumer's start until every entry was handled and ``XPENDING``
counts none pending; otpy's pipeline is ``RedisStreamProducer``, 8
processors and one batcher of 100, against one reader thread (``XREADGROUP
COUNT 100 BLOCK 100``) handing each batch to a ``ThreadPoolExecutor(8)``
that handles and ``XACK``s it (at most 16 batches in flight). W13's clock
runs until every message was handled and the consumer has closed its
connection: AMQP cannot ask how many are unacked, but RabbitMQ requeues
what a closed connection left unacked, so the queue must then hold none.
otpy's pipeline is ``RabbitMQProducer`` (prefetch 80) and 8 processors,
against dramatiq's design by hand: one thread owns the pika connection and
consumes with ``basic_qos(prefetch_count=80)``, a ``ThreadPoolExecutor(8)``
does the work, each ack goes back to that thread with
``connection.add_callback_threadsafe``. W13 runs in the first round only:
broker and client move 5,000-8,000 messages/s here, so a full round costs
about a minute. RabbitMQ is shared with the test suite, which closes every
connection now and then (``rabbitmqctl close_all_connections``): publishing
is then started again, and a measurement during which it happened (a
connection of the benchmark's own sees it) is void and made again, up to 3
times, as the notes say. W14 measures the pipeline itself: a ``stage.Producer``
emitting ``pl.Message(i)`` with a counting acknowledger, the default
processors and a handler that does nothing, against one thread calling the
handler and the acknowledger in a loop. Targets: otpy ≥ 1 x the
hand-written consumer (W12, W13), ≥ 0.5 x the loop (W14).

The asyncio column's targets (issue 12), all otpy ÷ asyncio: W1 ≤ 0.5
(µs per call), W2 and W3 ≥ 1 (messages/s), W4 100,000 ≤ 0.3 (time) at
otpy ≤ 0.8 KB per process (an absolute bound, next to the older 2 KB), W5 ≤
0.5 (µs per hop), W6 ≤ 1 (µs per restart, both rows), W7 ≥ 2 (items/s).

W15 awaits 20,000 calls (reply = request + 1) one after the other from one
coroutine, each as a user writes it: ``await otpy.aio.call(pid, i)`` (its
default 5 s timeout) against the asyncio actor's bare ``await future``. The
``inline`` row is a plain GenServer (an idle server's handler runs on the
loop's thread; target otpy ≤ 2 x asyncio's µs per call); the ``mailbox`` row
sets ``inline_calls = False`` (every call crosses to a pool thread and back:
no target, shown to be honest about that cost). asyncio's one path runs in
both rows.

W16 gathers 10,000 calls ``aio.call`` to 100 servers (call i to server i %
100), every server handling one request at a time and replying 10 ms after
it took it up: the ideal is 100 x 10 ms = 1 s. A thread samples
``threading.active_count()`` every 10 ms meanwhile; the max is the row below
each time row. ``send_after`` row (the target: ≤ 2 x the ideal with at most
16 threads): ``handle_call`` queues the request and its caller, returns
``NOREPLY``; a ``send_after(0.01)`` to itself ends the head request's wait
and ``handle_info`` replies and starts the next wait. ``otpy.sleep`` row (the
literal reading, no target): ``handle_call`` sleeps 10 ms with
``inline_calls = False`` (inline, it would sleep on the loop's thread), so
each sleeping server holds a pool thread. asyncio's actors await
``asyncio.sleep(0.01)`` before each reply, in both rows.

Rounds are interleaved (every contender runs every workload in each round, the
contender order rotating from round to round) and each cell shows the median
over rounds. Memory per process is the RSS delta (``/proc/self/statm``) in a
fresh interpreter while all N processes are alive, measured once.

Before and after (``--base PATH``): ``PATH`` is a directory holding an older
checkout's ``otpy/`` package, for instance the commit before a change::

    git worktree add /tmp/otpy-base 799fa1d     # a checkout (remove: git worktree remove)
    # or, leaving the repository's state alone, the files alone:
    mkdir /tmp/otpy-base && git archive 799fa1d | tar -x -C /tmp/otpy-base
    python -m bench --base /tmp/otpy-base --only W1,W2,W3,W4,W5,W6,W7,W8,W9,W10,W11,W14,W15,W16

The run gains the column ``otpy@base`` (the header line gives its
``__version__`` and, if ``PATH`` is a git checkout, its commit from ``git -C
PATH rev-parse --short HEAD``) and the ratios ``otpy/otpy@base``: 1 is no
change, and with several rounds the parentheses give the min-max of the
round-by-round ratios, a gauge of the noise (the rounds interleave the
contenders, so a round's two samples ran close in time). It is the same
contender code (``bench._otpy``, ``_otpy_stage``, ``_otpy_flow``,
``_otpy_pool``, ``_otpy_ratelimit``, ``_otpy_pipeline``, ``_otpy_aio``), imported a
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
