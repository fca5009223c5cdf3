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
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, wraps
from typing import Any, Concatenate, ParamSpec

from redis import Redis, WatchError
from rq import Queue, Retry, get_current_job
from rq.job import Job

from worker import engine, history, queueing, runs, store
from worker.bqn import BqnClient
from worker.changes import changed_clients, fingerprint, fingerprints
from worker.desired import Desired, Entries
from worker.errors import SyncError, TransientError
from worker.guard import hold_vanished
from worker.metrics import TALLY
from worker.model import Footprint, Subscriber
from worker.overrides import load_overrides
from worker.plans import Plan
from worker.policy_cache import PolicyCache
from worker.report import Report
from worker.settings import GuardLimits, MappingRules, ServiceSettings, Settings
from worker.wisphub import WispHubClient

log = logging.getLogger(__name__)

P = ParamSpec("P")
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
    kept for a worker that dies mid-job). A client job's start, retries and failure go to the
    client's history; every job's outcome and API calls go to the metrics."""

    @wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> JobResult:
        job = _current_job()
        attempt = int(job.meta.get("attempts", 0)) + 1
        job.meta["attempts"] = attempt
        job.save_meta()
        client = queueing.client_of(job)
        if client is not None:
            _note(job, client, history.started(job.id, attempt))
        outcome = "failed"
        try:
            try:
                result = func(job, *args, **kwargs)
            except TransientError as exc:
                result = _retry(job, str(exc))
            outcome = "retried" if isinstance(result, Retry) else "succeeded"
            if client is not None and isinstance(result, Retry):
                _note(job, client, history.retrying(job.id, job.meta.get("last_error", "")))
            return result
        except SyncError as exc:
            job.retries_left = 0
            if client is not None:
                _note(job, client, history.failed(job.id, str(exc)))
            raise
        except Exception as exc:  # a bug or an outage of Redis: RQ's own retries apply
            if client is not None:
                _note(job, client, history.failed(job.id, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            TALLY.count("jobs", job=func.__name__, outcome=outcome)
            TALLY.flush(job.connection)

    return run


@rq_job
def sync_client(job: Job, id_servicio: int) -> JobResult:
    """Re-read one client from WispHub and bring its BQN entries in line."""
    redis = job.connection
    _release_claim(redis, id_servicio, job.id)
    rt = runtime()
    lock = store.client_lock(redis, id_servicio)
    if not store.take(lock, job.id):
        return _retry(job, f"client {id_servicio} stayed locked by another job")
    try:
        previous = store.last_applied(redis, id_servicio)
        outcome = engine.sync_client(
            id_servicio,
            rt.wisphub,
            rt.bqn,
            rt.rules,
            plan_lookup(redis, rt),
            previous=previous,
            owners=lambda ips: store.ip_owners(redis, ips),
            policies=rt.policies,
        )
        store.remember(redis, id_servicio, outcome.current, before=previous)
        store.note_touched(redis, id_servicio)
        if outcome.report.ok:
            seen = None if outcome.row is None else fingerprint(outcome.row, rt.rules)
            store.record_fingerprint(redis, id_servicio, seen)
        events = [history.read_from_wisphub(job.id, outcome.row)]
        events += [event for _, event in history.report_events(outcome.report, job.id)]
        return _finish(job, outcome.report, [(id_servicio, event) for event in events])
    finally:
        lock.release()


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
        report, touched = _reconcile(redis, rt, dry_run=dry_run, force=force)
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
    queue = Queue(job.origin, connection=redis)
    queueing.request_syncs(queue, touched, "reconcile", rt.service.history)
    # the clients' histories get the reconcile's writes, not its skips: a client skipped every
    # night would see its history filled with the same line
    events = [] if dry_run else history.report_events(report, job.id)
    writes = [(key, e) for key, e in events if key is not None and e["event"] == "operation"]
    return _finish(job, report, writes)


def _reconcile(
    redis: Redis, rt: Runtime, *, dry_run: bool, force: bool
) -> tuple[Report, list[int]]:
    """Run the full sync and keep what it applied; return its report and the clients that
    per-client jobs touched meanwhile (to sync again)."""
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
        )
        store.save_pass_size(redis, outcome.report.clients)
    finally:
        touched = [] if dry_run else store.end_reconcile(redis)
    if not dry_run:
        store.replace_applied(redis, _remembered(outcome.desired, store.all_applied(redis)))
    return outcome.report, touched


@rq_job
def sync_plans(job: Job) -> JobResult:
    """Read the plan catalogue again and put every plan's rate policy in place on the BQN."""
    rt = runtime()
    plans = current_plans(job.connection, rt, refresh=True)
    return _finish(job, engine.sync_policies(rt.bqn, rt.rules, plans))


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


def plan_lookup(redis: Redis, rt: Runtime) -> engine.PlanLookup:
    """Plans by id from the kept catalogue, read again when a client names a plan it lacks.
    A plan still missing after that is not looked for again for a minute, so a plan WispHub
    does not list costs one catalogue read a minute, not one per job."""
    plans = {plan.id: plan for plan in current_plans(redis, rt, refresh=False)}

    def lookup(plan_id: int) -> Plan | None:
        if plan_id not in plans and store.may_look_for_plan(redis, plan_id):
            plans.update({plan.id: plan for plan in current_plans(redis, rt, refresh=True)})
        return plans.get(plan_id)

    return lookup


@rq_job
def poll_changes(job: Job) -> JobResult:
    """Read the whole client list and queue a sync for every client that changed.

    The first pass only records the snapshot; a failed or partial pass changes nothing. Polls
    that pile up behind busy workers are skipped when a recent pass exists.
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
        queued = queueing.request_syncs(queue, changed, "poll", rt.service.history)
        store.save_snapshot(redis, current)
    finally:
        lock.release()
    log.info("poll: %d clients, %d changed", len(seen), len(changed))
    summary = {
        "ok": True,
        "clients": len(seen),
        "first_pass": before is None,
        "changed": len(changed),
        "held_back": held,
        "seconds": round(time.monotonic() - started, 3),
    }
    runs.save_poll(redis, summary)
    return {**summary, "changed": changed, "jobs": [item.job_id for item in queued]}


def _current_job() -> Job:
    job = get_current_job()
    if job is None:
        raise RuntimeError("this function runs as an RQ job")
    return job


def _release_claim(redis: Redis, id_servicio: int, job_id: str) -> None:
    """Let the next request for this client queue a follow-up (only if the claim is ours)."""
    key = store.pending_key(id_servicio)
    with redis.pipeline() as pipe:
        try:
            pipe.watch(key)
            if pipe.get(key) == job_id.encode():
                pipe.multi()
                pipe.delete(key)
                pipe.execute()
        except WatchError:  # a newer claim was made meanwhile: it stays
            log.debug("claim of client %s changed while releasing it", id_servicio)


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


def _remembered(desired: Desired, before: dict[int, Footprint]) -> dict[int, Footprint]:
    """What is applied after a full reconcile: the desired entries, plus the previous ones of
    clients whose state could not be read (their BQN entries were left as they were)."""
    subscribers: dict[int, list[Subscriber]] = defaultdict(list)
    for sub in desired.subscribers.values():
        if sub.id_servicio is not None:
            subscribers[sub.id_servicio].append(sub)
    groups = {g.id_servicio: g for g in desired.groups.values() if g.id_servicio is not None}
    applied = {}
    for key in subscribers.keys() | groups.keys():
        entries = Entries(tuple(subscribers.get(key, ())), groups.get(key))
        if (footprint := engine.footprint(entries)) is not None:
            applied[key] = footprint
    for skip in desired.skips:
        if skip.kept and skip.id_servicio in before:
            applied[skip.id_servicio] = before[skip.id_servicio]
    return applied
