"""At most once across hub failover: a container instance answers a resend from memory.

Issue #14, deliverable 5.  A request resent by its caller after a hub
restart or takeover keeps its caller id and the caller's peer id; the hub
forwards both, and the agent neither runs it a second time while the first
run goes on nor after it answered.
"""

from __future__ import annotations

import random

from hulytrio.core.agent import AgentState
from hulytrio.core.answers import ANSWER_LIMIT, ANSWER_TTL, Answer, Answers
from hulytrio.core.effects import CancelRequest, RunRequest, Send
from hulytrio.core.errors import ErrorCode
from hulytrio.core.hosting import Hosting
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Cancel,
    Error,
    Request,
    Response,
    Start,
    Terminate,
    Welcome,
)
from hulytrio.core.probes import Probes
from hulytrio.core.session import ClientSession


def hosting() -> Hosting:
    h = Hosting(Probes())
    h.add(AgentState("a", ("echo",)))
    h.on_start(Start(1, "a", "echo", "e-1"))
    h.started("a", "e-1", None)
    return h


def req(hub_id: int, caller_id: int | None, client: str = "alice") -> Request:
    return Request(hub_id, "e-1", "op", b"data", client, caller_id)


def test_a_resend_while_the_first_run_goes_on_joins_it() -> None:
    h = hosting()
    assert h.on_request(req(5, 40), 0.0) == [RunRequest("a", "e-1", 5, "op", b"data", "alice")]
    # The hub died; a new hub forwards the caller's resend under its own id.
    h.connection_lost()
    assert h.on_request(req(1, 40), 1.0) == []  # joined: no second run
    assert h.running() == 1
    # The run answers: the reply goes to the call waiting on this connection.
    assert h.reply(5, Answer(b"ok"), 2.0) == [Send(None, Response(1, b"ok"))]
    assert h.running() == 0


def test_a_resend_after_the_answer_is_answered_from_memory() -> None:
    h = hosting()
    h.on_request(req(5, 40), 0.0)
    assert h.reply(5, Answer(b"ok"), 1.0) == [Send(None, Response(5, b"ok"))]
    h.connection_lost()  # the answer was lost with the hub
    assert h.on_request(req(3, 40), 2.0) == [Send(None, Response(3, b"ok"))]
    # Another caller's request with the same id is another request.
    assert h.on_request(req(4, 40, client="bob"), 2.0) == [
        RunRequest("a", "e-1", 4, "op", b"data", "bob")]


def test_a_container_error_counts_as_an_answer_other_errors_do_not() -> None:
    h = hosting()
    h.on_request(req(5, 40), 0.0)
    h.reply(5, Answer(b"", ErrorCode.REMOTE.value, "boom", "ValueError"), 1.0)
    assert h.on_request(req(6, 40), 2.0) == [
        Send(None, Error(6, ErrorCode.REMOTE.value, "boom", "ValueError"))]
    # not_found from the driver: the request did not run, so a resend runs.
    h.on_request(req(7, 41), 2.0)
    h.reply(7, Answer(b"", ErrorCode.NOT_FOUND.value, "gone"), 2.5)
    assert h.on_request(req(8, 41), 3.0) == [RunRequest("a", "e-1", 8, "op", b"data", "alice")]


def test_a_run_of_an_older_connection_keeps_its_number_and_the_new_one_goes_local() -> None:
    h = hosting()
    h.on_request(req(5, 40), 0.0)
    h.connection_lost()
    # The new hub numbers from 1 again: its call 5 is another request.
    assert h.on_request(req(5, 77), 1.0) == [RunRequest("a", "e-1", -1, "op", b"data", "alice")]
    assert h.reply(-1, Answer(b"new"), 2.0) == [Send(None, Response(5, b"new"))]
    # The old run's answer has nobody waiting on this connection: remembered only.
    assert h.reply(5, Answer(b"old"), 3.0) == []
    assert h.on_request(req(9, 40), 4.0) == [Send(None, Response(9, b"old"))]


def test_a_cancelled_run_is_forgotten_unless_a_resend_still_waits() -> None:
    h = hosting()
    h.on_request(req(5, 40), 0.0)
    h.on_request(req(6, 40), 0.5)  # the same request again on this connection: joins
    assert h.cancel(5) == []  # call 6 still waits for the run
    assert h.cancel(6) == [CancelRequest(5)]
    assert h.reply(5, Answer(b"late"), 1.0) == []
    assert h.on_request(req(7, 40), 2.0) == [RunRequest("a", "e-1", 7, "op", b"data", "alice")]
    assert h.cancel(99) == []  # not a call of this connection


def test_requests_without_a_caller_id_always_run() -> None:
    h = hosting()
    h.on_request(req(5, None), 0.0)
    h.reply(5, Answer(b"ok"), 1.0)
    assert h.on_request(req(6, None), 2.0) == [RunRequest("a", "e-1", 6, "op", b"data", "alice")]


def test_the_memory_ends_with_the_instance() -> None:
    h = hosting()
    h.on_request(req(5, 40), 0.0)
    h.reply(5, Answer(b"ok"), 1.0)
    h.on_terminate(Terminate("a", "e-1"))
    h.on_start(Start(2, "a", "echo", "e-1"))
    h.started("a", "e-1", None)
    # A new instance under the same uuid: the resend runs on it.
    assert h.on_request(req(6, 40), 2.0) == [RunRequest("a", "e-1", 6, "op", b"data", "alice")]


OP = ("op", b"data")


def test_answers_are_bounded_per_caller_by_count_and_by_time() -> None:
    assert (ANSWER_LIMIT, ANSWER_TTL) == (512, 60.0)
    mem = Answers(limit=3, ttl=10.0)
    for call_id in range(1, 6):
        mem.finish(("alice", call_id), call_id, OP, Answer(b"%d" % call_id), float(call_id))
    mem.finish(("bob", 1), 9, OP, Answer(b"b"), 5.0)
    assert len(mem) == 4  # alice's 3 newest, bob's one
    assert mem.lookup(("alice", 2), OP, 5.0) is None  # evicted by alice's newer answers
    assert mem.lookup(("alice", 3), OP, 5.0) == Answer(b"3")
    assert mem.lookup(("bob", 1), OP, 5.0) == Answer(b"b")
    # Ten seconds after each answer it is gone.
    assert mem.lookup(("alice", 3), OP, 12.9) == Answer(b"3")
    assert mem.lookup(("alice", 3), OP, 13.0) is None
    assert mem.lookup(("bob", 1), OP, 15.0) is None
    # Expired answers are dropped when the next one is added.
    mem.finish(("carol", 1), 10, OP, Answer(b"c"), 15.0)
    assert len(mem) == 1
    # The answers left after an expiry still expire in their turn.
    mem.finish(("carol", 2), 11, OP, Answer(b"d"), 20.0)
    assert len(mem) == 2
    mem.finish(("carol", 3), 12, OP, Answer(b"e"), 26.0)
    assert len(mem) == 2  # carol's first (answered at 15) is gone at 25
    assert mem.lookup(("carol", 1), OP, 26.0) is None
    assert mem.lookup(("carol", 2), OP, 26.0) == Answer(b"d")


def test_a_running_request_is_never_expired() -> None:
    mem = Answers(limit=1, ttl=1.0)
    mem.start(("alice", 1), 5, OP)
    mem.finish(("alice", 2), 6, OP, Answer(b"x"), 0.0)
    mem.finish(("alice", 3), 7, OP, Answer(b"y"), 0.0)
    assert mem.lookup(("alice", 1), OP, 100.0) == 5


def test_a_restarted_caller_reusing_an_id_for_another_request_runs_it() -> None:
    # A caller process restarted under a fixed peer id numbers from 1 again.
    h = hosting()
    h.on_request(Request(5, "e-1", "inc", b"1", "alice", 1), 0.0)
    h.reply(5, Answer(b"count 1"), 1.0)
    assert h.on_request(Request(6, "e-1", "get", b"", "alice", 1), 2.0) == [
        RunRequest("a", "e-1", 6, "get", b"", "alice")]
    # ... also while the first still runs (it is not joined).
    h.on_request(Request(7, "e-1", "slow", b"", "bob", 1), 2.0)
    assert h.on_request(Request(8, "e-1", "fast", b"", "bob", 1), 2.0) == [
        RunRequest("a", "e-1", 8, "fast", b"", "bob")]


def _ready(s: ClientSession, now: float) -> None:
    s.connect(now)
    s.connection_made(now)
    s.receive(Welcome(PROTOCOL_VERSION, "hub1", 3.0, 1.0), now)
    s.effects()


def test_the_session_joins_a_resend_across_a_reconnect_and_answers_it_once() -> None:
    s = ClientSession("host", rng=random.Random(1))
    _ready(s, 0.0)
    s.register_agent(AgentState("a", ("echo",)))
    s.receive(Start(1, "a", "echo", "e-1"), 0.0)
    s.agent_started("a", "e-1")
    s.effects()
    s.receive(req(5, 40), 0.1)
    (run,) = s.effects()
    assert isinstance(run, RunRequest)
    s.connection_lost(0.2)  # the hub died (kill -9)
    s.effects()
    # Reconnected to a new hub: the caller's resend comes under a new hub id.
    s.handle_timers(s.next_deadline() or 0.3)
    s.connection_made(0.4)
    s.receive(Welcome(PROTOCOL_VERSION, "hub2", 3.0, 1.0, term=2), 0.4)
    s.effects()
    s.receive(req(2, 40), 0.5)
    assert not any(isinstance(e, RunRequest) for e in s.effects())
    s.agent_reply(run.call_id, b"once", now=0.6)
    assert s.effects() == [Send(None, Response(2, b"once"))]
    s.receive(Cancel(2), 0.7)  # too late: nothing to stop
    assert s.effects() == []
