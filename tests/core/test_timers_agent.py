"""The timer engine both drivers use, and an agent's local state."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hulytrio.core.agent import AgentState, LocalStatus
from hulytrio.core.effects import Send, SetServing, StartContainer, StopContainer
from hulytrio.core.errors import ErrorCode
from hulytrio.core.messages import Activate, Error, RegisterReply, Request, Start, Started
from hulytrio.core.timers import Timers
from hulytrio.core.types import OfferedContainer


def test_deadlines_fire_in_order_and_rearming_replaces() -> None:
    t = Timers()
    t.call_at(3.0, "c")
    t.call_at(1.0, "a")
    t.call_at(2.0, "b")
    t.call_at(5.0, "a")  # re-armed: the 1.0 entry is stale now
    t.cancel("b")
    assert t.next_deadline() == 3.0
    assert t.expired(4.0) == ["c"]
    assert t.expired(5.0) == ["a"]
    assert t.next_deadline() is None
    assert len(t) == 0


def test_periodic_handlers_do_not_drift_and_skip_missed_ticks() -> None:
    t = Timers()
    t.call_every(1.0, "tick", first=0.5)
    assert t.expired(0.5) == ["tick"]
    assert t.deadline("tick") == 1.5
    # Woken late: fires once, re-armed on the original grid.
    assert t.expired(3.7) == ["tick"]
    assert t.deadline("tick") == 4.5
    t.cancel("tick")
    assert t.expired(10.0) == []
    with pytest.raises(ValueError, match="interval"):
        t.call_every(0.0, "bad", first=0.0)


def test_equal_deadlines_keep_insertion_order() -> None:
    t = Timers()
    for key in ("z", "a", "m"):
        t.call_at(1.0, key)
    assert t.expired(1.0) == ["z", "a", "m"]


class _ModelTimers:
    """The plain algorithm ``Timers`` must match: a dict scanned in full.

    ``expired`` fires every due key in (deadline, arming) order, then re-arms
    the periodic ones at the next multiple of their interval after ``now``,
    in the order they fired.
    """

    def __init__(self) -> None:
        self.armings = 0
        self.live: dict[str, tuple[float, int]] = {}
        self.intervals: dict[str, float] = {}

    def call_at(self, deadline: float, key: str) -> None:
        self.armings += 1
        self.live[key] = (deadline, self.armings)

    def call_every(self, interval: float, key: str, first: float) -> None:
        self.intervals[key] = interval
        self.call_at(first, key)

    def cancel(self, key: str) -> None:
        self.live.pop(key, None)
        self.intervals.pop(key, None)

    def next_deadline(self) -> float | None:
        return min((d for d, _ in self.live.values()), default=None)

    def expired(self, now: float) -> list[str]:
        due = sorted((entry, key) for key, entry in self.live.items() if entry[0] <= now)
        for _, key in due:
            del self.live[key]
        for (deadline, _), key in due:
            interval = self.intervals.get(key)
            if interval is not None:
                self.call_at(deadline + (int((now - deadline) // interval) + 1) * interval, key)
        return [key for _, key in due]


_KEYS = st.sampled_from(["a", "b", "c", "d"])
_STEPS = st.one_of(
    st.tuples(st.just("at"), _KEYS, st.sampled_from([0.0, 1e-16, 0.1, 1.0, 2.5, -0.5])),
    st.tuples(st.just("every"), _KEYS, st.sampled_from([1e-16, 1e-10, 0.3, 1.0, 7.0])),
    st.tuples(st.just("cancel"), _KEYS, st.just(0.0)),
    st.tuples(st.just("advance"), st.just(""), st.sampled_from([0.0, 1e-16, 0.1, 1.0, 4.7])),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0.0, 3.0, 1e6]), st.lists(_STEPS, max_size=60))
def test_timers_match_the_plain_algorithm(start: float, steps: list[tuple[str, str, float]]
                                          ) -> None:
    # Lazy heap, in-place re-arming and the on-time shortcut change nothing
    # observable: not what fires, not its order, not the deadlines after.
    t, model = Timers(), _ModelTimers()
    now = start
    for op, key, x in steps:
        if op == "at":
            t.call_at(now + x, key)
            model.call_at(now + x, key)
        elif op == "every":
            t.call_every(x, key, now)
            model.call_every(x, key, now)
        elif op == "cancel":
            t.cancel(key)
            model.cancel(key)
        else:
            now += x
            assert t.expired(now) == model.expired(now)
        assert t.next_deadline() == model.next_deadline()
        assert t.armings == model.armings
        for k in ("a", "b", "c", "d"):
            entry = model.live.get(k)
            assert t.deadline(k) == (None if entry is None else entry[0])


def _start(uuid: str, call_id: int = 1, kind: str = "echo") -> Start:
    return Start(call_id, "ag", kind, uuid, ("t",))


def test_agent_deduplicates_pending_starts() -> None:
    a = AgentState("ag", ("echo",))
    (effect,) = a.on_start(_start("u1", 1))
    assert isinstance(effect, StartContainer)
    assert effect.options.labels == ("t",)
    assert a.on_start(_start("u1", 2)) == []  # joined, not started twice
    replies = a.started("u1", "ws://c")
    assert [e.message for e in replies if isinstance(e, Send)] == [
        Started(1, "u1", "ws://c"), Started(2, "u1", "ws://c")]
    # A start of a running uuid is answered at once.
    assert a.on_start(_start("u1", 3)) == [Send(None, Started(3, "u1", None))]


def test_agent_refuses_undeclared_kinds_and_respects_max_containers() -> None:
    a = AgentState("ag", ("echo",), max_containers=1)
    (refused,) = a.on_start(_start("u1", kind="db"))
    assert refused.message.code == ErrorCode.BAD_KIND.value
    a.on_start(_start("u1", 2))
    (full,) = a.on_start(_start("u2", 3))
    assert isinstance(full.message, Error)
    assert full.message.code == ErrorCode.FULL.value


def test_failed_start_answers_every_waiter_and_leaves_nothing() -> None:
    a = AgentState("ag", ("echo",))
    a.on_start(_start("u1", 1))
    a.on_start(_start("u1", 2))
    errors = a.start_failed("u1", "boom")
    assert [e.message.id for e in errors] == [1, 2]
    assert "u1" not in a
    assert isinstance(a.on_start(_start("u1", 3))[0], StartContainer)


def test_standby_does_not_serve_and_activation_is_epoch_checked() -> None:
    offer = OfferedContainer("db-1", "db", stateless=True)
    a = AgentState("ag", (), stateless=(offer,))
    assert a.kinds == ("db",)
    # An offer stands by from the start; told so, there is nothing to change.
    assert a.status("db-1") is LocalStatus.STANDBY
    assert a.on_registered(RegisterReply(1, ("db-1",), ())) == []
    assert a.status("db-1") is LocalStatus.STANDBY
    (err,) = a.on_request(Request(5, "db-1", "op"))
    assert err.message.code == ErrorCode.NOT_FOUND.value
    # The offer survives: it is listed again on the next registration.
    assert [oc.uuid for oc in a.registration(2).containers] == ["db-1"]
    assert a.on_activate(Activate("ag", "db-1", 3)) == [SetServing("ag", "db-1", True, 3)]
    assert a.serving() == ("db-1",)
    assert a.on_activate(Activate("ag", "db-1", 2)) == []  # stale
    assert a.epoch("db-1") == 3


def test_an_offer_serves_only_under_an_answered_registration() -> None:
    offer = OfferedContainer("db-1", "db", stateless=True)
    a = AgentState("ag", (), stateless=(offer,))
    assert a.serving() == ()
    assert a.fence() == []  # nothing serves yet: nothing to pause
    assert a.on_registered(RegisterReply(1)) == [SetServing("ag", "db-1", True, 0)]
    assert a.serving() == ("db-1",)
    # Re-registering (a reconnect): paused, streams kept, until the answer.
    assert a.fence() == [SetServing("ag", "db-1", False, 0, fenced=True)]
    assert a.serving() == ()
    assert a.on_registered(RegisterReply(2)) == [SetServing("ag", "db-1", True, 0)]
    assert a.serving() == ("db-1",)
    # A registration starts a new ownership view: the epoch seen before is void.
    a.on_activate(Activate("ag", "db-1", 3))
    assert a.fence() == [SetServing("ag", "db-1", False, 0, fenced=True)]
    assert a.epoch("db-1") == 0
    assert a.on_registered(RegisterReply(3)) == [SetServing("ag", "db-1", True, 0)]
    # The next answer says another agent owns it now: a real demotion.
    a.fence()
    assert a.on_registered(RegisterReply(4, ("db-1",), ())) == [
        SetServing("ag", "db-1", False, 0)]
    assert a.is_standby("db-1")
    # A standby is not paused by a registration: it did not serve.
    assert a.fence() == []


def test_a_start_of_a_uuid_standing_by_here_is_refused_not_answered_started() -> None:
    # "Started" would route requests to an instance that does not serve: they
    # would bounce not_found -> re-acquire -> resend at once, forever.  The
    # hub no longer sends such a start (it knows the standby); this guards
    # against one sent from a stale view.
    offer = OfferedContainer("db-1", "db", stateless=True)
    a = AgentState("ag", (), stateless=(offer,))
    a.on_registered(RegisterReply(1, ("db-1",), ()))
    (err,) = a.on_start(Start(7, "ag", "db", "db-1"))
    assert isinstance(err, Send)
    assert isinstance(err.message, Error)
    assert err.message.id == 7
    assert err.message.code == ErrorCode.START_FAILED.value
    assert a.status("db-1") is LocalStatus.STANDBY


def test_refused_ordinary_container_is_stopped() -> None:
    a = AgentState("ag", ("echo",))
    a.on_start(_start("u1"))
    a.started("u1")
    assert a.on_registered(RegisterReply(1, (), ("u1",))) == [StopContainer("ag", "u1")]
    assert "u1" not in a


def test_agent_selects_running_containers_by_kind_and_labels() -> None:
    offer = OfferedContainer("db", "db", ("tenant-a",), stateless=True)
    a = AgentState("ag", ("echo", "db"), stateless=(offer,))
    a.on_start(Start(1, "ag", "echo", "e1", ("tenant-a", "eu")))
    a.on_start(Start(2, "ag", "echo", "e2", ("tenant-b",)))
    a.on_start(Start(3, "ag", "echo", "e3", ("tenant-a",)))
    a.started("e1")
    a.started("e2")  # e3 is still starting: not selected
    assert a.select() == ("db", "e1", "e2")
    assert a.select("echo") == ("e1", "e2")
    assert a.select(labels=("tenant-a",)) == ("db", "e1")
    assert a.select("echo", ("tenant-a", "eu")) == ("e1",)
    assert a.select("echo", ("tenant-c",)) == ()
    a.started("e3")
    assert a.select("echo", ("tenant-a",)) == ("e1", "e3")
