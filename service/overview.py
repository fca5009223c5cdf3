"""The service at a glance, read from Redis: queue, workers, last reconcile and last poll.

Shared by the status page and `/metrics`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job

from worker.queue import runs, store


@dataclass(frozen=True)
class WorkerView:
    """One RQ worker: its name, state and the job it runs."""

    name: str
    state: str
    job_id: str | None
    last_heartbeat: str | None


@dataclass(frozen=True)
class Overview:
    """What the status page shows and `/metrics` exports as gauges."""

    queued: int
    oldest_queued_seconds: float
    retrying: int
    running: int
    failed: int
    workers: list[WorkerView]
    last_reconcile: dict[str, Any] | None
    last_poll: dict[str, Any] | None
    poll_lag_seconds: float | None


def read(redis: Redis, queue: Queue) -> Overview:
    """The overview as Redis holds it now."""
    return Overview(
        queued=queue.count,
        oldest_queued_seconds=_oldest_age(queue),
        retrying=queue.scheduled_job_registry.count,
        running=queue.started_job_registry.count,
        failed=queue.failed_job_registry.count,
        workers=[_worker(worker) for worker in Worker.all(queue=queue)],
        last_reconcile=next(iter(runs.reconciles(redis, 1)), None),
        last_poll=runs.last_poll(redis),
        poll_lag_seconds=store.snapshot_age(redis),
    )


def _oldest_age(queue: Queue) -> float:
    """Seconds the job at the head of the queue (the oldest: jobs are queued at the tail) has
    waited; 0 when the queue is empty. RQ 3's `get_job_ids` takes a length, not an end index
    (`(0, 0)` is empty), and reads `enqueued_at` back as an aware UTC time, so `timestamp()`
    does not depend on the process's `TZ`."""
    for job_id in queue.get_job_ids(0, 1):
        try:
            enqueued = Job.fetch(job_id, connection=queue.connection).enqueued_at
        except NoSuchJobError:
            continue
        if enqueued is not None:
            return max(0.0, time.time() - enqueued.timestamp())
    return 0.0


def _worker(worker: Worker) -> WorkerView:
    beat = worker.last_heartbeat
    return WorkerView(
        name=worker.name,
        state=str(worker.get_state()),
        job_id=worker.get_current_job_id(),
        last_heartbeat=beat.isoformat(timespec="seconds") if beat else None,
    )
