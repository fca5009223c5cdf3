"""What the worker and the scheduler say once when they start: which Redis they use (never its
password), and what is left unchecked in how the service reaches the APIs."""

from __future__ import annotations

import logging

from redis import Redis
from redis.connection import SSLConnection

from worker.settings import Settings, tls_warnings

log = logging.getLogger(__name__)


def redis_address(redis: Redis) -> str:
    """`redis://host:port/db` (`rediss://` over TLS, `unix://path?db=n` for a socket) of the
    server `redis` connects to, without credentials."""
    pool = redis.connection_pool
    kwargs = pool.connection_kwargs
    db = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={db}"
    host = str(kwargs.get("host", "localhost"))
    host = f"[{host}]" if ":" in host else host
    scheme = "rediss" if issubclass(pool.connection_class, SSLConnection) else "redis"
    return f"{scheme}://{host}:{kwargs.get('port', 6379)}/{db}"


def announce(process: str, redis: Redis, settings: Settings | None) -> None:
    """Log which Redis `process` uses and, given the API settings, each TLS warning."""
    log.info("%s uses Redis at %s", process, redis_address(redis))
    for warning in tls_warnings(settings) if settings is not None else ():
        log.warning("%s", warning)
