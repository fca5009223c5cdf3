"""The failures list: jobs that failed for good, each until a person requeues or dismisses it, or
until what it failed to do has gone through since (then it is resolved by itself).

What a failed job owes is noted as it fails (`noted`): a client job its client, a batch the
clients it left unsettled, an address job its address, any other job its own work (a plan sync,
a poll, a reconcile of its targets). A later job that goes through pays what it did
(`went_through`): a client or address job its claim, a batch the clients it settled, a plan
sync, poll or reconcile its work; a failure whose every debt is paid leaves the failed registry
(so the failed gauge, and its alert, drop), its clients' histories say why, and it joins a short
list of failures recently cleared. A full reconcile that went through on every target resolves
every failure older than its start (`resolve_all`). Dismissing a failure (`dismiss_failures`)
clears it the same way, on a person's word.

The list shows each job and its error in words (`worker.core.words`), not Python's names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job

from worker import defaults
from worker.core.targets import split_address_key
from worker.core.words import job_facts, say_job
from worker.queue import history, queueing, store
from worker.queue.runtime import runtime
from worker.settings import HistoryLimits, ServiceSettings

# The failures cleared lately (resolved or dismissed), newest first, as JSON.
CLEARED = store.PREFIX + "failures:cleared"
# + a failed job's id: what it still owes (a set of debts, `owed`).
OWES_PREFIX = store.PREFIX + "failure:owes:"
# + a debt: the failed jobs owing it (a set of job ids).
OWED_PREFIX = store.PREFIX + "failures:owing:"
# Failed jobs read from Redis per round trip.
CHUNK = 500

# Pays debts (KEYS[2..], each the set of failed jobs owing one; ARGV[i + 2] the debt of
# KEYS[i]): a job listed in the failed registry (KEYS[1]) pays it out of its set of debts
# (ARGV[1] .. id); one still running (RQ status started, in its hash ARGV[2] .. id: RQ lists a
# failure only after the job's code has ended and freed its client lock) keeps owing it, for a
# later job to pay; any other (retried by RQ, taken off the list, or the paying job itself,
# ARGV[3]) is listed nowhere and owes it no more. Returns the listed jobs left owing nothing.
_PAY = """
local done = {}
for i = 2, #KEYS do
  local debt = ARGV[i + 2]
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    local listed = redis.call('ZSCORE', KEYS[1], id)
    if listed or id == ARGV[3] or redis.call('HGET', ARGV[2] .. id, 'status') ~= 'started' then
      local owes = ARGV[1] .. id
      redis.call('SREM', KEYS[i], id)
      redis.call('SREM', owes, debt)
      if listed and redis.call('SCARD', owes) == 0 then table.insert(done, id) end
    end
  end
end
return done
"""

# Forgets what failed jobs (ARGV[3..]) owe: each leaves the sets of the debts it owed.
_FORGET = """
for i = 3, #ARGV do
  local owes = ARGV[1] .. ARGV[i]
  for _, debt in ipairs(redis.call('SMEMBERS', owes)) do
    redis.call('SREM', ARGV[2] .. debt, ARGV[i])
  end
  redis.call('DEL', owes)
end
return 1
"""


# What a job owes and pays ----------------------------------------------------------------


def client_debt(id_servicio: int) -> str:
    """The debt of a failure that left a client unsynced."""
    return f"client:{id_servicio}"


def owed(job: Job) -> list[str]:
    """What a failed job owes: its client, the clients a batch left unsettled, its address, or
    its own work (a reconcile's names its target, and whether it was a dry run)."""
    try:
        func_name, args, kwargs = job.func_name, job.args, job.kwargs
    except DeserializationError:
        return []  # RQ fails a job it cannot read: a person requeues or dismisses it
    if func_name == queueing.SYNC_CLIENTS.path:
        ids = queueing.unsettled(job) or (args[0] if args else [])
        return [client_debt(int(key)) for key in ids]
    client = queueing.client_of(job)
    if client is not None:
        return [client_debt(client)]
    if func_name == queueing.SYNC_ADDRESS.path and args:
        return [f"address:{args[0]}"]
    if func_name == queueing.RECONCILE.path:
        dry = ":dry-run" if kwargs.get("dry_run") else ""
        return [f"reconcile:{kwargs.get('target') or '*'}{dry}"]
    return [f"work:{func_name}"]


def done_by(job: Job, result: Any) -> list[str]:
    """What a job that returned `result` has done, paying a failure that owed it: all it
    would owe, unless it skipped its work, handed it to another job or says it failed (a poll
    that could not read WispHub). A batch pays for the clients it settled itself
    (`worker.queue.batch`): some of its clients may be another job's."""
    undone = isinstance(result, dict) and (
        isinstance(result.get("skipped"), str)  # why it did nothing (a report lists skips)
        or "superseded_by" in result
        or result.get("ok") is False
    )
    if undone or job.func_name == queueing.SYNC_CLIENTS.path:
        return []
    return owed(job)


def noted(redis: Redis, job: Job) -> None:
    """As a job fails: note what it owes, so that the jobs that do it later resolve it."""
    debts = owed(job)
    keep = defaults.FAILURE_TTL
    with redis.pipeline(transaction=True) as pipe:
        pipe.delete(OWES_PREFIX + job.id)
        if debts:
            pipe.sadd(OWES_PREFIX + job.id, *debts)
            pipe.expire(OWES_PREFIX + job.id, keep)
        for debt in debts:
            pipe.sadd(OWED_PREFIX + debt, job.id)
            pipe.expire(OWED_PREFIX + debt, keep)
        pipe.execute()


def went_through(job: Job, debts: Sequence[str]) -> list[str]:
    """`job` has just done `debts`: the failures left owing nothing are resolved (`clear`);
    returns their ids. A failed job not yet in the failed registry keeps its debts: it failed
    as this job ran, and a later job that does them resolves it once it is listed."""
    if not debts:
        return []
    queue = _queue_of(job)
    paid = job.connection.register_script(_PAY)(
        [queue.failed_job_registry.key, *[OWED_PREFIX + debt for debt in debts]],
        [OWES_PREFIX, job.redis_job_namespace_prefix, job.id, *debts],
    )
    return clear(queue, [job_id.decode() for job_id in paid], "resolved", job.id)


def resolve_all(job: Job, before: float) -> list[str]:
    """A full reconcile (`job`) went through on every target: every failure older than its
    start (`before`, Unix time) is resolved; returns their ids."""
    queue = _queue_of(job)
    job_ids = queue.failed_job_registry.get_job_ids()
    older = []
    for start in range(0, len(job_ids), CHUNK):
        for found in Job.fetch_many(job_ids[start : start + CHUNK], connection=job.connection):
            if found is not None and found.ended_at and found.ended_at.timestamp() < before:
                older.append(found.id)
    return clear(queue, older, "resolved", job.id)


def _queue_of(job: Job) -> Queue:
    """The queue a running job came from, whose failed registry lists its failures."""
    return Queue(job.origin, connection=job.connection)


# The list, and what a person does with it --------------------------------------------------


def failures(queue: Queue, limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
    """The failed jobs, newest first: how many in all, and the first `limit` of them."""
    registry = queue.failed_job_registry
    views = []
    for job_id in registry.get_job_ids(0, limit - 1, desc=True):
        try:
            job = Job.fetch(job_id, connection=queue.connection)
        except NoSuchJobError:
            continue
        views.append(view(job))
    return registry.count, views


def view(job: Job) -> dict[str, Any]:
    """A failed job as the list shows it: what it was for and what went wrong, in words."""
    try:
        name, args, kwargs = job.func_name.rpartition(".")[2], job.args, job.kwargs
        clients = queueing.unsettled(job)
    except DeserializationError:  # RQ failed it for that, and its error says so
        name, args, kwargs, clients = "job", (), {}, []
    return {
        "job_id": job.id,
        "description": say_job(facts := job_facts(name, args, kwargs, len(clients) or None)),
        "job": facts,
        "id_servicio": queueing.client_of(job),
        "clients": clients or None,
        "error": queueing.error_of(job),
        "attempts": queueing.attempts(job),
        "last_try": None if job.ended_at is None else job.ended_at.isoformat(),
    }


def place(queue: Queue, job_id: str) -> float | None:
    """A failed job's place in the failed registry (None: not there), for `failed_until`."""
    return queue.connection.zscore(queue.failed_job_registry.key, job_id)


def failed_before(queue: Queue, score: float) -> list[str]:
    """The failed jobs placed before `score` in the failed registry (a listed job's place
    there): those that failed before it. RQ places them by the second: jobs of the same second
    are not told apart."""
    found = queue.connection.zrangebyscore(queue.failed_job_registry.key, "-inf", f"({score}")
    return [job_id.decode() for job_id in found]


def recently_cleared(
    redis: Redis, limit: int = defaults.FAILURES_CLEARED_KEPT
) -> list[dict[str, Any]]:
    """The failures cleared lately, newest first: each as it was listed, with how it left
    (`cleared`: resolved or dismissed), `by` what (a job id, or where a person dismissed it)
    and `at` when."""
    return [json.loads(raw) for raw in redis.lrange(CLEARED, 0, limit - 1)]


def dismiss_failures(
    queue: Queue, job_ids: list[str] | None, via: str, limits: HistoryLimits
) -> tuple[list[str], list[str]]:
    """Take failed jobs off the list without running them again (all of them without
    `job_ids`), on a person's word (`via`: api, status-page). Returns those dismissed and the
    ids that are not failed jobs."""
    wanted = job_ids if job_ids is not None else queue.failed_job_registry.get_job_ids()
    dismissed = clear(queue, wanted, "dismissed", via, limits)
    gone = set(dismissed)
    return dismissed, [job_id for job_id in wanted if job_id not in gone]


def clear(
    queue: Queue, job_ids: Iterable[str], how: str, by: str, limits: HistoryLimits | None = None
) -> list[str]:
    """Take the failed jobs among `job_ids` off the list: out of RQ's failed registry (one
    another request took out meanwhile is left to it), their debts forgotten, their clients'
    histories told (`how`: resolved or dismissed, and `by` what; within `limits`, a worker's
    own when not given), each kept among those recently cleared. Returns the ids cleared."""
    redis = queue.connection
    registry = queue.failed_job_registry
    wanted = list(dict.fromkeys(job_ids))
    removed: list[str] = []
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start : start + CHUNK]
        with redis.pipeline(transaction=False) as pipe:
            for job_id in part:
                registry.remove(job_id, pipeline=pipe)
            removed += [job_id for job_id, gone in zip(part, pipe.execute(), strict=True) if gone]
    _forget(redis, removed)
    at = datetime.now(UTC).isoformat(timespec="seconds")
    jobs = [
        job
        for start in range(0, len(removed), CHUNK)
        for job in Job.fetch_many(removed[start : start + CHUNK], connection=redis)
        if job is not None
    ]
    if jobs:
        event = history.resolved if how == "resolved" else history.dismissed
        # only the newest few are kept in words: a view reads each job's result once more
        shown = jobs[-defaults.FAILURES_CLEARED_KEPT :]
        entries = [{**view(job), "cleared": how, "by": by, "at": at} for job in shown]

        def keep(pipe: Pipeline) -> None:
            pipe.lpush(CLEARED, *[json.dumps(entry, ensure_ascii=False) for entry in entries])
            pipe.ltrim(CLEARED, 0, defaults.FAILURES_CLEARED_KEPT - 1)

        history.write(
            redis,
            [(key, event(job.id, by)) for job in jobs for key in _clients(job)],
            limits or runtime().service.history,
            also=keep,
            known=False,
        )
    return removed


def _clients(job: Job) -> list[int]:
    """The clients a failed job left unsynced: its client, or a batch's (none that can be
    read: RQ failed a job it could not read)."""
    try:
        client = queueing.client_of(job)
        return [client] if client else queueing.unsettled(job)
    except DeserializationError:
        return []


def _forget(redis: Redis, job_ids: Sequence[str]) -> None:
    """Forget what the failed jobs `job_ids` owed: they left the list."""
    if job_ids:
        redis.register_script(_FORGET)([], [OWES_PREFIX, OWED_PREFIX, *job_ids])


def requeue_failures(
    queue: Queue, job_ids: list[str] | None, service: ServiceSettings
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
        # taken off the list first: of two requests at once (a double click), one runs it
        if job is None or not registry.remove(job_id):
            missing.append(job_id)
            continue
        queued.append({"failed_job_id": job_id, "job_id": _again(queue, job, service)})
    _forget(queue.connection, [item["failed_job_id"] for item in queued])
    return queued, missing


def _again(queue: Queue, job: Job, service: ServiceSettings) -> str:
    """A fresh job doing what `job` did, queued the way its kind always is (claims, options);
    a batch's clients that were not settled, in a job of their own (or several)."""
    if job.func_name == queueing.SYNC_CLIENT.path and job.args:
        return queueing.request_syncs(queue, [int(job.args[0])], "requeue", service)[0].job_id
    if job.func_name == queueing.SYNC_CLIENTS.path and job.args:
        ids = job.meta.get(queueing.UNSETTLED) or job.args[0]
        keys = [int(key) for key in ids]
        return queueing.request_syncs(queue, keys, "requeue", service)[0].job_id
    if job.func_name == queueing.SYNC_ADDRESS.path and job.args:
        ip, target = split_address_key(str(job.args[0]))
        return queueing.enqueue_address_sync(queue, ip, target).job_id
    if job.func_name == queueing.RECONCILE.path:
        options = job.kwargs
        return queueing.enqueue_reconcile(
            queue,
            dry_run=bool(options.get("dry_run")),
            force=bool(options.get("force")),
            target=options.get("target"),
        )
    if job.func_name == queueing.SYNC_PLANS.path:
        return queueing.enqueue_plan_sync(queue)
    kinds = queueing.KINDS
    options = kinds[job.func_name].options() if job.func_name in kinds else {}
    again = queue.enqueue(
        job.func_name, args=job.args, kwargs=job.kwargs, retry=queueing.RESTARTS, **options
    )
    return again.id
