"""otpy.observer: see a live runtime, as Erlang's observer shows a node.

Example::

    import otpy, otpy.observer

    with otpy.Runtime():
        otpy.Supervisor.start_link([Cache.child_spec(name="cache")], name="root")
        with otpy.observer.serve(port=8123) as srv:    # loopback only
            print(srv.url)                              # http://127.0.0.1:8123/
            ...                                         # open it in a browser meanwhile

    otpy.observer.snapshot()    # {"system": {...}, "processes": [...], "tree": [...]}

From the shell::

    python -m otpy observe demo                 # the supervision demo, live; prints "observer: <url>"
    python -m otpy top --url http://127.0.0.1:8123/ --once     # one frame in the terminal

The page (``GET /``) shows the supervision trees with restart counts (left),
the processes in a table sorted by mailbox length, messages handled or
restarts (click a header; right), and the detail of the process you click
(below): links, monitors, what it runs, and the stack of the thread running
it now. It refreshes itself every second, and fetches nothing from elsewhere.

Endpoints (JSON, ``application/json``; pids written ``1.42.0``):

* ``GET /api/system``: the runtime's figures (processes, pool threads,
  mailboxes, uptime, Python), plus ``refresh`` and ``allow_destructive``;
* ``GET /api/processes?sort=KEY&limit=N``: the process rows, sorted by a row
  key (largest first; see ``SORT_KEYS``) and cut to ``N``; 400 for an unknown
  key or a limit that is not a whole number;
* ``GET /api/processes/<pid>``: one row with more (``monitored_by``,
  ``trap_exits``, ``thread``, ``mailbox_limit``, ``dropped``, ``stack``,
  ``names``); 400 for a malformed pid, 404 for a dead or unknown one;
* ``GET /api/tree``: the supervision trees (a list of root nodes);
* ``POST /api/processes/<pid>/kill``: ``otpy.exit(pid, "kill")``, only when
  served with ``allow_destructive=True`` (403 otherwise).

Anything else is a 404 (a wrong method, 405), with a JSON body saying what
went wrong; the server keeps serving.

Security: it listens on loopback unless told otherwise, and on loopback it
answers only requests addressed to loopback (a page elsewhere cannot reach it
by DNS rebinding). With ``token=``, every ``/api/...`` request needs
``Authorization: Bearer <token>`` (401 otherwise); open the page as
``URL#token=<token>``: the page takes the token from its own address and
sends the header (the page itself holds no data). A kill must come from the
observer's own page (or a client that sends no ``Origin``), so that no other
site can make a browser kill a process.

Cost: a snapshot reads every process's ``process_info`` and asks each
supervisor for its children once; the server takes at most one snapshot per
``refresh`` seconds however many clients ask (they share it), in a thread of
its own. Those calls are the only messages it sends, so the runtime it shows
is slowed by no more than a snapshot per refresh (a supervisor's messages
handled count them too). The server's own process shows in the table: the
sampler thread's, ``thread otpy-observer-PORT``.
"""

from __future__ import annotations

from ._server import Server, serve
from ._snapshot import ROW_KEYS, SORT_KEYS, snapshot

__all__ = ["ROW_KEYS", "SORT_KEYS", "Server", "serve", "snapshot"]
