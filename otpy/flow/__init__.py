"""Flow: parallel computations over collections and streams, on otpy processes.

Elixir's Flow for Python: describe a computation with chained methods, as
with iterators, and it runs in parallel on processes of the current runtime,
with back-pressure from the consumer to the source.

Example (a word count)::

    from collections import Counter
    from otpy.flow import Flow

    lines = ["roses are red", "violets are blue"]

    def count(word, acc):
        acc[word] = acc.get(word, 0) + 1
        return acc

    flow = (
        Flow.from_enumerable(lines)     # a source process reads the lines on demand
        .flat_map(str.split)            # runs in the first stages (one per CPU)
        .partition()                    # a new layer; each word always meets the same stage
        .reduce(dict, count)            # each stage counts its words...
    )
    assert dict(flow) == Counter(w for line in lines for w in line.split())
    # ...and, when the input ends, emits its dict's (word, count) pairs.

``Flow`` is also ``otpy.stage.Flow``.

Layers and stages
-----------------

A flow runs as layers of stages (processes). The first layer reads from the
sources: one process per iterable for ``from_enumerable(s)``, or the
``otpy.stage`` producers given to ``from_stages``. Every ``partition()``
starts a new layer; ``departition()`` and ``take_sort()`` a layer of one
stage. The operations of a layer run inside each of its stages, batch by
batch: ``map``, ``flat_map``, ``filter``, ``reject`` and ``each`` are fused
into one pass; ``reduce``/``group_by`` fold the events; ``emit``/``on_trigger``
choose what a reduce emits, and mappers after them work on those results.
Events are spread over the stages of a layer by demand, or, after
``partition(key=, hash=)``, by partition: events with equal keys always meet
in the same stage, which is what makes a per-stage ``reduce`` correct.

Options of every layer (``from_enumerable``, ``from_stages``, ``partition``):
``stages`` (default ``os.cpu_count()``), ``max_demand`` (1000: how many
events a stage asks of each producer at once), ``min_demand``
(``max_demand // 2``: it asks again after ``max_demand - min_demand``) and
``window`` (``Window.global_()``).

Consuming a flow
----------------

Iterating a flow (``for event in flow``, ``list(flow)``, ``dict(flow)``,
``flow.stream()``) starts its processes in the current ``otpy.Runtime``,
linked to the iterating process, which is the flow's final consumer: it
takes events only as it yields them, so a slow or stopped reader stops the
sources too (an endless iterable is read only as far as needed). Results
come in no particular order, except where a single stage emits them in
order (for example the windows of one stage). ``run()`` runs a flow for its
side effects and returns None.

When the flow ends, or the iterator is closed (``close()``, leaving
``with flow.stream() as it:``) or garbage collected, every process of the
flow is stopped. A user function that raises crashes its stage; the crash
is logged and kills the iterating process through the link (or, if it traps
exits, the iterator notices), and the iterator raises ``otpy.ExitError``
whose ``reason`` is the exception. The iterator must be consumed by one
process.

End of input
------------

When a source is exhausted (or a ``from_stages`` producer exits with
``"normal"``/``"shutdown"``), it tells its consumers after its last events;
a stage whose producers have all finished triggers ``"done"`` on its windows,
emits what that produces and tells its own consumers. The flow ends when
the last stages have finished.

Reduce, emit and windows
------------------------

``reduce(acc_factory, reducer)`` keeps an accumulator per stage and window,
``acc = reducer(event, acc)`` (Flow's argument order); a dict mutated in
place and returned is the usual accumulator. By default a trigger emits the
accumulator's items (``emit("events")``); ``emit("state")`` emits the
accumulator itself, ``emit("nothing")`` nothing, and ``on_trigger(fn)``
whatever ``fn(acc, info) -> (events, new_acc)`` returns. ``Window`` (in this
package) splits a layer's events into global, fixed (event time), periodic
(processing time) or count windows, with triggers; see ``Window``.

Differences from Elixir's Flow
------------------------------

* Event times and durations are seconds (floats allowed), not milliseconds.
* ``group_by`` keeps values in arrival order (Elixir: reversed).
* ``take_sort(n, key=None, reverse=False)`` takes a sort key as ``sorted``
  does, instead of a comparison function.
* ``departition``'s ``done`` takes the accumulator only.
* A fixed window re-checks its watermark also when a producer finishes, not
  only when events arrive.
* Triggers that keep the accumulator emit a deep copy of it with the
  built-in ``emit`` modes, since Python accumulators are mutable.
* Not provided: joins, ``merge``, ``uniq_by``, ``emit_and_reduce``,
  ``into_stages``/``start_link``, session windows.
"""

from ._flow import Flow as Flow
from ._materialize import FlowIterator as FlowIterator
from ._window import TriggerInfo as TriggerInfo
from ._window import Window as Window

__all__ = ["Flow", "FlowIterator", "TriggerInfo", "Window"]
