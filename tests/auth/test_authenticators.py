"""Static token files and signed JWTs: what is accepted, and why the rest is refused."""

from __future__ import annotations

import hashlib

import jwt
import pytest

from hulytrio.auth import (
    AuthError,
    JwtAuthenticator,
    NoAuthentication,
    TokenFileAuthenticator,
    load_authenticator,
)
from hulytrio.core.principals import UNAUTHENTICATED, Principal, Role

NOW = 1_800_000_000.0
AGENT_TOKEN = "agent-token-0123456789"
CLIENT_TOKEN = "client-token-0123456789"

TOKENS = f"""
[[token]]
token = "{AGENT_TOKEN}"
subject = "pool-a"
roles = ["agent", "client"]
agent_ids = ["pool-a-*"]

[[token]]
sha256 = "{hashlib.sha256(CLIENT_TOKEN.encode()).hexdigest()}"
subject = "app"
role = "client"
"""


@pytest.fixture
def tokens(tmp_path):
    path = tmp_path / "tokens.toml"
    path.write_text(TOKENS)
    return load_authenticator(f"tokens:{path}")


def test_tokens_by_value_and_by_hash(tokens):
    assert tokens.authenticate(AGENT_TOKEN, NOW) == Principal(
        "pool-a", frozenset({Role.AGENT, Role.CLIENT}), ("pool-a-*",))
    assert tokens.authenticate(CLIENT_TOKEN, NOW) == Principal("app", frozenset({Role.CLIENT}))


@pytest.mark.parametrize(("credential", "says"), [
    (None, "no credential"),
    ("", "no credential"),
    ("nope-nope-nope-nope", "unknown token"),
    (AGENT_TOKEN + "x", "unknown token"),
])
def test_tokens_refused(tokens, credential, says):
    with pytest.raises(AuthError, match=says) as info:
        tokens.authenticate(credential, NOW)
    if credential:
        assert credential not in str(info.value)


@pytest.mark.parametrize(("body", "says"), [
    ("", "no \\[\\[token\\]\\] entries"),
    ("x = 1\n[[token]]\ntoken='0123456789abcdefg'\nsubject='s'\nrole='agent'", "unknown key 'x'"),
    ("[[token]]\nsubject='s'\nrole='agent'", "exactly one of 'token' and 'sha256'"),
    ("[[token]]\ntoken='short'\nsubject='s'\nrole='agent'", "16 characters or more"),
    ("[[token]]\nsha256='abc'\nsubject='s'\nrole='agent'", "64 hex digits"),
    ("[[token]]\ntoken='0123456789abcdefg'\nrole='agent'", "'subject'"),
    ("[[token]]\ntoken='0123456789abcdefg'\nsubject='s'\nrole='root'", "unknown role"),
    ("[[token]]\ntoken='0123456789abcdefg'\nsubject='s'", "exactly one of 'role' and 'roles'"),
    ("[[token]]\ntoken='0123456789abcdefg'\nsubject='s'\nrole='agent'\nagent_ids='a'",
     "agent_ids must be a list"),
    ("[[token]]\ntoken='0123456789abcdefg'\nsubject='s'\nrole='agent'\n"
     "[[token]]\ntoken='0123456789abcdefg'\nsubject='t'\nrole='agent'", "listed twice"),
    ("[[token]\n", "not TOML"),
])
def test_a_bad_tokens_file_names_the_entry_and_the_problem(tmp_path, body, says):
    path = tmp_path / "tokens.toml"
    path.write_text(body)
    with pytest.raises(AuthError, match=says) as info:
        load_authenticator(f"tokens:{path}")
    assert str(path) in str(info.value)


SECRET = b"s" * 32


def token(**claims) -> str:
    base = {"sub": "pool-a", "role": "agent", "exp": NOW + 60}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, SECRET, algorithm="HS256")


@pytest.fixture
def jwts(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    return load_authenticator(f"jwt:{path}")


def test_jwt_accepted(jwts):
    assert jwts.authenticate(token(), NOW) == Principal("pool-a", frozenset({Role.AGENT}))
    assert jwts.authenticate(token(role=["agent", "admin"], agent_ids=["x-*"]), NOW) == Principal(
        "pool-a", frozenset({Role.AGENT, Role.ADMIN}), ("x-*",))
    # within the leeway for drifting clocks
    assert jwts.authenticate(token(exp=NOW - 10), NOW).subject == "pool-a"


@pytest.mark.parametrize(("make", "says"), [
    (lambda: token(exp=NOW - 31), "token expired"),
    (lambda: token(nbf=NOW + 31), "not valid yet"),
    (lambda: token(exp=None), "invalid token.*exp"),
    (lambda: token(sub=None), "invalid token.*sub"),
    (lambda: token(role="root"), "unknown role"),
    (lambda: token(role=None), "roles must be"),
    (lambda: jwt.encode({"sub": "x", "role": "admin", "exp": NOW + 60}, b"o" * 32,
                        algorithm="HS256"), "Signature verification failed"),
    (lambda: jwt.encode({"sub": "x", "role": "admin", "exp": NOW + 60}, None,
                        algorithm="none"), "invalid token"),
    (lambda: "not.a.jwt", "invalid token"),
])
def test_jwt_refused(jwts, make, says):
    with pytest.raises(AuthError, match=says):
        jwts.authenticate(make(), NOW)


def test_jwt_secret_must_be_long_enough(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"short")
    with pytest.raises(AuthError, match="at least 32 bytes"):
        load_authenticator(f"jwt:{path}")


@pytest.mark.parametrize("spec", ["tokens", "tokens:", "jwt", "basic:x", "yes"])
def test_unknown_specs_say_what_is_allowed(spec):
    with pytest.raises(AuthError, match="use tokens:FILE, jwt:SECRET_FILE or none"):
        load_authenticator(spec)


def test_auth_off_lets_everyone_do_everything():
    off = load_authenticator(None)
    assert isinstance(off, NoAuthentication)
    assert not off.required
    assert off.authenticate(None, NOW) is UNAUTHENTICATED
    assert isinstance(load_authenticator("none"), NoAuthentication)
    assert isinstance(TokenFileAuthenticator.from_mapping(
        {"token": [{"token": "0123456789abcdefg", "subject": "s", "role": "client"}]}),
        TokenFileAuthenticator)
    assert JwtAuthenticator(SECRET).required
