"""The one place that builds the Redis client of every process (web, workers, scheduler): from
`REDIS_URL`, or through Redis Sentinel (`REDIS_SENTINELS`).

With Sentinel the client's pool asks the sentinels for the master whenever it opens a
connection, and drops its idle ones when the master changed: after a failover each process
finds the new master by itself, without a restart (redis-py's `SentinelConnectionPool`). A
write that reaches the old master once it is a replica fails as a lost connection, so the web
answers 503 and a worker's RQ loop retries. With `REDIS_TLS` it speaks TLS both to the
sentinels and to the master, checking their certificates, and never falls back to plain TCP.
"""

from __future__ import annotations

import re
from typing import Any

from redis import BlockingConnectionPool, ConnectionPool, Redis
from redis.connection import SSLConnection
from redis.exceptions import RedisError
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from worker.settings import RedisTls, ServiceSettings

# A sentinel's client as redis-py names it in `MasterNotFoundError`, before that sentinel's
# error: `<redis.client.Redis(<redis.connection.ConnectionPool(<…Connection(…)>)>)> - `.
_SENTINEL_CLIENT = re.compile(r"<redis\.client\.Redis\(.*?\)>\)>\)> - ")


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool that, like the web's `BlockingConnectionPool`, makes a request wait for
    a free connection (then fail) rather than open more than `max_connections`."""


def connect(settings: ServiceSettings, *, blocking: bool = False, **options: Any) -> Redis:
    """A client of the queue's Redis. `options` are redis-py's (timeouts, `max_connections`);
    `blocking`: wait for a free connection when `max_connections` are in use."""
    sentinel = settings.redis_sentinel
    if sentinel is None:
        assert settings.redis_url is not None  # the settings require one of the two
        pool_class = BlockingConnectionPool if blocking else ConnectionPool
        return Redis(connection_pool=pool_class.from_url(settings.redis_url, **options))
    timeouts = {k: v for k, v in options.items() if k.startswith("socket_")}
    tls = _tls_options(sentinel.tls)
    manager = Sentinel(
        list(sentinel.sentinels),
        sentinel_kwargs={**timeouts, **tls, "password": sentinel.sentinel_password},
    )
    return manager.master_for(
        sentinel.master,
        redis_class=Redis,
        connection_pool_class=BlockingSentinelPool if blocking else SentinelConnectionPool,
        password=sentinel.password,
        db=sentinel.db,
        **tls,
        **options,
    )


def _tls_options(tls: RedisTls | None) -> dict[str, Any]:
    """redis-py's arguments for TLS (`ssl=True` makes the Sentinel pool's connections
    `SentinelManagedSSLConnection`s), with the certificate and the host name checked: said
    here, not left to redis-py's defaults."""
    if tls is None:
        return {}
    return {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": tls.ca_file,
        "ssl_certfile": tls.cert_file,
        "ssl_keyfile": tls.key_file,
    }


def why(error: RedisError) -> str:
    """What went wrong with Redis, in a line: redis-py's `MasterNotFoundError` names each
    sentinel's client at length before its error (kilobytes, for `/readyz` and the logs);
    only the errors are kept (a message of another form is kept whole)."""
    head, *errors = _SENTINEL_CLIENT.split(str(error))
    if not isinstance(error, MasterNotFoundError) or not errors:
        return str(error)
    said = "; ".join(text.strip().removesuffix(",") for text in errors)
    return f"{head.removesuffix(' : ')}: {said}"


def sentinel_managed(redis: Redis) -> bool:
    """Whether `redis` finds its master through Sentinel."""
    return isinstance(redis.connection_pool, SentinelConnectionPool)


def address(redis: Redis) -> str:
    """Where `redis` connects, without credentials: `redis://host:port/db` (`rediss://` over
    TLS, `unix://path?db=n` for a socket); through Sentinel, `sentinel://name/db`
    (`sentinel+tls://` over TLS) and the master's address the sentinels last gave
    (`-> host:port`, once it is known)."""
    pool = redis.connection_pool
    kwargs = pool.connection_kwargs
    db = kwargs.get("db", 0)
    tls = issubclass(pool.connection_class, SSLConnection)
    if isinstance(pool, SentinelConnectionPool):
        master = pool.master_address
        known = f" -> {_host_port(*master)}" if master else ""
        scheme = "sentinel+tls" if tls else "sentinel"
        return f"{scheme}://{pool.service_name}/{db}{known}"
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={db}"
    scheme = "rediss" if tls else "redis"
    host_port = _host_port(kwargs.get("host", "localhost"), kwargs.get("port", 6379))
    return f"{scheme}://{host_port}/{db}"


def master(redis: Redis) -> str:
    """`host:port` of the master `redis` writes to now (asking the sentinels, with Sentinel)."""
    pool = redis.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        return _host_port(*pool.get_master_address())
    return address(redis)


def _host_port(host: Any, port: Any) -> str:
    text = str(host)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"
