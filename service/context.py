"""What request handlers share: settings, the Redis connection and the job queue."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from redis import Redis
from rq import Queue

from worker.settings import ServiceSettings, Settings


@dataclass(frozen=True)
class Context:
    """Built once by the app factory."""

    KEY = "wisphub_bqn_sync"

    service: ServiceSettings
    sync: Settings
    redis: Redis
    queue: Queue


def context() -> Context:
    """The current app's context."""
    return current_app.extensions[Context.KEY]
