"""Putting jobs on the queue, coalesced per client (and per address), and reading their state
back.

While a sync job for client N waits in the queue, or waits for a retry, a new request for N gets
that job's id and adds nothing (a notification, a person's request or the poller's drift
correction runs a waiting retry now instead of at its time). Once the job starts it clears
its claim, so a request arriving while it runs queues exactly one follow-up: the last change
always wins. A job that must be retried takes its claim back, unless a follow-up is already
waiting, which then does the work instead.

A request naming one client queues a client job (`sync_client`); one naming many (a poll pass,
a notification with many ids, a reconcile's follow-ups) queues them in batch jobs
(`sync_clients`, up to `BATCH_SIZE` clients each), claimed the same way, client by client. A
batch from a poll pass carries the rows the pass read; a request that coalesces into a waiting
batch drops its client's row, so that the batch reads that client again.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from worker import defaults
from worker.core.desired import Row
from worker.core.targets import DEFAULT_TARGET, address_key
from worker.core.words import error_in_words
from worker.queue import history, metrics, store
from worker.settings import ServiceSettings


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
SYNC_CLIENTS = JobKind(
    "worker.jobs.sync_clients", defaults.BATCH_JOB_TIMEOUT, defaults.CLIENT_RESULT_TTL
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
# Ends the temporary overrides due (`worker.queue.client_overrides`), queued at their `until`.
EXPIRE_OVERRIDES = JobKind(
    "worker.jobs.expire_overrides", defaults.CLIENT_JOB_TIMEOUT, defaults.CLIENT_RESULT_TTL
)
KINDS = {
    kind.path: kind
    for kind in (
        SYNC_CLIENT,
        SYNC_CLIENTS,
        SYNC_ADDRESS,
        RECONCILE,
        SYNC_PLANS,
        POLL_CHANGES,
        EXPIRE_OVERRIDES,
    )
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
EXPEDITE_ALWAYS = frozenset({"api", "status-page", "cli"})
EXPEDITE_ONCE = frozenset({"webhook", "drift"})
# The meta field of a batch job listing the clients it could not settle (its failures).
UNSETTLED = "unsettled"
# Statuses of a job that has not started yet: queued, or waiting for a retry.
WAITING = (JobStatus.QUEUED.value, JobStatus.SCHEDULED.value)
# Statuses of a job that has read nothing yet while its claim stands: waiting, or started but
# still holding its claim (a client job waiting for its client's lock releases it only then).
UNREAD = (*WAITING, JobStatus.STARTED.value)

# Takes each claim back for a job about to be retried (ARGV[1]), unless another job waits
# under it: returns that job's id for the claim, or '' when the claim is the job's again.
_RECLAIM = """
local out = {}
for i = 1, #KEYS do
  local current = redis.call('GET', KEYS[i])
  out[i] = ''
  if current and current ~= ARGV[1] then
    local status = redis.call('HGET', ARGV[3] .. current, 'status')
    if status == ARGV[4] or status == ARGV[5] or status == ARGV[6] then out[i] = current end
  end
  if out[i] == '' then redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[2]) end
end
return out
"""

# Clears the claims of a job that starts (ARGV[1]), except those another waiting job took
# (their ids are returned, '' for the others), and takes the rows it carries (the last key),
# in one step: a request either coalesced before (its client's row was dropped) or queues a
# follow-up after.
_BEGIN = """
local out = {}
for i = 1, #KEYS - 1 do
  local holder = redis.call('GET', KEYS[i])
  out[i] = ''
  if holder == ARGV[1] then
    redis.call('DEL', KEYS[i])
  elseif holder then
    local status = redis.call('HGET', ARGV[2] .. holder, 'status')
    if status == ARGV[3] or status == ARGV[4] or status == ARGV[5] then out[i] = holder end
  end
end
local rows = redis.call('HGETALL', KEYS[#KEYS])
redis.call('DEL', KEYS[#KEYS])
return {out, rows}
"""

# Claims each key for a new job (ARGV[1]) unless the job holding it has read nothing yet
# (`UNREAD`): then that job's id and status are returned for the key, and the row a batch
# carries for the key's client (ARGV[7 + i] in hash ARGV[7] .. job) is dropped, so that the
# batch reads the client again.
_CLAIM = """
local out = {}
for i = 1, #KEYS do
  local current = redis.call('GET', KEYS[i])
  local status = false
  if current and current ~= ARGV[1] then
    status = redis.call('HGET', ARGV[3] .. current, 'status')
  end
  if status == ARGV[4] or status == ARGV[5] or status == ARGV[6] then
    redis.call('HDEL', ARGV[7] .. current, ARGV[7 + i])
    out[i] = current .. ' ' .. status
  else
    redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[2])
    out[i] = ''
  end
end
return out
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


def enqueue_address_sync(queue: Queue, ip: str, target: str = DEFAULT_TARGET) -> Queued:
    """Queue a sync of one address of a target's BQN unless one is already waiting."""
    claim = _claim(queue, SYNC_ADDRESS, [address_key(ip, target)])
    if claim.keys:
        with queue.connection.pipeline(transaction=False) as pipe:
            _enqueue(queue, SYNC_ADDRESS, claim, pipe, None)
            pipe.execute()
    return claim.jobs[0]


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming some keys for a new job: its id, the keys it got (to queue it
    with), and the job that will do the work for each key (it, or one already waiting)."""

    job_id: str
    keys: list[int | str]
    jobs: list[Queued]


def _claim(
    queue: Queue, kind: JobKind, keys: Sequence[int | str], *, expedite: str | None = None
) -> Claim:
    """Claim each of `keys` (clients, or an address) for one new `kind` job, in one round
    trip; a key whose claim a waiting job holds keeps that job (whose waiting retry runs now
    with `expedite`). The claims are taken before the job is queued: a request that looks
    meanwhile finds no waiting job under them and claims them itself, so nothing is lost."""
    job_id = _new_job_id(kind, keys)
    found = queue.connection.register_script(_CLAIM)(
        [_claim_key(kind, key) for key in keys],
        [
            job_id,
            defaults.PENDING_TTL,
            Job.redis_job_namespace_prefix,
            *UNREAD,
            store.BATCH_ROWS_PREFIX,
            *map(str, keys),
        ],
    )
    claimed: list[int | str] = []
    jobs = []
    for key, holder in zip(keys, found, strict=True):
        if not holder:
            claimed.append(key)
            jobs.append(Queued(job_id, coalesced=False))
            continue
        waiting, status = holder.decode().split(" ", 1)
        if expedite and status == JobStatus.SCHEDULED.value:
            _run_now(queue, waiting, once=expedite == "once")
        jobs.append(Queued(waiting, coalesced=True))
    return Claim(job_id, claimed, jobs)


def _new_job_id(kind: JobKind, keys: Sequence[int | str]) -> str:
    """A job id that says what the job does (a client job names its client)."""
    if kind is SYNC_CLIENT:
        return f"sync-{keys[0]}-{uuid.uuid4().hex[:12]}"
    if kind is SYNC_CLIENTS:
        return f"batch-{uuid.uuid4().hex[:16]}"
    return f"address-{uuid.uuid4().hex[:16]}"


def _claim_key(kind: JobKind, key: int | str) -> str:
    return (
        store.pending_address_key(str(key)) if kind is SYNC_ADDRESS else store.pending_key(int(key))
    )


def _enqueue(
    queue: Queue, kind: JobKind, claim: Claim, pipe: Pipeline, rows: Carried | None
) -> None:
    """Queue the job that syncs the keys `claim` got, in `pipe` (RQ makes it a transaction:
    it must be the first thing in it), with the rows a batch carries."""
    keys = claim.keys
    options: dict[str, Any] = {}
    if kind is SYNC_CLIENTS:
        argument: Any = list(keys)
        options["meta"] = {UNSETTLED: list(keys)}  # until it has settled them
        options["job_timeout"] = defaults.batch_job_timeout(len(keys))
        description = f"sync {len(keys)} clients"
    else:
        argument = keys[0]
        description = f"sync {'client' if kind is SYNC_CLIENT else 'address'} {keys[0]}"
    queue.enqueue(
        kind.path,
        argument,
        job_id=claim.job_id,
        description=description,
        retry=RESTARTS,
        pipeline=pipe,
        **{**kind.options(), **options},
    )
    if kind is SYNC_CLIENTS and rows is not None:
        carried = {key: rows.rows[key] for key in keys if key in rows.rows}
        if carried:
            store.save_batch_rows(pipe, claim.job_id, carried, rows.read_at)


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


def unsettled(job: Job) -> list[int]:
    """The clients a batch job has not settled yet (its meta), none for other jobs."""
    if job.func_name != SYNC_CLIENTS.path:
        return []
    return [int(key) for key in job.meta.get(UNSETTLED) or ()]


@dataclass(frozen=True)
class Carried:
    """The rows a batch carries from a complete pass, and when the pass began reading them."""

    read_at: float
    rows: dict[int, Row]


def begin(redis: Redis, job_id: str, claims: Sequence[str]) -> tuple[list[str | None], Carried]:
    """As a job starts: clear its `claims`, so that a request from now on queues a follow-up,
    and take the rows it carries, in one round trip. Returns, for each claim, the other job
    waiting under it, which does that work instead (`None`: the work is this job's)."""
    others, flat = redis.register_script(_BEGIN)(
        [*claims, store.BATCH_ROWS_PREFIX + job_id],
        [job_id, Job.redis_job_namespace_prefix, *UNREAD],
    )
    fields = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
    read_at = float(fields.pop(store.ROWS_READ_AT, 0))
    rows = {int(key): json.loads(raw) for key, raw in fields.items()}
    return [other.decode() if other else None for other in others], Carried(read_at, rows)


def reclaim(redis: Redis, job_id: str, claims: Sequence[str]) -> list[str | None]:
    """Before a retry: take the job's `claims` back, so that later requests wait for the
    retry; return, for each, the other job already waiting under it instead (then that one
    does the work)."""
    if not claims:
        return []
    found = redis.register_script(_RECLAIM)(
        list(claims),
        [job_id, defaults.PENDING_TTL, Job.redis_job_namespace_prefix, *UNREAD],
    )
    return [other.decode() if other else None for other in found]


def request_syncs(
    queue: Queue,
    ids: Iterable[int],
    via: str,
    service: ServiceSettings,
    *,
    rows: Carried | None = None,
) -> list[Queued]:
    """Queue (or coalesce) a sync of each client, noting in each client's history, and in the
    metrics, where the request came from (`via`: webhook, api, status-page, poll, drift,
    reconcile, requeue).

    One client gets a client job; many are split evenly into batch jobs of at most
    `BATCH_SIZE` clients (`rows`, read by a complete pass just now, go with them). Each batch
    is claimed in one round trip, and queued with its history events and counts in another."""
    wanted = list(dict.fromkeys(ids))
    expedite = "always" if via in EXPEDITE_ALWAYS else "once" if via in EXPEDITE_ONCE else None
    queued: list[Queued] = []
    for chunk in batches(wanted, service.batch_size):
        kind = SYNC_CLIENT if len(chunk) == 1 else SYNC_CLIENTS
        claim = _claim(queue, kind, chunk, expedite=expedite)
        queued += claim.jobs

        def enqueue_and_count(pipe: Pipeline, kind: JobKind = kind, claim: Claim = claim) -> None:
            if claim.keys:
                _enqueue(queue, kind, claim, pipe, rows)
            outcomes = Counter("coalesced" if job.coalesced else "queued" for job in claim.jobs)
            for outcome, amount in outcomes.items():
                metrics.add(pipe, "client_syncs_requested", amount, via=via, outcome=outcome)

        history.write(
            queue.connection,
            [
                (key, history.requested(via, job.job_id, coalesced=job.coalesced))
                for key, job in zip(chunk, claim.jobs, strict=True)
            ],
            service.history,
            also=enqueue_and_count,
            known=via in FROM_WISPHUB,
        )
    return queued


def batches(ids: list[int], size: int) -> list[list[int]]:
    """`ids` split into the fewest parts of at most `size`, of about even sizes: the jobs a
    request for them queues."""
    if not ids:
        return []
    parts = -(-len(ids) // max(size, 1))
    step = -(-len(ids) // parts)
    return [ids[start : start + step] for start in range(0, len(ids), step)]


def enqueue_reconcile(
    queue: Queue, *, dry_run: bool, force: bool = False, target: str | None = None
) -> str:
    """Queue a full reconcile of every target, or of `target` alone; return its job id."""
    options = {"dry_run": dry_run, "force": force}
    job = queue.enqueue(
        RECONCILE.path,
        # a reconcile of every target is queued as before targets, for workers of either release
        kwargs=options if target is None else {**options, "target": target},
        description="full reconcile"
        + (f" of {target}" if target else "")
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


def client_of(job: Job) -> int | None:
    """The client a job syncs (`sync_client`'s argument), None for other jobs."""
    try:
        func_name, args = job.func_name, job.args
    except DeserializationError:
        return None  # RQ reports a job it cannot read when it runs it
    if func_name == SYNC_CLIENT.path and args and isinstance(args[0], int):
        return args[0]
    return None


def describe(redis: Redis, job_id: str) -> dict[str, Any] | None:
    """A job's state for the API: status, attempts, timestamps, and its report when done.
    The error of its last attempt that failed is its `last_error` until it finishes; a job
    that went through at last shows it as `earlier_error`, with the attempt, so that nobody
    takes it for the job's state."""
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
    if error := job.meta.get("last_error"):
        if state == "finished":
            view["earlier_error"] = {"attempt": job.meta.get("last_error_attempt"), "error": error}
        else:
            view["last_error"] = error
    if state == "finished":
        view["report"] = job.return_value()
    elif job.meta.get("report") is not None:
        view["report"] = job.meta["report"]
    if state == "failed":
        view["error"] = error_of(job)
    return view


def attempts(job: Job) -> int:
    """How many times the job has started (a run cut short by a dead worker counts)."""
    return int(job.meta.get("attempts", 0))


def error_of(job: Job) -> str:
    """Why the job failed, in words (`worker.core.words`): its exception's message, or its
    last transient error."""
    result = job.latest_result()
    text = (result.exc_string or "") if result is not None else ""
    return error_in_words(text) or job.meta.get("last_error") or "failed"


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None
