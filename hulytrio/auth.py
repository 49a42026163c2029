"""Verifying the credential a peer presents in its hello.

``hulytrio serve --auth SPEC`` picks one authenticator:

- ``tokens:FILE`` — static tokens listed in a TOML file::

      [[token]]
      sha256 = "9f86d081884c7d65..."   # or: token = "the token itself"
      subject = "pool-a"
      roles = ["agent", "client"]       # or: role = "agent"
      agent_ids = ["pool-a-*"]          # optional; default: subject, subject-*

  Listing a token's ``sha256`` (``printf %s TOKEN | sha256sum``) instead of
  the token keeps the file harmless to read.
- ``jwt:SECRET_FILE`` — HS256 JSON Web Tokens signed with the secret in the
  file, carrying ``sub``, ``role`` (a string or a list), ``exp`` (required)
  and optionally ``agent_ids``.  Only HS256 is accepted, whatever the token's
  header says, so a token cannot pick a weaker algorithm.

``authenticate(credential, now)`` returns a ``Principal`` or raises
``AuthError`` with the reason (which the hub logs and answers as
``unauthorized``).  ``now`` is wall-clock seconds, given by the driver.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import tomllib
from collections.abc import Mapping
from typing import Any

import attrs

from .core.principals import UNAUTHENTICATED, Principal, Role

__all__ = ["AuthError", "Authenticator", "JwtAuthenticator", "NoAuthentication",
           "TokenFileAuthenticator", "load_authenticator", "read_token"]

#: Seconds a JWT's ``exp`` and ``nbf`` may be off, for clocks that drift.
JWT_LEEWAY = 30.0


class AuthError(Exception):
    """A credential was refused, or an authentication setting is unusable."""


class Authenticator(abc.ABC):
    """Turns the credential in a hello into a ``Principal``."""

    #: whether peers must present a credential (False: authentication off)
    required = True

    @abc.abstractmethod
    def authenticate(self, credential: str | None, now: float) -> Principal:
        """Return the principal ``credential`` proves, at wall-clock time ``now``.

        Raises ``AuthError`` naming why it is refused (missing, unknown,
        expired, badly signed) without echoing the credential.
        """


class NoAuthentication(Authenticator):
    """Authentication off: every peer may do everything."""

    required = False

    def authenticate(self, credential: str | None, now: float) -> Principal:
        return UNAUTHENTICATED


def _roles(value: Any, where: str) -> frozenset[Role]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise AuthError(f"{where}: roles must be a role or a non-empty list of roles "
                        f"({', '.join(r.value for r in Role)})")
    try:
        return frozenset(Role(name) for name in names)
    except ValueError:
        raise AuthError(f"{where}: unknown role in {names!r}; roles are "
                        f"{', '.join(r.value for r in Role)}") from None


def _agent_ids(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AuthError(f"{where}: agent_ids must be a list of agent ids or prefixes ending in *")
    return tuple(value)


@attrs.frozen
class _Entry:
    digest: bytes
    principal: Principal


class TokenFileAuthenticator(Authenticator):
    """Static tokens from a TOML file (see the module docstring)."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    @classmethod
    def from_file(cls, path: str) -> TokenFileAuthenticator:
        """Return the authenticator for the tokens in ``path``.

        Raises ``AuthError`` naming the file, the entry and what is wrong.
        """
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise AuthError(f"tokens file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise AuthError(f"tokens file {path}: not TOML: {exc}") from None
        return cls.from_mapping(data, path)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], path: str = "tokens") -> TokenFileAuthenticator:
        """Return the authenticator for already-parsed tokens ``data``."""
        tokens = data.get("token")
        if not isinstance(tokens, list) or not tokens:
            raise AuthError(f"{path}: no [[token]] entries")
        unknown = set(data) - {"token"}
        if unknown:
            raise AuthError(f"{path}: unknown key {sorted(unknown)[0]!r} (only [[token]])")
        entries = []
        for i, item in enumerate(tokens, 1):
            where = f"{path}: token #{i}"
            if not isinstance(item, dict):
                raise AuthError(f"{where}: must be a table")
            extra = set(item) - {"token", "sha256", "subject", "role", "roles", "agent_ids"}
            if extra:
                raise AuthError(f"{where}: unknown key {sorted(extra)[0]!r}")
            if ("token" in item) == ("sha256" in item):
                raise AuthError(f"{where}: give exactly one of 'token' and 'sha256'")
            if "token" in item:
                if not isinstance(item["token"], str) or len(item["token"]) < 16:
                    raise AuthError(f"{where}: a token must be a string of 16 characters or more")
                digest = hashlib.sha256(item["token"].encode()).digest()
            else:
                try:
                    digest = bytes.fromhex(item["sha256"])
                except (TypeError, ValueError):
                    digest = b""
                if len(digest) != 32:
                    raise AuthError(f"{where}: sha256 must be 64 hex digits")
            subject = item.get("subject")
            if not isinstance(subject, str) or not subject:
                raise AuthError(f"{where}: 'subject' (a non-empty string) is required")
            if ("role" in item) == ("roles" in item):
                raise AuthError(f"{where}: give exactly one of 'role' and 'roles'")
            roles = _roles(item.get("roles", item.get("role")), where)
            principal = Principal(subject, roles, _agent_ids(item.get("agent_ids"), where))
            entries.append(_Entry(digest, principal))
        digests = [e.digest for e in entries]
        if len(set(digests)) != len(digests):
            raise AuthError(f"{path}: the same token is listed twice")
        return cls(entries)

    def authenticate(self, credential: str | None, now: float) -> Principal:
        if not credential:
            raise AuthError("no credential: this hub requires a token")
        digest = hashlib.sha256(credential.encode()).digest()
        found = None
        # compare with every entry, in constant time each, so the time taken
        # says nothing of which entry (or how much of one) matched
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry.principal
        if found is None:
            raise AuthError("unknown token")
        return found


class JwtAuthenticator(Authenticator):
    """HS256 JSON Web Tokens signed with one secret (see the module docstring)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise AuthError("the JWT secret must be at least 32 bytes")
        self._secret = secret

    @classmethod
    def from_file(cls, path: str) -> JwtAuthenticator:
        """Return the authenticator for the secret in ``path`` (surrounding whitespace dropped).

        Raises ``AuthError`` when the file cannot be read or the secret is short.
        """
        try:
            with open(path, "rb") as f:
                secret = f.read().strip()
        except OSError as exc:
            raise AuthError(f"JWT secret file {path}: {exc.strerror}") from None
        try:
            return cls(secret)
        except AuthError as exc:
            raise AuthError(f"JWT secret file {path}: {exc}") from None

    def authenticate(self, credential: str | None, now: float) -> Principal:
        import jwt

        if not credential:
            raise AuthError("no credential: this hub requires a token")
        try:
            claims = jwt.decode(credential, self._secret, algorithms=["HS256"],
                                options={"require": ["exp", "sub"], "verify_exp": False,
                                         "verify_nbf": False})
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        # expiry checked against the driver's clock, not PyJWT's own
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int | float) or now > exp + JWT_LEEWAY:
            raise AuthError("token expired")
        if isinstance(nbf, int | float) and now < nbf - JWT_LEEWAY:
            raise AuthError("token not valid yet")
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise AuthError("invalid token: 'sub' must be a non-empty string")
        try:
            roles = _roles(claims.get("role"), "token")
            agent_ids = _agent_ids(claims.get("agent_ids"), "token")
        except AuthError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        return Principal(subject, roles, agent_ids)


def load_authenticator(spec: str | None) -> Authenticator:
    """Return the authenticator for ``--auth SPEC`` (None or "none": off).

    Raises ``AuthError`` naming the value and what is allowed, or what is
    wrong with the file it names.
    """
    if spec is None or spec == "none":
        return NoAuthentication()
    kind, _, path = spec.partition(":")
    if kind == "tokens" and path:
        return TokenFileAuthenticator.from_file(path)
    if kind == "jwt" and path:
        return JwtAuthenticator.from_file(path)
    raise AuthError(f"--auth {spec!r}: use tokens:FILE, jwt:SECRET_FILE or none")


def read_token(path: str) -> str:
    """Return the token in ``path`` (``--token-file``), surrounding whitespace dropped.

    Raises ``AuthError`` naming the file when it cannot be read, is empty or
    holds more than one line.
    """
    try:
        with open(path, "rb") as f:
            text = f.read(64 * 1024).decode()
    except OSError as exc:
        raise AuthError(f"--token-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise AuthError(f"--token-file {path}: not text") from None
    token = text.strip()
    if not token:
        raise AuthError(f"--token-file {path}: the file is empty")
    if any(c.isspace() for c in token):
        raise AuthError(f"--token-file {path}: expected one token (no spaces or lines)")
    return token
