"""The benchmark harness: ``python -m benchmarks.harness`` (see ``commands``).

It lives in the source checkout, not in the installed package: it needs the
test extras (trio-websocket for the raw-ws yardstick) and Linux's ``/proc``.

Every scenario runs the real thing: a hub (``python -m hulytrio serve``), an
echo agent and load clients, each a separate process on 127.0.0.1.  The
harness (``scenarios``) is plain synchronous Python that starts those
processes (``procs``), talks to the load processes (``worker``) over their
stdin/stdout in JSON lines, samples each process's CPU time and memory from
``/proc``, and reports (``report``) a table and one JSON line per scenario.
Every process it starts is killed when the scenario ends, even on error.
"""
