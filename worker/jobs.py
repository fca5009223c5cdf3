"""The RQ jobs: sync one client, reconcile everything, poll WispHub for changes.

Transient failures (timeouts, connection errors, 5xx, 429) make a job return an RQ `Retry`, so
it runs again later at the `RETRY_INTERVALS` delays, about an hour in all by default; permanent
ones (credentials, refused requests) raise at once and leave the job in RQ's failed registry with
the reason. Jobs are queued with a few RQ retries of their own, spent only when a worker dies in
the middle of a job (RQ's abandoned-job handling) or on an unexpected error, never on a
permanent one. Every job is idempotent, so running it again is harmless.
Settings and API clients are built once per worker process and reused by every job it runs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, wraps
from typing import Any, Concatenate, ParamSpec

from redis import Redis, WatchError
from rq import Queue, Retry, get_current_job
from rq.job import Job

from worker import engine, history, queueing, runs, store
from worker.address_book import RedisAddressBook
from worker.bqn import BqnClient
from worker.changes import changed_clients, fingerprint, fingerprints
from worker.desired import Row, as_id, is_own_group
from worker.errors import SyncError, TransientError
from worker.guard import allowed_deletions, hold_vanished
from worker.metrics import TALLY
from worker.model import Action
from worker.overrides import load_overrides
from worker.ownership import remembered
from worker.plans import Plan
from worker.policy_cache import PolicyCache
from worker.report import Report
from worker.settings import GuardLimits, MappingRules, ServiceSettings, Settings
from worker.wisphub import WispHubClient

log = logging.getLogger(__name__)

P = ParamSpec("P")
# Times a reconcile works out what to remember again when jobs record meanwhile.
REMEMBER_ATTEMPTS = 5
JobResult = dict[str, Any] | Retry


class OperationsFailed(SyncError):
    """Some BQN operations were refused for good (a 4xx), or the deletion guard held
    deletions back: retrying would not help, a person should look."""


@dataclass(frozen=True)
class Runtime:
    """What jobs share within one worker process: settings and kept-alive API clients."""

    rules: MappingRules
    service: ServiceSettings
    wisphub: WispHubClient
    bqn: BqnClient
    plan_speeds_file: str | None
    guard: GuardLimits
    policies: PolicyCache


@cache
def runtime() -> Runtime:
    """This process's runtime, built from the environment on first use."""
    settings = Settings.from_env(os.environ)
    return Runtime(
        rules=settings.rules,
        service=ServiceSettings.from_env(os.environ),
        wisphub=WispHubClient(settings.wisphub),
        bqn=BqnClient(settings.bqn),
        plan_speeds_file=settings.plan_speeds_file,
        guard=settings.guard,
        policies=PolicyCache(),
    )


def rq_job(func: Callable[Concatenate[Job, P], JobResult]) -> Callable[P, JobResult]:
    """Run `func(job, ...)` as an RQ job: count the attempt, turn a transient error into a
    retry later, and make a permanent one fail at once (the RQ retries queued with the job are
    kept for a worker that dies mid-job). A coalesced job (a client or address sync) does
    nothing when another job for the same client waits to run, releases its claim when it
    starts and takes it back when it must be retried. A client job's start, retries and
    failure go to the client's history; every job's outcome and API calls go to the metrics."""

    @wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> JobResult:
        job = _current_job()
        client = queueing.client_of(job)
        instead = queueing.waiting_instead(job.connection, job)
        if instead is not None:
            return _superseded(job, client, instead, func.__name__)
        queueing.release_claim(job.connection, job)
        attempt = int(job.meta.get("attempts", 0)) + 1
        job.meta["attempts"] = attempt
        job.save_meta()
        if client is not None:
            _note(job, client, history.started(job.id, attempt))
        outcome = "failed"
        try:
            try:
                result = func(job, *args, **kwargs)
            except TransientError as exc:
                result = _retry(job, str(exc))
            if isinstance(result, Retry) and (other := queueing.reclaim(job.connection, job)):
                outcome = "superseded"  # counted there
                return _superseded(job, client, other, func.__name__)
            outcome = "retried" if isinstance(result, Retry) else "succeeded"
            _ended(job, client, result)
            return result
        except SyncError as exc:
            _failed(job, client, str(exc), for_good=True)
            raise
        except Exception as exc:  # a bug or an outage of Redis: RQ's own retries apply
            _failed(job, client, f"{type(exc).__name__}: {exc}", for_good=False)
            raise
        finally:
            if outcome != "superseded":
                TALLY.count("jobs", job=func.__name__, outcome=outcome)
                TALLY.flush(job.connection)

    return run


def _ended(job: Job, client: int | None, result: JobResult) -> None:
    """A run that returned: a retry goes to the client's history; a success clears the mark
    of an earlier failure."""
    if isinstance(result, Retry):
        if client is not None:
            _note(job, client, history.retrying(job.id, job.meta.get("last_error", "")))
    elif claim := queueing.claim_key(job):
        store.clear_failed(job.connection, claim)


def _failed(job: Job, client: int | None, error: str, *, for_good: bool) -> None:
    """A run that raised: into the client's history; a failure for good (no RQ retry left)
    is marked, so the poller's drift correction leaves it in the failures list."""
    if for_good:
        job.retries_left = 0
        if claim := queueing.claim_key(job):
            store.mark_failed(job.connection, claim, job.id)
    if client is not None:
        _note(job, client, history.failed(job.id, error))


def _superseded(job: Job, client: int | None, other: str, name: str) -> JobResult:
    """End a job whose work another waiting job will do (with the latest state)."""
    log.info("job %s: job %s is waiting to do this work; nothing to do", job.id, other)
    if client is not None:
        _note(job, client, history.superseded(job.id, other))
    TALLY.count("jobs", job=name, outcome="superseded")
    TALLY.flush(job.connection)
    return {"superseded_by": other}


@rq_job
def sync_client(job: Job, id_servicio: int) -> JobResult:
    """Re-read one client from WispHub and bring the addresses it has or had in line."""
    redis = job.connection
    rt = runtime()
    lock = store.client_lock(redis, id_servicio)
    if not store.take(lock, job.id):
        return _retry(job, f"client {id_servicio} stayed locked by another job")
    try:
        store.note_touched(redis, id_servicio)  # before it records: a reconcile keeps that
        outcome = engine.sync_client(
            id_servicio,
            rt.wisphub,
            rt.bqn,
            rt.rules,
            plan_source(redis, rt),
            previous=store.last_applied(redis, id_servicio),
            book=RedisAddressBook(redis, job.id),
            policies=rt.policies,
        )
        if outcome.report.ok:
            seen = None if outcome.row is None else fingerprint(outcome.row, rt.rules)
            store.record_fingerprint(redis, id_servicio, seen)
        events = [history.read_from_wisphub(job.id, outcome.row)]
        events += [event for _, event in history.report_events(outcome.report, job.id)]
        return _finish(job, outcome.report, [(id_servicio, event) for event in events])
    finally:
        lock.release()


@rq_job
def sync_address(job: Job, ip: str) -> JobResult:
    """Settle one BQN address the poller found held for no client of its pass: whoever last
    claimed it is read again, and the entry goes only if none of them claims it now."""
    redis = job.connection
    rt = runtime()
    report = engine.sync_addresses(
        [ip],
        rt.wisphub,
        rt.bqn,
        rt.rules,
        plan_source(redis, rt),
        book=RedisAddressBook(redis, job.id),
        policies=rt.policies,
    )
    events = history.report_events(report, job.id)
    return _finish(job, report, [(key, e) for key, e in events if key is not None])


@rq_job
def reconcile(job: Job, dry_run: bool = False, force: bool = False) -> JobResult:
    """The full sync: every client from a complete WispHub pass against the whole BQN.

    `force` lets through the deletions the guard would hold back. Each run (but dry runs) is
    kept for `/api/v1/reconciles`, and its operations go to the clients' histories.
    """
    redis = job.connection
    rt = runtime()
    lock = store.singleton_lock(redis, "reconcile", store.RECONCILE_LOCK_SECONDS)
    if not store.take(lock, job.id):
        return {"skipped": "another reconcile is running"}
    started = time.time()
    try:
        report, touched = _reconcile(redis, rt, job.id, dry_run=dry_run, force=force)
    except SyncError as exc:
        if not dry_run:
            entry = runs.reconcile_entry(job.id, started, time.time(), error=str(exc))
            runs.save_reconcile(redis, entry, rt.service.history.reconcile_reports)
        raise
    finally:
        lock.release()
    if report.guard:
        TALLY.count("deletion_guard_trips", where="reconcile")
    if not dry_run:
        entry = runs.reconcile_entry(job.id, started, time.time(), report)
        runs.save_reconcile(redis, entry, rt.service.history.reconcile_reports)
        if report.ok:
            store.clear_all_failed(redis)
    queue = Queue(job.origin, connection=redis)
    queueing.request_syncs(queue, touched, "reconcile", rt.service.history)
    # the clients' histories get the reconcile's writes, not its skips: a client skipped every
    # night would see its history filled with the same line
    events = [] if dry_run else history.report_events(report, job.id)
    writes = [(key, e) for key, e in events if key is not None and e["event"] == "operation"]
    return _finish(job, report, writes)


def _reconcile(
    redis: Redis, rt: Runtime, job_id: str, *, dry_run: bool, force: bool
) -> tuple[Report, list[int]]:
    """Run the full sync and keep what it applied; return its report and the clients to sync
    again: those per-client jobs touched meanwhile, and those the pass missed."""
    if not dry_run:
        store.begin_reconcile(redis)
    try:
        plans = current_plans(redis, rt, refresh=True)
        outcome = engine.full_sync(
            rt.wisphub,
            rt.bqn,
            rt.rules,
            plans,
            guard=rt.guard,
            last_pass=store.pass_size(redis),
            force=force,
            dry_run=dry_run,
            book=RedisAddressBook(redis, job_id),
        )
        store.save_pass_size(redis, outcome.report.clients)
        if not dry_run:  # while jobs still note what they touch: those are synced again
            _remember(redis, outcome)
    finally:
        touched = [] if dry_run else store.end_reconcile(redis)
    return outcome.report, sorted({*touched, *outcome.alive})


def _remember(redis: Redis, outcome: engine.FullSync) -> None:
    """Keep what a full sync leaves on the BQN: every client's footprint and every address's
    claimants, with the claimants of the entries it could not delete kept as they were."""
    deleted = {
        op.key
        for op, failure in outcome.report.results()
        if op.action is Action.DELETE and failure is None
    }
    desired = outcome.desired
    leftover = [
        sub.ip
        for sub in outcome.held
        if sub.ip not in desired.subscribers and sub.ip not in deleted
    ]
    leftover_groups = [
        group.name
        for group in outcome.held_groups
        if is_own_group(group.name)
        and group.name not in desired.groups
        and group.name not in deleted
    ]
    for _ in range(REMEMBER_ATTEMPTS):
        with redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(*store.REMEMBERED)  # a job recording meanwhile: work it out again
                before, touched = store.all_applied(pipe), store.touched(pipe)
                live = [ip for key in touched if key in before for ip in before[key].ips]
                applied, claims = remembered(
                    desired,
                    before,
                    store.claimants(pipe, [*leftover, *live]),
                    leftover=leftover,
                    leftover_groups=leftover_groups,
                    touched=touched,
                )
                pipe.multi()
                store.replace_applied(pipe, applied, claims)
                pipe.execute()
                return
            except WatchError:
                continue
    # jobs kept recording: keep what was worked out last; the touched clients are synced
    # again when the reconcile ends, and the poller compares with the BQN
    log.warning("reconcile: jobs kept recording; what they recorded may be synced again")
    with redis.pipeline(transaction=True) as pipe:
        store.replace_applied(pipe, applied, claims)
        pipe.execute()


@rq_job
def sync_plans(job: Job) -> JobResult:
    """Read the plan catalogue again and put every plan's rate policy in place on the BQN."""
    rt = runtime()
    plans = current_plans(job.connection, rt, refresh=True)
    report = engine.sync_policies(rt.bqn, rt.rules, plans)
    if report.ok and report.planned:  # a policy was put right: its clients may go through now
        store.clear_all_failed(job.connection)
    return _finish(job, report)


def current_plans(redis: Redis, rt: Runtime, *, refresh: bool) -> list[Plan]:
    """The plan catalogue, read from WispHub when asked (or when none is kept yet).

    A failed WispHub read keeps the last good catalogue; a broken override file is an error.
    """
    saved = store.saved_plans(redis)
    if saved is not None and not refresh:
        return saved
    overrides = load_overrides(rt.plan_speeds_file)
    try:
        plans = engine.read_plans(rt.wisphub, overrides)
    except SyncError as exc:
        if saved is None:
            raise
        log.warning("plan catalogue not refreshed, keeping the last good one: %s", exc)
        return saved
    store.save_plans(redis, plans)
    return plans


def _plans_renamed(redis: Redis, rt: Runtime) -> bool:
    """Whether WispHub's plan list (one cheap read, no details) names plans otherwise than the
    kept catalogue, or has others."""
    try:
        listed = {
            plan_id: str(summary.get("nombre") or plan_id)
            for summary in rt.wisphub.list_plans()
            if (plan_id := as_id(summary.get("id"))) is not None
        }
    except SyncError as exc:
        log.warning("poll: plan list not read: %s", exc)
        return False
    kept = {plan.id: plan.nombre for plan in store.saved_plans(redis) or ()}
    return listed != kept


def plan_source(redis: Redis, rt: Runtime) -> engine.PlanSource:
    """The kept plan catalogue, read again when client rows name a plan it lacks or name one
    otherwise (a rename). A plan still missing after that is not looked for again for a
    minute, so a plan WispHub does not list costs one catalogue read a minute, not one per job.
    """

    def catalogue(rows: Sequence[Row]) -> list[Plan]:
        plans = current_plans(redis, rt, refresh=False)
        known = {plan.id: plan.nombre for plan in plans}
        stale = sorted(
            {
                plan_id
                for row in rows
                if isinstance(shown := row.get("plan_internet"), dict)
                and (plan_id := as_id(shown.get("id"))) is not None
                and known.get(plan_id) != shown.get("nombre")
            }
        )
        if any(store.may_look_for_plan(redis, plan_id) for plan_id in stale):
            plans = current_plans(redis, rt, refresh=True)
        return plans

    return catalogue


@rq_job
def poll_changes(job: Job) -> JobResult:
    """Read the whole client list, queue a sync for every client that changed, and compare
    the pass with the BQN itself (every `POLL_BQN_EVERY` passes): whatever differs is
    corrected, whether or not anyone announced it (see `worker.drift`).

    A failed or partial pass changes nothing. Polls that pile up behind busy workers are
    skipped when a recent pass exists.
    """
    redis = job.connection
    rt = runtime()
    age = store.snapshot_age(redis)
    if age is not None and age < rt.service.poll_interval / 2:
        return {"skipped": f"a pass completed {age:.0f} s ago"}
    lock = store.singleton_lock(redis, "poll", queueing.POLL_JOB_TIMEOUT)
    if not store.take(lock, job.id):
        return {"skipped": "another poll is running"}
    try:
        started = time.monotonic()
        try:
            rows = rt.wisphub.list_clients()
        except SyncError as exc:
            log.warning("poll: WispHub pass failed, snapshot kept: %s", exc)
            runs.save_poll(redis, {"ok": False, "error": str(exc)})
            return {"ok": False, "error": str(exc)}
        seen = fingerprints(rows, rt.rules)
        before = store.snapshot(redis)
        current, held = (seen, None) if before is None else hold_vanished(before, seen, rt.guard)
        if held:
            log.warning("poll: %s", held)
            TALLY.count("deletion_guard_trips", where="poll")
        else:
            store.save_pass_size(redis, len(rows))
        changed = [] if before is None else changed_clients(before, current)
        queue = Queue(job.origin, connection=redis)
        healing, drifted, queued = None, set(), []
        # a pass that lost clients is not compared with the BQN; a first or empty one is, but
        # removes nothing it finds there
        if held is None and store.next_poll_reads_bqn(redis, rt.service.poll_bqn_every):
            guarded = before is None or not rows
            healing, drifted, queued = _heal(redis, rt, queue, rows, guarded=guarded)
        queued += queueing.request_syncs(
            queue, [key for key in changed if key not in drifted], "poll", rt.service.history
        )
        store.save_snapshot(redis, current)
    finally:
        lock.release()
    log.debug("poll: %d clients, %d changed", len(seen), len(changed))
    summary = {
        "ok": True,
        "clients": len(seen),
        "first_pass": before is None,
        "changed": len(changed),
        "held_back": held,
        "drift": healing,
        "seconds": round(time.monotonic() - started, 3),
    }
    runs.save_poll(redis, summary)
    return {**summary, "changed": changed, "jobs": [item.job_id for item in queued]}


def _heal(
    redis: Redis, rt: Runtime, queue: Queue, rows: Sequence[Row], *, guarded: bool
) -> tuple[dict[str, Any], set[int], list[queueing.Queued]]:
    """Compare a complete pass with the BQN and correct the drift: policies at once, clients
    and addresses through their jobs (which read WispHub again before acting). Returns what
    was found, the clients a sync was asked for, and their jobs.

    Removals are held back when `guarded` or when there are more than the deletion guard lets
    go at once. An entry nobody was ever seen claiming
    is removed only when a second comparison in a row finds it so, and a client or address
    whose last job failed for good is left in the failures list, not queued again."""
    try:
        if _plans_renamed(redis, rt):  # even a plan no client has: names are decided together
            current_plans(redis, rt, refresh=True)
        found = engine.drift(rt.bqn, rt.rules, plan_source(redis, rt)(rows), rows)
    except SyncError as exc:
        log.warning("poll: the BQN was not compared: %s", exc)
        return {"error": str(exc)}, set(), []
    claimed = store.claimants(redis, found.addresses)
    unclaimed = [ip for ip in found.addresses if ip not in claimed]
    seen_before = store.swap_unclaimed(redis, unclaimed)
    addresses = [ip for ip in found.addresses if ip in claimed or ip in seen_before]
    gone, held = list(found.gone), None
    limit = allowed_deletions(rt.guard, max(len(rows), 1))
    if found.removals and (guarded or found.removals > limit):
        held = f"{found.removals} BQN entries no client of the pass claims were left as they are"
        log.warning("poll: %s", held)
        TALLY.count("deletion_guard_trips", where="poll")
        addresses, gone = [], []
    policies = engine.correct_policies(rt.bqn, found.policies) if found.policies else None
    failing = store.failed(redis, [store.pending_key(key) for key in (*found.clients, *gone)])
    clients = [key for key in (*found.clients, *gone) if store.pending_key(key) not in failing]
    queued = queueing.request_syncs(queue, clients, "drift", rt.service.history)
    failing = store.failed(redis, [store.pending_address_key(ip) for ip in addresses])
    by_address = [
        queueing.enqueue_address_sync(queue, ip)
        for ip in addresses
        if store.pending_address_key(ip) not in failing
    ]
    corrected = {
        "client": sum(not item.coalesced for item in queued),
        "address": sum(not item.coalesced for item in by_address),
        "policy": 0 if policies is None else len(policies.planned) - len(policies.failures),
    }
    for kind, amount in corrected.items():
        if amount:
            TALLY.count("drift_corrected", amount, kind=kind)
    if found:
        log.info(
            "poll: the BQN differed from WispHub: %d clients, %d addresses, %d policies",
            len(found.clients) + len(found.gone),
            len(found.addresses),
            len(found.policies),
        )
    summary = {
        "clients": len(found.clients) + len(found.gone),
        "addresses": len(found.addresses),
        "policies": len(found.policies),
        "held_back": held,
        "policy_failures": [] if policies is None else [f.to_dict() for f in policies.failures],
    }
    return summary, set(clients), queued


def _current_job() -> Job:
    job = get_current_job()
    if job is None:
        raise RuntimeError("this function runs as an RQ job")
    return job


def _retry(job: Job, error: str) -> Retry:
    """Record why, then ask RQ to run the job again later."""
    log.warning("job %s will be retried: %s", job.id, error)
    job.meta["last_error"] = error
    job.save_meta()
    intervals = list(runtime().service.retry_intervals)
    return Retry(max=len(intervals), interval=intervals)


def _finish(job: Job, report: Report, events: Sequence[history.ClientEvent] = ()) -> JobResult:
    """The job's result; a retry when some operation failed transiently; an error when some
    were refused for good. The job's history `events`, with a client job's outcome, are
    written, and its operations counted (metrics and the hourly chart), in one round trip."""
    _count_operations(report)
    client = queueing.client_of(job)
    done = [] if client is None else [(client, history.finished(job.id, report))]
    history.write(
        job.connection,
        [*events, *done],
        runtime().service.history,
        also=lambda pipe: history.count_operations(pipe, report),
    )
    data = report.to_dict()
    if report.ok:
        return data
    job.meta["report"] = data
    job.save_meta()
    if not report.failures:
        raise OperationsFailed(f"deletion guard: {report.guard}")
    first = report.failures[0]
    reason = f"{len(report.failures)} of {len(report.planned)} operations failed, first: "
    reason += f"{first.operation.describe()}: {first.error}"
    if report.retryable:
        return _retry(job, reason)
    raise OperationsFailed(reason)


def _note(job: Job, id_servicio: int, event: history.Event) -> None:
    """Add one event to a client's history."""
    history.write(job.connection, [(id_servicio, event)], runtime().service.history)


def _count_operations(report: Report) -> None:
    """Count a report's BQN writes for the metrics."""
    if report.dry_run:
        return
    for op, failure in report.results():
        result = "ok" if failure is None else "failed"
        TALLY.count("bqn_operations", kind=str(op.kind), action=str(op.action), result=result)
