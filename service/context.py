"""What request handlers share: settings, the Redis connection and the job queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from flask import current_app
from redis import Redis
from rq import Queue
from werkzeug.exceptions import ServiceUnavailable

from service.payloads import PayloadError
from worker import defaults
from worker.core.rules import MappingRules
from worker.queue import capacity, client_overrides
from worker.queue.queueing import Queued, batches, request_syncs
from worker.settings import ServiceSettings, Settings


class QueueFull(ServiceUnavailable):
    """More client jobs wait than `MAX_QUEUED_JOBS`: the sender should come back later."""

    name = "Queue Full"


@dataclass(frozen=True)
class Context:
    """Built once by the app factory."""

    KEY = "wisphub_bqn_sync"

    service: ServiceSettings
    sync: Settings
    redis: Redis
    queue: Queue

    def rules(self) -> MappingRules:
        """The mapping rules with the temporary overrides in force now, as the workers map
        clients (a comparison or a preview without them would show the overrides as drift)."""
        return replace(self.sync.rules, overrides=client_overrides.in_force(self.redis))

    def request_syncs(self, ids: Sequence[int], via: str) -> list[Queued]:
        """Queue (or coalesce) a sync of each client, unless the queue is full: a flood of
        requests must not fill Redis, so past `MAX_QUEUED_JOBS` jobs (waiting, or being
        queued by other requests) nothing is queued and the sender is told to retry
        (`QueueFull`, 503 with `Retry-After`)."""
        jobs = len(batches(list(dict.fromkeys(ids)), self.service.batch_size))
        if jobs > self.service.max_queued_jobs:  # would never fit: no use retrying
            raise PayloadError(
                f"{len(ids)} clients in one request make {jobs} jobs, more than the "
                f"{self.service.max_queued_jobs} that may wait (MAX_QUEUED_JOBS): send fewer "
                "per request"
            )
        try:
            with capacity.room(self.queue, jobs, self.service.max_queued_jobs):
                return request_syncs(self.queue, ids, via, self.service)
        except capacity.NoRoom as full:
            raise QueueFull(
                f"{full}: nothing was queued; retry later",
                retry_after=defaults.QUEUE_FULL_RETRY_SECONDS,
            ) from None


def context() -> Context:
    """The current app's context."""
    return current_app.extensions[Context.KEY]
