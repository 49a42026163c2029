"""Several hubs: a standby's redirect, terms in the welcome, epochs across terms."""

from __future__ import annotations

import random

from hulytrio.core.effects import CloseConnection, OpenConnection, Send
from hulytrio.core.hub import Hub, term_epoch_base
from hulytrio.core.messages import PROTOCOL_VERSION, Get, Hello, Welcome
from hulytrio.core.session import ClientSession, SessionState
from hulytrio.core.types import GetOptions

from .test_stateless import DB, _kill_owner, ha_cluster, owner


def _session() -> tuple[ClientSession, list[object]]:
    s = ClientSession("me", rng=random.Random(1))
    s.connect(0.0)
    s.connection_made(0.0)
    return s, s.effects()


def test_a_redirect_is_followed_at_once_and_a_second_one_after_a_backoff() -> None:
    s, _ = _session()
    s.receive(Welcome(PROTOCOL_VERSION, "standby", 3.0, 1.0, redirect="ws://a:1"), 0.0)
    out = s.effects()
    assert [type(e) for e in out] == [CloseConnection, OpenConnection]
    assert out[1] == OpenConnection(2, "ws://a:1")
    assert s.state is SessionState.CONNECTING
    # The hub it was sent to is a standby too (a stale view of the leader):
    # no second jump at once, so two standbys cannot make the session spin.
    s.connection_made(0.0)
    s.effects()
    s.receive(Welcome(PROTOCOL_VERSION, "other", 3.0, 1.0, redirect="ws://b:1"), 0.0)
    assert [type(e) for e in s.effects()] == [CloseConnection]
    assert s.state is SessionState.BACKOFF
    deadline = s.next_deadline()
    assert deadline is not None
    assert deadline > 0.0
    s.handle_timers(deadline)
    assert s.effects() == [OpenConnection(3)]  # the driver picks the next hub


def test_a_standby_that_knows_no_leader_sends_the_session_to_its_backoff() -> None:
    s, _ = _session()
    s.receive(Welcome(PROTOCOL_VERSION, "standby", 3.0, 1.0, redirect=""), 0.0)
    assert [type(e) for e in s.effects()] == [CloseConnection]
    assert s.state is SessionState.BACKOFF


def test_a_welcome_from_an_older_term_is_refused_and_nothing_is_sent_to_it() -> None:
    s, _ = _session()
    s.receive(Welcome(PROTOCOL_VERSION, "hub-b", 3.0, 1.0, term=3), 0.0)
    assert s.term == 3
    assert s.state is SessionState.READY
    h = s.get("echo")
    s.effects()
    s.connection_lost(1.0)
    s.handle_timers(s.next_deadline() or 0.0)
    s.connection_made(1.5)
    s.effects()
    # The deposed hub of term 2 (paused, then awake) welcomes us: refused.
    s.receive(Welcome(PROTOCOL_VERSION, "hub-a", 3.0, 1.0, term=2), 1.5)
    out = s.effects()
    assert [type(e) for e in out] == [CloseConnection]
    assert "older than term 3" in out[0].reason
    assert s.state is SessionState.BACKOFF
    assert (s.term, s.hub_id) == (3, "hub-b")
    # The active hub again (or a newer one): welcomed, the Get is resent.
    s.handle_timers(s.next_deadline() or 0.0)
    s.connection_made(2.0)
    s.effects()
    s.receive(Welcome(PROTOCOL_VERSION, "hub-c", 3.0, 1.0, term=4), 2.0)
    assert s.state is SessionState.READY
    assert s.term == 4
    assert Send(None, Get(h, "echo", GetOptions())) in s.effects()


def test_a_standby_hub_answers_every_hello_with_a_redirect_and_serves_nobody() -> None:
    hub = Hub("standby", term=5)
    hub.redirect = "ws://active:3737"
    hub.connection_made(1, 0.0)
    hub.receive(1, Hello(PROTOCOL_VERSION, "c1"), 0.0)
    out = hub.effects()
    assert out[0] == Send(1, Welcome(PROTOCOL_VERSION, "standby", hub.timeouts.alive,
                                     hub.timeouts.ping_interval, 5, 0, "ws://active:3737"))
    assert isinstance(out[1], CloseConnection)
    assert out[1].conn == 1
    assert not hub.registry.has_client("c1")
    hub.connection_lost(1, 0.1)
    assert hub.stats.connections == 0


def test_the_active_hub_sends_its_term_in_the_welcome() -> None:
    hub = Hub("active", term=7)
    hub.connection_made(1, 0.0)
    hub.receive(1, Hello(PROTOCOL_VERSION, "c1"), 0.0)
    (welcome,) = [e.message for e in hub.effects() if isinstance(e, Send)]
    assert isinstance(welcome, Welcome)
    assert (welcome.term, welcome.redirect) == (7, None)


def test_stateless_epochs_only_grow_across_hub_terms() -> None:
    assert term_epoch_base(1) == 0  # a hub without a lease numbers as before
    assert term_epoch_base(2) == 1 << 32 < term_epoch_base(3)
    c = ha_cluster()

    def epoch() -> int:
        record = c.hub.registry.container(DB.uuid)
        assert record is not None
        return record.epoch

    _kill_owner(c, "close")
    epochs = [epoch()]
    c.restart_hub(term=2)
    c.advance(c.now + 0.5)
    epochs.append(epoch())
    agent = owner(c)
    c.sessions[agent.replace("a", "h")].unregister_agent(agent)
    c.pump()
    c.advance(c.now + 0.1)
    assert owner(c) != agent
    epochs.append(epoch())
    assert epochs == [1, 1 << 32, (1 << 32) + 1]


def test_a_redirect_keeps_the_reconnect_delay_short_during_a_takeover() -> None:
    s = ClientSession("me", rng=random.Random(1))
    s.connect(0.0)
    now = 0.0
    for _ in range(8):  # the hubs were unreachable for a while: long delays
        s.connection_lost(now)
        now = s.next_deadline() or now
        s.handle_timers(now)
    assert s.state is SessionState.CONNECTING
    s.connection_made(now)
    s.effects()
    s.receive(Welcome(PROTOCOL_VERSION, "standby", 3.0, 1.0, redirect=""), now)
    # A live standby answered: the next try comes after a short delay
    # (attempt 3's at most: 0.05 x 2^2 s with the core's default backoff).
    delay = (s.next_deadline() or now) - now
    assert 0 < delay <= 0.2
    s.handle_timers(now + delay)
    s.connection_lost(now + delay)  # refused again: the backoff grows from there
    assert (s.next_deadline() or 0) - (now + delay) <= 0.4
