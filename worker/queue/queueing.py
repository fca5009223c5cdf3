"""Putting jobs on the queue, coalesced per client (and per address), and reading their state
back.

While a sync job for client N waits in the queue, or waits for a retry, a new request for N gets
that job's id and adds nothing (a notification, a person's request or the poller's drift
correction runs a waiting retry now instead of at its time). Once the job starts it clears
its claim, so a request arriving while it runs queues exactly one follow-up: the last change
always wins. A job that must be retried takes its claim back, unless a follow-up is already
waiting, which then does the work instead.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from redis import Redis, WatchError
from redis.client import Pipeline
from rq import Queue, Retry
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from worker import defaults
from worker.queue import history, metrics, store
from worker.settings import HistoryLimits


@dataclass(frozen=True)
class JobKind:
    """A job function, by the path RQ stores with the job (`worker.jobs`: queueing does not
    import the code the workers run), and how long it may run and its result is kept."""

    path: str
    timeout: int
    result_ttl: int

    def options(self) -> dict[str, Any]:
        """What RQ takes to queue this job, the same for the API and the scheduler."""
        return {
            "job_timeout": self.timeout,
            "result_ttl": self.result_ttl,
            "failure_ttl": defaults.FAILURE_TTL,
        }


SYNC_CLIENT = JobKind(
    "worker.jobs.sync_client", defaults.CLIENT_JOB_TIMEOUT, defaults.CLIENT_RESULT_TTL
)
SYNC_ADDRESS = JobKind(
    "worker.jobs.sync_address", defaults.CLIENT_JOB_TIMEOUT, defaults.CLIENT_RESULT_TTL
)
RECONCILE = JobKind(
    "worker.jobs.reconcile", defaults.RECONCILE_JOB_TIMEOUT, defaults.RECONCILE_RESULT_TTL
)
SYNC_PLANS = JobKind(
    "worker.jobs.sync_plans", defaults.PLANS_JOB_TIMEOUT, defaults.PLANS_RESULT_TTL
)
POLL_CHANGES = JobKind(
    "worker.jobs.poll_changes", defaults.POLL_JOB_TIMEOUT, defaults.POLL_RESULT_TTL
)
KINDS = {
    kind.path: kind for kind in (SYNC_CLIENT, SYNC_ADDRESS, RECONCILE, SYNC_PLANS, POLL_CHANGES)
}
# RQ's own retries, spent when a worker dies mid-job (or on an unexpected error): the job runs
# again after these delays. Transient API failures use the jobs' longer RETRY_INTERVALS instead.
RESTARTS = Retry(max=len(defaults.RESTART_DELAYS), interval=list(defaults.RESTART_DELAYS))

# Requests that run a waiting retry at once: a person's, every time; a notification (WispHub
# changed) or the poller's drift correction (the BQN differs: after an outage, this is what
# catches up within a poll interval instead of at the next backed-off retry), once per job, so
# that a failure that lasts keeps its backoff. A change the poller saw only waits for the retry.
# Requests for clients read from WispHub or the BQN, not just named by someone.
FROM_WISPHUB = frozenset({"poll", "reconcile", "drift"})
EXPEDITE_ALWAYS = frozenset({"api", "status-page"})
EXPEDITE_ONCE = frozenset({"webhook", "drift"})
# Statuses of a job that has not started yet: queued, or waiting for a retry.
WAITING = (JobStatus.QUEUED.value, JobStatus.SCHEDULED.value)

# Takes a claim back for a job about to be retried, unless another job waits under it.
_RECLAIM = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then
  local status = redis.call('HGET', ARGV[3] .. current, 'status')
  if status == ARGV[4] or status == ARGV[5] then return current end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""

STATES = {
    JobStatus.QUEUED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.CREATED: "queued",
    JobStatus.READY_TO_ENQUEUE: "queued",
    JobStatus.STARTED: "started",
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "failed",
    JobStatus.CANCELED: "canceled",
}


@dataclass(frozen=True)
class Queued:
    """The job that will sync a client, and whether this request added it."""

    job_id: str
    coalesced: bool


def make_queue(redis: Redis, name: str) -> Queue:
    """The service's RQ queue."""
    return Queue(name, connection=redis)


def enqueue_client_sync(queue: Queue, id_servicio: int, *, expedite: str | None = None) -> Queued:
    """Queue a sync of one client unless one is already waiting; return the job to watch.
    With `expedite` (`always`, or `once` per job), a waiting retry runs now."""
    return _enqueue_once(
        queue,
        store.pending_key(id_servicio),
        SYNC_CLIENT,
        id_servicio,
        job_id=f"sync-{id_servicio}-{uuid.uuid4().hex[:12]}",
        description=f"sync client {id_servicio}",
        expedite=expedite,
    )


def enqueue_address_sync(queue: Queue, ip: str) -> Queued:
    """Queue a sync of one BQN address unless one is already waiting."""
    return _enqueue_once(
        queue,
        store.pending_address_key(ip),
        SYNC_ADDRESS,
        ip,
        job_id=f"address-{uuid.uuid4().hex[:16]}",
        description=f"sync address {ip}",
    )


def _enqueue_once(
    queue: Queue,
    key: str,
    kind: JobKind,
    argument: int | str,
    *,
    job_id: str,
    description: str,
    expedite: str | None = None,
) -> Queued:
    """Queue a `kind` job with `argument` under the claim `key` unless the job holding the
    claim is still waiting (queued, or scheduled for a retry, which `expedite` runs now)."""
    redis = queue.connection
    for _ in range(defaults.CLAIM_ATTEMPTS):
        with redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                waiting = pipe.get(key)
                status = None if waiting is None else _status(redis, waiting.decode())
                if waiting is not None and status in WAITING:
                    if expedite and status == JobStatus.SCHEDULED:
                        _run_now(queue, waiting.decode(), once=expedite == "once")
                    return Queued(waiting.decode(), coalesced=True)
                pipe.multi()
                pipe.set(key, job_id, ex=defaults.PENDING_TTL)
                queue.enqueue(
                    kind.path,
                    argument,
                    job_id=job_id,
                    description=description,
                    retry=RESTARTS,
                    pipeline=pipe,
                    **kind.options(),
                )
                pipe.execute()
                return Queued(job_id, coalesced=False)
            except WatchError:
                continue  # another request claimed it meanwhile; look again
    waiting = redis.get(key)
    if waiting is None:
        raise RuntimeError(f"could not queue {description}")
    return Queued(waiting.decode(), coalesced=True)


def _run_now(queue: Queue, job_id: str, *, once: bool) -> None:
    """Move a job waiting for its retry to the queue (RQ's own requeue of a scheduled job),
    unless it is due within `EXPEDITE_MARGIN_SECONDS` (the scheduler may be queueing it now: it
    would be queued twice) or, with `once`, it was run early before."""
    registry = queue.scheduled_job_registry
    try:
        due = registry.get_scheduled_time(job_id).timestamp()
    except NoSuchJobError:
        return  # queued by the scheduler just now, or gone
    if due - time.time() < defaults.EXPEDITE_MARGIN_SECONDS:
        return
    mark = store.expedited_key(job_id)
    if once and not queue.connection.set(mark, 1, nx=True, ex=defaults.PENDING_TTL):
        return
    with suppress(InvalidJobOperation, NoSuchJobError):
        registry.requeue(job_id)


def claim_key(job: Job) -> str | None:
    """The claim a coalesced job (a client or address sync) is queued under."""
    client = client_of(job)
    if client is not None:
        return store.pending_key(client)
    if job.func_name == SYNC_ADDRESS.path and job.args:
        return store.pending_address_key(str(job.args[0]))
    return None


def waiting_instead(redis: Redis, job: Job) -> str | None:
    """The id of another job waiting under this job's claim, which will do its work."""
    key = claim_key(job)
    holder = None if key is None else redis.get(key)
    if holder is None or holder.decode() == job.id:
        return None
    return holder.decode() if _status(redis, holder.decode()) in WAITING else None


def release_claim(redis: Redis, job: Job) -> None:
    """Let the next request for this job's client queue a follow-up (if the claim is ours)."""
    key = claim_key(job)
    if key is None:
        return
    with redis.pipeline() as pipe:
        try:
            pipe.watch(key)
            if pipe.get(key) == job.id.encode():
                pipe.multi()
                pipe.delete(key)
                pipe.execute()
        except WatchError:  # a newer claim was made meanwhile: it stays
            pass


def reclaim(redis: Redis, job: Job) -> str | None:
    """Before a retry: take the job's claim back, so that later requests wait for the retry;
    return the other job already waiting under it instead (then no retry is needed)."""
    key = claim_key(job)
    if key is None:
        return None
    script = redis.register_script(_RECLAIM)
    other = script(
        [key],
        [job.id, defaults.PENDING_TTL, Job.redis_job_namespace_prefix, *WAITING],
    )
    return other.decode() if other else None


def request_syncs(
    queue: Queue, ids: Iterable[int], via: str, limits: HistoryLimits
) -> list[Queued]:
    """Queue (or coalesce) a sync of each client, noting in each client's history, and in the
    metrics, where the request came from (`via`: webhook, api, poll, reconcile, requeue)."""
    expedite = "always" if via in EXPEDITE_ALWAYS else "once" if via in EXPEDITE_ONCE else None
    queued = [
        (id_servicio, enqueue_client_sync(queue, id_servicio, expedite=expedite))
        for id_servicio in ids
    ]
    events = [
        (id_servicio, history.requested(via, job.job_id, coalesced=job.coalesced))
        for id_servicio, job in queued
    ]
    outcomes = Counter(event["event"] for _, event in events)  # queued or coalesced

    def count(pipe: Pipeline) -> None:
        for outcome, amount in outcomes.items():
            metrics.add(pipe, "client_syncs_requested", amount, via=via, outcome=outcome)

    history.write(queue.connection, events, limits, also=count, known=via in FROM_WISPHUB)
    return [job for _, job in queued]


def enqueue_reconcile(queue: Queue, *, dry_run: bool, force: bool = False) -> str:
    """Queue a full reconcile; return its job id."""
    job = queue.enqueue(
        RECONCILE.path,
        kwargs={"dry_run": dry_run, "force": force},
        description="full reconcile"
        + (" (dry run)" if dry_run else "")
        + (" (forced)" if force else ""),
        retry=RESTARTS,
        **RECONCILE.options(),
    )
    return job.id


def enqueue_plan_sync(queue: Queue) -> str:
    """Queue a plan catalogue refresh with its policy updates; return its job id."""
    job = queue.enqueue(
        SYNC_PLANS.path,
        description="plan catalogue refresh",
        retry=RESTARTS,
        **SYNC_PLANS.options(),
    )
    return job.id


def failures(queue: Queue, limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
    """The failed jobs, newest first: how many in all, and the first `limit` of them."""
    registry = queue.failed_job_registry
    views = []
    for job_id in registry.get_job_ids(0, limit - 1, desc=True):
        try:
            job = Job.fetch(job_id, connection=queue.connection)
        except NoSuchJobError:
            continue
        views.append(
            {
                "job_id": job.id,
                "description": job.description,
                "id_servicio": client_of(job),
                "error": _failure(job),
                "attempts": attempts(job),
                "last_try": _iso(job.ended_at),
            }
        )
    return registry.count, views


def requeue_failures(
    queue: Queue, job_ids: list[str] | None, limits: HistoryLimits
) -> tuple[list[dict[str, str]], list[str]]:
    """Try failed jobs again (all of them without `job_ids`): as fresh jobs, so each gets its
    full set of retries and client syncs still coalesce. Returns what was queued (failed job
    -> new job) and the ids that are not failed jobs."""
    registry = queue.failed_job_registry
    wanted = job_ids if job_ids is not None else registry.get_job_ids()
    queued, missing = [], []
    for job_id in wanted:
        try:
            job = Job.fetch(job_id, connection=queue.connection)
        except NoSuchJobError:
            job = None
        if job is None or job_id not in registry:
            missing.append(job_id)
            continue
        queued.append({"failed_job_id": job_id, "job_id": _again(queue, job, limits)})
        registry.remove(job)
    return queued, missing


def _again(queue: Queue, job: Job, limits: HistoryLimits) -> str:
    """A fresh job doing what `job` did, queued the way its kind always is (claims, options)."""
    if job.func_name == SYNC_CLIENT.path and job.args:
        return request_syncs(queue, [int(job.args[0])], "requeue", limits)[0].job_id
    if job.func_name == SYNC_ADDRESS.path and job.args:
        return enqueue_address_sync(queue, str(job.args[0])).job_id
    if job.func_name == RECONCILE.path:
        options = job.kwargs
        return enqueue_reconcile(
            queue, dry_run=bool(options.get("dry_run")), force=bool(options.get("force"))
        )
    if job.func_name == SYNC_PLANS.path:
        return enqueue_plan_sync(queue)
    options = KINDS[job.func_name].options() if job.func_name in KINDS else {}
    again = queue.enqueue(
        job.func_name, args=job.args, kwargs=job.kwargs, retry=RESTARTS, **options
    )
    return again.id


def client_of(job: Job) -> int | None:
    """The client a job syncs (`sync_client`'s argument), None for other jobs."""
    try:
        func_name, args = job.func_name, job.args
    except DeserializationError:
        return None  # RQ reports a job it cannot read when it runs it
    if func_name == SYNC_CLIENT.path and args and isinstance(args[0], int):
        return args[0]
    return None


def _status(redis: Redis, job_id: str) -> str | None:
    """A job's status (one field read, not the whole job)."""
    status = redis.hget(Job.key_for(job_id), "status")
    return None if status is None else status.decode()


def describe(redis: Redis, job_id: str) -> dict[str, Any] | None:
    """A job's state for the API: status, attempts, timestamps, and its report when done."""
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return None
    status = job.get_status(refresh=False)
    if status == JobStatus.SCHEDULED:
        state = "retrying" if attempts(job) else "scheduled"
    else:
        state = STATES.get(status, str(status))
    view: dict[str, Any] = {
        "job_id": job.id,
        "status": state,
        "description": job.description,
        "attempts": attempts(job),
        "enqueued_at": _iso(job.enqueued_at),
        "started_at": _iso(job.started_at),
        "ended_at": _iso(job.ended_at),
    }
    if job.meta.get("last_error"):
        view["last_error"] = job.meta["last_error"]
    if state == "finished":
        view["report"] = job.return_value()
    elif job.meta.get("report") is not None:
        view["report"] = job.meta["report"]
    if state == "failed":
        view["error"] = _failure(job)
    return view


def attempts(job: Job) -> int:
    """How many times the job has started (a run cut short by a dead worker counts)."""
    return int(job.meta.get("attempts", 0))


def _failure(job: Job) -> str:
    """The last line of the job's failure (the exception message), or its last transient error."""
    result = job.latest_result()
    text = (result.exc_string or "") if result is not None else ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines:
        return lines[-1]
    return job.meta.get("last_error") or "failed"


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None
