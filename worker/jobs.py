"""The jobs RQ runs, at the paths it keeps in Redis.

RQ stores each job's function as a dotted path (`worker.jobs.sync_client`), so these paths are
data: a job queued or failed before an upgrade must find its function after it, and during a
rolling upgrade a worker of either release must run the jobs the other queued. The functions
stay here under these names; what they do is in `worker.queue` and `worker.sync`.
"""

from __future__ import annotations

import time

from rq import Queue
from rq.job import Job

from worker import defaults
from worker.core.changes import fingerprint
from worker.core.errors import SyncError
from worker.queue import history, passes, queueing, runs, store
from worker.queue.address_book import RedisAddressBook
from worker.queue.catalogue import current_plans, plan_source
from worker.queue.lifecycle import JobResult, finish, retry, rq_job
from worker.queue.metrics import TALLY
from worker.queue.runtime import runtime
from worker.sync import engine


@rq_job
def sync_client(job: Job, id_servicio: int) -> JobResult:
    """Re-read one client from WispHub and bring the addresses it has or had in line."""
    redis = job.connection
    rt = runtime()
    lock = store.client_lock(redis, id_servicio)
    if not store.take(lock, job.id):
        return retry(job, f"client {id_servicio} stayed locked by another job")
    try:
        store.note_touched(redis, id_servicio)  # before it records: a reconcile keeps that
        outcome = engine.sync_client(
            id_servicio,
            rt.wisphub,
            rt.bqn,
            rt.settings.rules,
            plan_source(redis, rt),
            previous=store.last_applied(redis, id_servicio),
            book=RedisAddressBook(redis, job.id),
            policies=rt.policies,
        )
        if outcome.report.ok:
            seen = None if outcome.row is None else fingerprint(outcome.row, rt.settings.rules)
            store.record_fingerprint(redis, id_servicio, seen)
        events = [history.read_from_wisphub(job.id, outcome.row)]
        events += [event for _, event in history.report_events(outcome.report, job.id)]
        return finish(job, outcome.report, [(id_servicio, event) for event in events])
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
        rt.settings.rules,
        plan_source(redis, rt),
        book=RedisAddressBook(redis, job.id),
        policies=rt.policies,
    )
    events = history.report_events(report, job.id)
    return finish(job, report, [(key, e) for key, e in events if key is not None])


@rq_job
def reconcile(job: Job, dry_run: bool = False, force: bool = False) -> JobResult:
    """The full sync: every client from a complete WispHub pass against the whole BQN.

    `force` lets through the deletions the guard would hold back. Each run (but dry runs) is
    kept for `/api/v1/reconciles`, and its operations go to the clients' histories.
    """
    redis = job.connection
    rt = runtime()
    lock = store.singleton_lock(redis, "reconcile", defaults.RECONCILE_LOCK_SECONDS)
    if not store.take(lock, job.id):
        return {"skipped": "another reconcile is running"}
    started = time.time()
    try:
        report, touched = passes.reconcile(redis, rt, job.id, dry_run=dry_run, force=force)
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
    return finish(job, report, writes)


@rq_job
def sync_plans(job: Job) -> JobResult:
    """Read the plan catalogue again and put every plan's rate policy in place on the BQN."""
    rt = runtime()
    plans = current_plans(job.connection, rt, refresh=True)
    report = engine.sync_policies(rt.bqn, rt.settings.rules, plans)
    if report.ok and report.planned:  # a policy was put right: its clients may go through now
        store.clear_all_failed(job.connection)
    return finish(job, report)


@rq_job
def poll_changes(job: Job) -> JobResult:
    """Read the whole client list, queue a sync for every client that changed, and compare
    the pass with the BQN (`worker.queue.passes.poll`)."""
    return passes.poll(job)
