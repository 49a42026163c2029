"""The security flags' bad input: one line naming it, exit status 2."""

from __future__ import annotations

import pytest

from hulytrio.cli import main


@pytest.mark.parametrize(("argv", "says"), [
    (["serve", "--port", "0", "--auth", "bogus"], "--auth=bogus is not allowed"),
    (["serve", "--port", "0", "--auth", "tokens:/no/such/file"], "tokens file /no/such/file"),
    (["serve", "--port", "0", "--auth", "jwt:/no/such/secret"], "JWT secret file /no/such/secret"),
    (["serve", "--port", "0", "--tls-cert", "/no/cert.pem"], "--tls-cert /no/cert.pem"),
    (["serve", "--port", "0", "--tls-key", "/no/key.pem"], "need --tls-cert"),
    (["agent", "--factories", "x:Y", "--token-file", "/no/token"], "--token-file /no/token"),
    (["agent", "--factories", "x:Y", "--ca-file", "/no/ca.pem"], "/no/ca.pem: no such file"),
    (["agent", "--factories", "x:Y", "--endpoint", "127.0.0.1:0", "--tls-cert", "/no/c.pem"],
     "--tls-cert /no/c.pem: no such file"),
    (["agent", "--factories", "x:Y", "--tls-client-ca", "/no/ca.pem"], "need --tls-cert"),
])
def test_bad_security_flags_are_one_line_and_exit_2(capsys, monkeypatch, argv, says):
    for name in ("HULYTRIO_AUTH", "HULYTRIO_TOKEN_FILE", "HULYTRIO_CA_FILE", "HULYTRIO_TLS_CERT",
                 "HULYTRIO_TLS_KEY", "HULYTRIO_TLS_CLIENT_CA"):
        monkeypatch.delenv(name, raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert err.count("\n") == 1, err


def test_an_empty_token_file_is_refused(tmp_path, capsys):
    token = tmp_path / "token"
    token.write_text("\n")
    assert main(["agent", "--factories", "x:Y", "--token-file", str(token)]) == 2
    assert "the file is empty" in capsys.readouterr().err
