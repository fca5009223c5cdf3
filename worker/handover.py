"""The one-shot CLI where the service runs: its run handed to the service, not done beside it.

A pass of the CLI's own reads WispHub once and then writes for minutes: what the service's
jobs apply meanwhile it undoes with what it read, and the service's record of what each client
holds on the BQN is left behind. So when its environment names the service's Redis
(`REDIS_URL` or `REDIS_SENTINELS`, as the service's env file sets them), the CLI queues the job
the API would — a full reconcile, which takes the service's one reconcile lock and leaves to
the jobs the clients they touch meanwhile, or one client's sync — and waits for its end. A
reconcile already running does this run's work: the CLI waits for that one instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker

from worker.core.errors import ConfigError
from worker.queue import connection, pause, queueing
from worker.settings import ServiceSettings

# How often the job's state is read while waiting.
POLL_SECONDS = 0.5
# The states a job ends in (`queueing.describe`).
ENDED = frozenset({"finished", "failed", "canceled"})


def hand_over(
    service: ServiceSettings,
    *,
    client: int | None,
    dry_run: bool,
    force: bool,
    target: str | None,
    wait: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Queue the run in the service and wait up to `wait` seconds for it to end; return the
    state of the job that did the work (`queueing.describe`: its status, report, error).
    `say` tells the person running it what happens meanwhile. A `ConfigError` when the
    service cannot take it (no Redis, no worker)."""
    redis = connection.connect(service, socket_timeout=10, socket_connect_timeout=5)
    try:
        queue = queueing.make_queue(redis, service.queue_name)
        if not Worker.count(queue=queue):
            raise ConfigError(
                f"the service's Redis ({connection.address(redis)}) has no worker on queue "
                f"{service.queue_name!r}: start the service's workers, or unset REDIS_URL and "
                "REDIS_SENTINELS to sync without the service"
            )
        if (held := pause.paused(redis)) is not None:
            why = f" ({held.reason})" if held.reason else ""
            say(f"writes are paused via {held.via}{why}: the run waits until they resume")
        if client is None:
            job_id = queueing.enqueue_reconcile(queue, dry_run=dry_run, force=force, target=target)
        else:
            [queued] = queueing.request_syncs(queue, [client], "cli", service)
            job_id = queued.job_id
        say(f"queued in the service as job {job_id}; waiting for it (GET /api/v1/jobs/{job_id})")
        return wait_for(redis, job_id, time.monotonic() + wait, say)
    except RedisError as exc:
        raise ConfigError(
            f"the service's Redis ({connection.address(redis)}) did not answer: "
            f"{connection.why(exc)}; unset REDIS_URL and REDIS_SENTINELS to sync without the "
            "service"
        ) from None
    finally:
        redis.close()


def wait_for(
    redis: Redis, job_id: str, deadline: float, say: Callable[[str], None]
) -> dict[str, Any]:
    """The job's state once it ended, or at `deadline` (monotonic); a job whose work another
    did (a reconcile already running, a client job another superseded) is followed to that
    one. Each change of its state is said as it is seen (started, retrying and why)."""
    seen = "queued"
    while True:
        view = queueing.describe(redis, job_id)
        if view is None:
            raise ConfigError(f"job {job_id} is gone from the service's Redis (failover?)")
        if view["status"] != seen and view["status"] not in ENDED:
            seen = view["status"]
            why = f": {view['last_error']}" if view.get("last_error") else ""
            say(f"job {job_id} {seen}{why}")
        if view["status"] in ENDED:
            other = done_by(view)
            if other is None or other == job_id:
                return view
            say(f"job {other}, running already, does this work: waiting for it")
            job_id = other
            continue
        if time.monotonic() >= deadline:
            return view
        time.sleep(POLL_SECONDS)


def done_by(view: Mapping[str, Any]) -> str | None:
    """The job that does an ended job's work instead of it, if it did none itself: the one
    that superseded a client job, the reconcile that was running when one was skipped."""
    report = view.get("report")
    if view["status"] != "finished" or not isinstance(report, dict):
        return None
    other = report.get("superseded_by") or report.get("running")
    return None if other is None else str(other)
