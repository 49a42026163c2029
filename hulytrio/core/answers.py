"""What one container instance answered recently: at most once across hub failover.

Theory of operation
-------------------
A caller resends a request that had no answer when its connection to the
hub ended (a hub restart, a takeover by a standby): the request may have
reached the agent, run, and its answer been lost with the old hub.  The
caller keeps the request's id across the resend (``core/calls.py``: a
call's id is its handle, unique for the session's life) and its peer id,
and the hub forwards both (``Request.client_id``, ``Request.caller_id``).

``Answers`` belongs to one container instance (``core/agent.py`` keeps one
per hosted container, made on its first request; it ends with the
instance).  Keyed by (caller's peer id, caller's request id) it remembers:

- the requests **running** (their run id): a resend joins the run and gets
  its answer, instead of running a second time;
- the requests **answered**, with the answer: a resend is answered from
  here.  Only answers of runs count: a response, or the ``remote`` error of
  a container that raised.  An error that says the request did not run
  (``not_found``, a cancelled run) is forgotten, so a resend runs.

A key alone could name another request: a caller process that restarts
under a fixed peer id numbers its calls from 1 again.  So each entry also
keeps the request's operation and payload, and a request that differs in
them is another request: it runs (the stale answer is dropped).

Bounds: at most ``limit`` answers per caller (the oldest goes first; the
default, 512, is the hub's in-flight limit per client and container, so
every call in flight when a hub dies can be remembered), each for ``ttl``
seconds after it was answered (default 60 s, many times a takeover or a
reconnect).  Expired answers are dropped whenever an answer is added.
"""

from __future__ import annotations

import collections

import attrs

from .errors import ErrorCode
from .fastinit import fast_init
from .messages import Error, Message, Response

__all__ = ["ANSWER_LIMIT", "ANSWER_TTL", "Answer", "Answers", "CallerKey"]

#: answers remembered per caller and container instance
ANSWER_LIMIT = 512
#: seconds an answer is remembered after it was given
ANSWER_TTL = 60.0

#: (the caller's peer id, the caller's id for the request)
CallerKey = tuple[str, int]
#: what the request asked: (operation, payload)
Asked = tuple[str, bytes]


@fast_init
@attrs.frozen
class Answer:
    """What a run answered: a response ``payload``, or an error (``code`` set)."""

    payload: bytes = b""
    code: str | None = None
    message: str = ""
    type_name: str = ""

    def to(self, call_id: int) -> Message:
        """Return this answer as the reply to the hub's call ``call_id``."""
        if self.code is None:
            return Response(call_id, self.payload)
        return Error(call_id, self.code, self.message, self.type_name)

    @property
    def ran(self) -> bool:
        """Whether the answer says the request ran (so a resend must not run it again)."""
        return self.code is None or self.code == ErrorCode.REMOTE.value


class Answers:
    """The recent answers of one container instance (see module docstring)."""

    __slots__ = ("_answered", "_oldest_at", "_per_caller", "_running", "limit", "ttl")

    def __init__(self, limit: int = ANSWER_LIMIT, ttl: float = ANSWER_TTL) -> None:
        self.limit = limit
        self.ttl = ttl
        #: key -> (the run id of the request running, what it asked)
        self._running: dict[CallerKey, tuple[int, Asked]] = {}
        #: key -> (answer, when answered, what it asked), oldest answer first
        self._answered: collections.OrderedDict[CallerKey, tuple[Answer, float, Asked]] = (
            collections.OrderedDict())
        #: peer id -> its answered request ids, oldest first
        self._per_caller: dict[str, collections.OrderedDict[int, None]] = {}
        #: no answer remembered is older than this (a lower bound, inf when
        #: none is): ``finish`` looks for expired answers only once one may be
        self._oldest_at = float("inf")

    def __len__(self) -> int:
        return len(self._answered)

    def lookup(self, key: CallerKey, asked: Asked, now: float) -> int | Answer | None:
        """Return the run id running ``key``, its remembered ``Answer``, or None (run it).

        ``asked`` is the request's (operation, payload): a remembered
        request that asked something else is another one (None).  An answer
        older than ``ttl`` is not returned (it is dropped at the next
        ``finish``: lookups stay cheap on the request path).
        """
        running = self._running.get(key)
        if running is not None:
            return running[0] if running[1] == asked else None
        entry = self._answered.get(key)
        if entry is None or entry[2] != asked or entry[1] <= now - self.ttl:
            return None
        return entry[0]

    def start(self, key: CallerKey, run_id: int, asked: Asked) -> None:
        """``key`` runs now as ``run_id``, asking ``asked``."""
        self._running[key] = (run_id, asked)

    def forget(self, key: CallerKey, run_id: int) -> None:
        """``key``'s run ``run_id`` ended without running it (cancelled): a resend runs."""
        running = self._running.get(key)
        if running is not None and running[0] == run_id:
            del self._running[key]

    def finish(self, key: CallerKey, run_id: int, asked: Asked, answer: Answer,
               now: float) -> None:
        """``key``'s run ``run_id`` answered ``answer`` at ``now``: remember it if it ran."""
        self.forget(key, run_id)
        if not answer.ran:
            return
        if self._oldest_at <= now - self.ttl:
            self._expire(now)
        caller, call_id = key
        answered = self._answered
        if not answered:
            self._oldest_at = now
        if key in answered:
            del answered[key]
        answered[key] = (answer, now, asked)
        mine = self._per_caller.get(caller)
        if mine is None:
            mine = self._per_caller[caller] = collections.OrderedDict()
        elif call_id in mine:
            mine.move_to_end(call_id)
        mine[call_id] = None
        if len(mine) > self.limit:
            oldest, _ = mine.popitem(last=False)
            del answered[(caller, oldest)]

    def _expire(self, now: float) -> None:
        answered = self._answered
        horizon = now - self.ttl
        while answered:
            key, (_, at, _) = next(iter(answered.items()))
            if at > horizon:
                self._oldest_at = at
                return
            del answered[key]
            caller, call_id = key
            mine = self._per_caller[caller]
            del mine[call_id]
            if not mine:
                del self._per_caller[caller]
        self._oldest_at = float("inf")
