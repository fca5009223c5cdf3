"""The two passes over every client: the full reconcile, which applies a complete WispHub pass
to the whole BQN, and the poll, which finds the clients that changed and compares the pass
with the BQN (level-triggered: whatever differs is corrected, announced or not)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from redis import Redis, WatchError
from rq import Queue
from rq.job import Job

from worker import defaults
from worker.core.changes import changed_clients, fingerprints, rows_by_id
from worker.core.desired import Row, is_own_group
from worker.core.errors import SyncError
from worker.core.guard import allowed_deletions, hold_vanished
from worker.core.model import Action
from worker.core.ownership import remembered
from worker.core.report import Report
from worker.queue import history, queueing, runs, store
from worker.queue.address_book import RedisAddressBook
from worker.queue.catalogue import current_plans, plan_source, plans_renamed
from worker.queue.lifecycle import JobResult, finish
from worker.queue.metrics import TALLY
from worker.queue.runtime import Runtime, runtime
from worker.sync import engine

log = logging.getLogger(__name__)


def reconcile(job: Job, *, dry_run: bool, force: bool) -> JobResult:
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
        report, touched = _full_sync(redis, rt, job.id, dry_run=dry_run, force=force)
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
    queueing.request_syncs(queue, touched, "reconcile", rt.service)
    # the clients' histories get the reconcile's writes, not its skips: a client skipped every
    # night would see its history filled with the same line
    events = [] if dry_run else history.report_events(report, job.id)
    writes = [(key, e) for key, e in events if key is not None and e["event"] == "operation"]
    return finish(job, report, writes)


def _full_sync(
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
            rt.settings.rules,
            plans,
            guard=rt.settings.guard,
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
    for _ in range(defaults.REMEMBER_ATTEMPTS):
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


def poll(job: Job) -> JobResult:
    """Read the whole client list, queue a sync for every client that changed, and compare
    the pass with the BQN itself (every `POLL_BQN_EVERY` passes): whatever differs is
    corrected, whether or not anyone announced it (see `worker.core.drift`).

    A failed or partial pass changes nothing. Polls that pile up behind busy workers are
    skipped when a recent pass exists.
    """
    redis = job.connection
    rt = runtime()
    age = store.snapshot_age(redis)
    if age is not None and age < rt.service.poll_interval / 2:
        return {"skipped": f"a pass completed {age:.0f} s ago"}
    lock = store.singleton_lock(redis, "poll", defaults.POLL_LOCK_SECONDS)
    if not store.take(lock, job.id):
        return {"skipped": "another poll is running"}
    try:
        started, read_at = time.monotonic(), store.now(redis)
        try:
            rows = rt.wisphub.list_clients()
        except SyncError as exc:
            log.warning("poll: WispHub pass failed, snapshot kept: %s", exc)
            runs.save_poll(redis, {"ok": False, "error": str(exc)})
            return {"ok": False, "error": str(exc)}
        seen = fingerprints(rows, rt.settings.rules)
        before = store.snapshot(redis)
        guard = rt.settings.guard
        current, held = (seen, None) if before is None else hold_vanished(before, seen, guard)
        if held:
            log.warning("poll: %s", held)
            TALLY.count("deletion_guard_trips", where="poll")
        else:
            store.save_pass_size(redis, len(rows))
        changed = [] if before is None else changed_clients(before, current)
        carried = queueing.Carried(read_at, rows_by_id(rows))  # for the syncs it asks for
        queue = Queue(job.origin, connection=redis)
        healing, drifted, queued = None, set(), []
        # a pass that lost clients is not compared with the BQN; a first or empty one is, but
        # removes nothing it finds there
        if held is None and store.next_poll_reads_bqn(redis, rt.service.poll_bqn_every):
            guarded = before is None or not rows
            healing, drifted, queued = _heal(redis, rt, queue, rows, carried, guarded=guarded)
        queued += queueing.request_syncs(
            queue,
            [key for key in changed if key not in drifted],
            "poll",
            rt.service,
            rows=carried,
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
    redis: Redis,
    rt: Runtime,
    queue: Queue,
    rows: Sequence[Row],
    carried: queueing.Carried,
    *,
    guarded: bool,
) -> tuple[dict[str, Any], set[int], list[queueing.Queued]]:
    """Compare a complete pass with the BQN and correct the drift: policies at once, clients
    and addresses through their jobs (which read WispHub again before acting). Returns what
    was found, the clients a sync was asked for, and their jobs (`carried`: the pass's rows,
    for them to carry).

    Removals are held back when `guarded` or when there are more than the deletion guard lets
    go at once. An entry nobody was ever seen claiming
    is removed only when a second comparison in a row finds it so, and a client or address
    whose last job failed for good is left in the failures list, not queued again."""
    try:
        if plans_renamed(redis, rt):  # even a plan no client has: names are decided together
            current_plans(redis, rt, refresh=True)
        found = engine.drift(rt.bqn, rt.settings.rules, plan_source(redis, rt)(rows), rows)
    except SyncError as exc:
        log.warning("poll: the BQN was not compared: %s", exc)
        return {"error": str(exc)}, set(), []
    claimed = store.claimants(redis, found.addresses)
    unclaimed = [ip for ip in found.addresses if ip not in claimed]
    seen_before = store.swap_unclaimed(redis, unclaimed)
    addresses = [ip for ip in found.addresses if ip in claimed or ip in seen_before]
    gone, held = list(found.gone), None
    limit = allowed_deletions(rt.settings.guard, max(len(rows), 1))
    if found.removals and (guarded or found.removals > limit):
        held = f"{found.removals} BQN entries no client of the pass claims were left as they are"
        log.warning("poll: %s", held)
        TALLY.count("deletion_guard_trips", where="poll")
        addresses, gone = [], []
    policies = engine.correct_policies(rt.bqn, found.policies) if found.policies else None
    failing = store.failed(redis, [store.pending_key(key) for key in (*found.clients, *gone)])
    clients = [key for key in (*found.clients, *gone) if store.pending_key(key) not in failing]
    queued = queueing.request_syncs(queue, clients, "drift", rt.service, rows=carried)
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
