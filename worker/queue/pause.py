"""Pausing every write to the BQNs, for their maintenance, with RQ's own suspension.

While paused, notifications, requests and retries keep being queued and coalesced (a client
has at most one job waiting, which takes the latest state once it runs), but no worker starts
a job, so nothing reads WispHub or writes any BQN until writes are resumed. RQ's suspension
(`rq.suspension`, the `rq suspend` command's) is what every RQ worker, our pool's included,
looks at before it takes a job; while suspended it keeps its registration alive, and the
scheduler process that moves due retries to the queue goes on. Two gaps it leaves are closed
here and in `worker.rqworker`: a worker already waiting on the queue when the pause begins
would still take the next job (`hold_back` puts it back at the head of the queue), and the
scheduler would queue a poll and a plan refresh at every interval (they skip their turn while
paused: `worker.queue.scheduler`). A job already running when the pause is asked finishes:
the answer says how many run.

RQ's flag holds no when or why: this service keeps them in its own key, set and cleared with
RQ's flag in one transaction. RQ's flag is the truth (`rq suspend` and `rq resume` by hand are
seen too); it pauses every RQ worker of the Redis database, which is the service's own.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.suspension import WORKERS_SUSPENDED

from worker.queue.store import PREFIX

log = logging.getLogger(__name__)

# Who paused writes, when and why (JSON), beside RQ's flag.
PAUSED = PREFIX + "writes:paused"

# Puts a job a worker has just taken (ARGV[1]) back at the head of its queue (KEYS[3]), out of
# the list RQ keeps jobs in between taking and starting them (KEYS[2]), if writes are paused
# (KEYS[1]): in one step, so the job is either started or back in the queue.
_HOLD_BACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('LREM', KEYS[2], 1, ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class Paused:
    """Writes are paused: since when (None when paused by hand with `rq suspend`), where from
    (`api`, `status-page`, `rq`) and why, if someone said."""

    since: float | None
    via: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """For the API and the page: `since` in ISO 8601."""
        since = None if self.since is None else datetime.fromtimestamp(self.since, UTC)
        return {
            "since": None if since is None else since.isoformat(timespec="seconds"),
            "via": self.via,
            "reason": self.reason,
        }


def paused(redis: Redis) -> Paused | None:
    """Whether writes are paused, and since when; None when they are not."""
    with redis.pipeline(transaction=False) as pipe:
        pipe.exists(WORKERS_SUSPENDED)
        pipe.get(PAUSED)
        suspended, raw = pipe.execute()
    if not suspended:
        return None
    if raw is None:
        return Paused(since=None, via="rq")
    data = json.loads(raw)
    return Paused(since=data["since"], via=data["via"], reason=data.get("reason"))


def pause(redis: Redis, via: str, reason: str | None = None) -> Paused:
    """Pause writes, asked for `via` api or status-page (already paused: as they were, since
    the first pause)."""
    found = paused(redis)
    if found is not None and found.since is not None:
        return found
    state = Paused(since=time.time(), via=via, reason=reason)
    with redis.pipeline(transaction=True) as pipe:
        pipe.set(WORKERS_SUSPENDED, 1)
        pipe.set(PAUSED, json.dumps({"since": state.since, "via": via, "reason": reason}))
        pipe.execute()
    log.warning("writes to the BQNs paused via %s: jobs wait in the queue until resumed", via)
    return state


def resume(redis: Redis, via: str) -> Paused | None:
    """Let the workers write again; returns the pause that ended (None: there was none)."""
    found = paused(redis)
    with redis.pipeline(transaction=True) as pipe:
        pipe.delete(WORKERS_SUSPENDED, PAUSED)
        pipe.execute()
    if found is not None:
        log.warning("writes to the BQNs resumed via %s", via)
    return found


def hold_back(job: Job, queue: Queue) -> bool:
    """Put back at the head of the queue a job a worker has just taken, if writes were paused
    meanwhile (True: it must not run). A worker waits on the queue for several seconds at a
    time, and RQ looks at its suspension only before it waits."""
    held = queue.connection.register_script(_HOLD_BACK)(
        [WORKERS_SUSPENDED, queue.intermediate_queue_key, queue.key], [job.id]
    )
    return bool(held)


def state(queue: Queue) -> dict[str, Any]:
    """Whether writes are paused (with since when, where from and why), and the jobs running
    (they finish: a pause stops the next ones) and waiting, for the API and the page."""
    found = paused(queue.connection)
    # a job a worker has just taken is in RQ's intermediate list until it starts (or goes back
    # to the queue: `hold_back`), in neither the queue nor the started registry: counted as
    # running, so that nothing looks idle while a job is about to run
    taken = queue.connection.llen(queue.intermediate_queue_key)
    return {
        "paused": found is not None,
        **(found.to_dict() if found is not None else {"since": None, "via": None, "reason": None}),
        "running": queue.started_job_registry.count + taken,
        "queued": queue.count,
        "retrying": queue.scheduled_job_registry.count,
    }
