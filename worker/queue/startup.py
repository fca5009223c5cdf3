"""How the worker and the scheduler start: their settings and Redis read once, a configuration
error as one line and exit status 2; then what they say once, which Redis they use (never its
password) and what is left unchecked in how the service reaches the APIs."""

from __future__ import annotations

import logging
import os
import sys

from redis import Redis

from worker import logs
from worker.core.errors import ConfigError
from worker.queue import connection
from worker.settings import ServiceSettings, Settings, tls_warnings

EXIT_CONFIG = 2

log = logging.getLogger(__name__)


def connect(prog: str) -> tuple[ServiceSettings, Redis]:
    """Logging set up (`LOG_LEVEL`, `LOG_FORMAT`), the service settings and a client of their
    Redis; a wrong setting prints one line naming it and exits with status 2 (which the
    systemd units do not restart on)."""
    try:
        logs.configure()
        settings = ServiceSettings.from_env(os.environ)
        return settings, connection.connect(settings)
    except ConfigError as exc:
        problem = str(exc)
    except ValueError as exc:  # redis-py's word on a URL it cannot read
        problem = f"REDIS_URL: {exc}"
    print(f"{prog}: {problem}", file=sys.stderr)
    raise SystemExit(EXIT_CONFIG)


def announce(process: str, redis: Redis, settings: Settings | None) -> None:
    """Log which Redis `process` uses and, given the API settings, each TLS warning."""
    log.info("%s uses Redis at %s", process, connection.address(redis))
    for warning in tls_warnings(settings) if settings is not None else ():
        log.warning("%s", warning)
