"""What a driver does with a message too large for any frame the peer accepts.

Every receiver refuses a frame over its limit (``MAX_FRAME_BYTES``, 16 MiB
by default), so the ``Outbox`` never builds one: it splits a batch by bytes,
and hands a single message over the limit to its driver, which asks
``refusal`` what to do instead.  Nothing may wait for ever on a message that
was never sent:

- a reply (``res``, ``listed``, ``error`` ...) is replaced by an ``Error``
  with the same id, so the caller on the other side sees why;
- a call of our own (``req``, ``get``, ``start`` ...) is answered locally
  with that ``Error``, as if the peer had refused it: the driver feeds it to
  its own machine, which fails the call and anything waiting on it;
- a one-way message (``event``, ``push`` ...) is dropped and logged; for an
  ``event`` the client sees a gap in the numbers at the next one and
  resyncs from a snapshot.

(The classification is protocol knowledge; it lives beside the drivers
until the core machines can be told "this send failed" themselves.)
"""

from __future__ import annotations

import attrs

from hulytrio.core.errors import ErrorCode
from hulytrio.core.messages import (
    AgentsReply,
    Claim,
    ClientsReply,
    Connect,
    Error,
    Get,
    GetReply,
    KindsReply,
    ListReply,
    Message,
    Ok,
    Query,
    RegisterAgent,
    RegisterReply,
    Release,
    Request,
    Response,
    Retry,
    Start,
    Started,
    TerminateAny,
    UnregisterAgent,
)

__all__ = ["ENDPOINT_HELLO_TIMEOUT", "ENDPOINT_MAX_CONNECTIONS", "MAX_BAD_MESSAGES_PER_FRAME",
           "PRE_HELLO_BYTES", "EndpointLimits", "Refusal", "refusal"]

#: The largest message a connection may send before its hello is accepted
#: (fragments included): a hello is tiny, and a peer nobody knows yet must
#: not make the hub or an agent hold megabytes for it.
PRE_HELLO_BYTES = 64 * 1024

#: Bad messages in one frame that are answered (and logged) one by one; a
#: frame with more has its first ones answered, the rest ignored, and the
#: connection is closed with 1008 (each answer costs a log line and a
#: message: 300,000 in one frame cost 250 MB before this bound).
MAX_BAD_MESSAGES_PER_FRAME = 32

#: Seconds a direct connection to an agent's endpoint has, once upgraded, to
#: say an accepted hello.
ENDPOINT_HELLO_TIMEOUT = 10.0
#: Direct connections (upgrading or open) an agent's endpoint serves at once;
#: more are closed at once (each holds a descriptor, buffers and a task).
ENDPOINT_MAX_CONNECTIONS = 512


@attrs.frozen
class EndpointLimits:
    """What direct connections may cost an agent's endpoint (``limits.*`` keys).

    The first ``max_bad_messages_per_frame`` bad messages of a frame are
    answered, then the connection is closed (1008); ``pre_hello_bytes`` is
    the largest message before an accepted hello (1009 past it);
    ``hello_timeout`` seconds after its upgrade a connection without an
    accepted hello is closed (1008); ``max_connections`` are served at once.
    """

    max_bad_messages_per_frame: int = MAX_BAD_MESSAGES_PER_FRAME
    pre_hello_bytes: int = PRE_HELLO_BYTES
    hello_timeout: float = ENDPOINT_HELLO_TIMEOUT
    max_connections: int = ENDPOINT_MAX_CONNECTIONS

#: Messages that answer a call of the peer's (carry the peer's call id).
_REPLIES = (AgentsReply, ClientsReply, Error, GetReply, KindsReply, ListReply, Ok,
            RegisterReply, Response, Retry, Started)
#: Messages that are calls of ours (the peer answers them by id).
_CALLS = (Claim, Connect, Get, Query, RegisterAgent, Release, Request, Start, TerminateAny,
          UnregisterAgent)


@attrs.frozen
class Refusal:
    """What to do instead of sending a message too large to send.

    ``send``: an ``Error`` to send to the peer in its place (it was a reply);
    ``answer``: an ``Error`` to feed to our own machine as the peer's answer
    (it was our call); both None: drop it (one-way).  ``text`` says why, for
    the log line.
    """

    text: str
    send: Error | None = None
    answer: Error | None = None


def refusal(message: Message, size: int, limit: int) -> Refusal:
    """Return what to do with ``message``, ``size`` bytes encoded, over the peer's ``limit``."""
    text = (f"a {message.TAG!r} message of {size} bytes exceeds the frame limit of "
            f"{limit} bytes")
    if isinstance(message, _REPLIES):
        return Refusal(text, send=Error(message.id, ErrorCode.PROTOCOL.value, text))
    if isinstance(message, _CALLS):
        return Refusal(text, answer=Error(message.id, ErrorCode.PROTOCOL.value, text))
    return Refusal(text)
