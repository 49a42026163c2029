"""Throwaway certificates made at run time with trustme (for every wss:// test)."""

from __future__ import annotations

from pathlib import Path

import trustme


def make_pki(d: Path) -> dict[str, str]:
    """Write PEM files in ``d``; returns their paths by name.

    ``ca``: the CA; ``cert``/``key``: the server's (127.0.0.1 and
    localhost); ``client``: a client certificate and key the CA signed;
    ``other_ca``: a CA nobody uses; ``other_cert``/``other_key``: a server
    certificate for 127.0.0.1 that ``other_ca`` signed (a wrongly certified
    peer); ``other_client``: a client certificate ``other_ca`` signed.
    """
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    intruder = other.issue_cert("127.0.0.1", "localhost")
    paths = {name: d / f"{name}.pem" for name in (
        "ca", "cert", "key", "client", "other_ca", "other_cert", "other_key", "other_client")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    ca.issue_cert("client@example").private_key_and_cert_chain_pem.write_to_path(
        str(paths["client"]))
    other.cert_pem.write_to_path(str(paths["other_ca"]))
    intruder.cert_chain_pems[0].write_to_path(str(paths["other_cert"]))
    intruder.private_key_pem.write_to_path(str(paths["other_key"]))
    other.issue_cert("intruder").private_key_and_cert_chain_pem.write_to_path(
        str(paths["other_client"]))
    return {k: str(v) for k, v in paths.items()}
