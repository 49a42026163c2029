"""The error hierarchy, shared by the core, the drivers and user code.

As in h11: ``LocalProtocolError`` means the caller misused the API;
``RemoteProtocolError`` means a peer sent something illegal, and carries the
``Error`` reply to send it.  Users mostly meet the subclasses that map remote
error codes (``RemoteError``, ``ContainerNotFound``, ...).
"""

from __future__ import annotations

import enum

__all__ = [
    "ConnectionClosed",
    "ContainerNotFound",
    "ErrorCode",
    "Forbidden",
    "HulyError",
    "LocalProtocolError",
    "NoAgentForKind",
    "ProtocolError",
    "RemoteError",
    "RemoteProtocolError",
    "Unauthorized",
    "error_from_code",
]


class ErrorCode(enum.Enum):
    """Machine-readable codes carried in ``Error.code``."""

    #: The container's request handler raised; ``type`` names the exception.
    REMOTE = "remote"
    #: No such container (unknown uuid, or it is gone).
    NOT_FOUND = "not_found"
    #: No registered agent can start a container of the kind.
    NO_AGENT = "no_agent"
    #: The agent failed to start the container.
    START_FAILED = "start_failed"
    #: The container's agent went away while the call was in flight.
    AGENT_GONE = "agent_gone"
    #: The message broke the protocol (undecodable, unknown, too large, illegal).
    PROTOCOL = "protocol"
    #: The caller may not do this (not a holder, not the registering peer), or
    #: its credential was refused (missing, unknown, expired).
    UNAUTHORIZED = "unauthorized"
    #: The caller's credential is good but its roles do not allow this, or
    #: the agent id or peer id it asks for belongs to another principal.
    FORBIDDEN = "forbidden"
    #: The container kind is not hosted here, or its uuid is of another kind.
    BAD_KIND = "bad_kind"
    #: The agent is at its container limit.
    FULL = "full"
    #: The caller cancelled the call (``cancel``): the answer to a ``get``
    #: whose wait for a starting container the hub dropped (no hold follows).
    CANCELLED = "cancelled"


class HulyError(Exception):
    """Base of every hulytrio error."""


class LocalProtocolError(HulyError):
    """The caller used the API in a way the protocol does not allow."""


class RemoteProtocolError(HulyError):
    """A peer sent something illegal; ``code`` says what kind of error to answer."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.PROTOCOL) -> None:
        super().__init__(message)
        self.code = code


class ProtocolError(HulyError):
    """The other side said we broke the protocol, or the connection is unusable."""


class RemoteError(HulyError):
    """A container raised while handling a request.

    ``remote_type`` is the name of the exception class on the remote side;
    ``remote_message`` its message.
    """

    def __init__(self, remote_type: str, remote_message: str) -> None:
        super().__init__(f"{remote_type}: {remote_message}" if remote_type else remote_message)
        self.remote_type = remote_type
        self.remote_message = remote_message


class ContainerNotFound(HulyError):
    """The container does not exist (any more)."""


class NoAgentForKind(HulyError):
    """No agent can start a container of the kind asked for."""


class ConnectionClosed(HulyError):
    """The connection closed before the call could complete."""


class Unauthorized(HulyError):
    """The hub refused the call: this peer may not do it."""


class Forbidden(Unauthorized):
    """The hub refused the call: this peer's roles do not allow it (``forbidden``)."""


def error_from_code(code: str, message: str, type_name: str = "") -> HulyError:
    """Return the user-facing exception for an ``Error`` reply's fields."""
    if code == ErrorCode.REMOTE.value:
        return RemoteError(type_name, message)
    if code == ErrorCode.NOT_FOUND.value:
        return ContainerNotFound(message)
    if code == ErrorCode.NO_AGENT.value:
        return NoAgentForKind(message)
    if code == ErrorCode.UNAUTHORIZED.value:
        return Unauthorized(message)
    if code == ErrorCode.FORBIDDEN.value:
        return Forbidden(message)
    if code == ErrorCode.PROTOCOL.value:
        return ProtocolError(message)
    return HulyError(f"{code}: {message}")
