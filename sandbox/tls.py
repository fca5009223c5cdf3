"""Throw-away TLS material for the simulators: a private CA and a localhost server cert."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server certificate chain, its private key, and the CA to verify with."""

    cert: Path
    key: Path
    ca: Path


def make_tls(directory: str | os.PathLike[str]) -> TlsFiles:
    """Create a new CA and a server cert for 127.0.0.1, localhost and ::1 in `directory`."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA(organization_name="wisphub-bqn-sync sandbox")
    leaf = authority.issue_cert(*SERVER_NAMES)
    files = TlsFiles(cert=folder / "server.pem", key=folder / "server.key", ca=folder / "ca.pem")
    authority.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    files.key.touch(mode=0o600)
    files.key.chmod(0o600)
    leaf.private_key_pem.write_to_path(str(files.key))
    return files
