"""The two passes over every client: the full reconcile, which applies a complete WispHub pass
to the whole BQN, and the poll, which finds the clients that changed and compares the pass
with the BQN (level-triggered: whatever differs is corrected, announced or not)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis, WatchError
from rq import Queue
from rq.job import Job

from worker import defaults
from worker.core import phrases
from worker.core.changes import changed_clients, fingerprints, rows_by_id
from worker.core.desired import Row, client_id, is_own_group
from worker.core.errors import ConfigError, SyncError
from worker.core.guard import allowed_deletions, hold_cancelled, hold_vanished
from worker.core.model import Action
from worker.core.ownership import remembered
from worker.core.plans import Plan
from worker.core.report import Report, merged
from worker.core.targets import DEFAULT_TARGET, address_key, unplaced
from worker.queue import (
    breaker,
    client_index,
    client_overrides,
    failures,
    fanout,
    history,
    liveness,
    locations,
    queueing,
    runs,
    store,
)
from worker.queue.address_book import RedisAddressBook
from worker.queue.catalogue import current_plans, plan_source, plans_renamed
from worker.queue.lifecycle import JobResult
from worker.queue.metrics import TALLY
from worker.queue.runtime import Runtime, keys_of, runtime
from worker.sync import engine
from worker.sync.targets import SelectedClients, Shaper, each_target, mapped_per_selector

log = logging.getLogger(__name__)


def reconcile(job: Job, *, dry_run: bool, force: bool, target: str | None = None) -> JobResult:
    """The full sync: every client from a complete WispHub pass against every target's whole
    BQN (or `target`'s alone), the targets at once.

    `force` lets through the deletions the guard would hold back. Each run (but dry runs) is
    kept for `/api/v1/reconciles`, a failed one too, in the one entry of its job (`_keep`),
    and its operations go to the clients' histories. A target
    that fails is retried on its own (`worker.queue.fanout`).
    """
    redis = job.connection
    rt = runtime()
    lock = store.singleton_lock(redis, "reconcile", defaults.RECONCILE_LOCK_SECONDS)
    if not store.take(lock, job.id):
        holder = redis.get(lock.name)  # the job running, which does this one's work
        running = None if holder is None else holder.decode()
        return {"skipped": phrases.RECONCILE_RUNNING, "running": running}
    started = time.time()
    shapers = fanout.targets_left(job, rt) if target is None else rt.chosen([target])
    if not shapers:
        lock.release()
        raise ConfigError(f"no target named {target!r}")
    try:
        with liveness.kept_alive(lock, store.RECONCILING):
            passed = _full_sync(redis, rt, job.id, shapers, dry_run=dry_run, force=force)
    except SyncError as exc:  # WispHub's pass failed: no client was read
        if not dry_run:
            errors = {shaper.name: exc for shaper in shapers}
            _keep(job, rt, started, report=None, reports={}, errors=errors, stopped=exc)
        raise
    finally:
        liveness.release(lock)
    report, errors = passed.report, passed.errors
    if not dry_run:
        _keep(
            job,
            rt,
            started,
            report=report,
            reports=passed.reports,
            errors=errors,
            stopped=passed.stopped,
        )
    if passed.stopped is not None:
        raise passed.stopped
    if report.guard:
        TALLY.count("deletion_guard_trips", where="reconcile")
    whole = not dry_run and not errors and len(shapers) == len(rt.shapers)
    if whole and not report.guard:
        # the poller's next pass is compared with what this one applied everywhere: a change
        # made while it read WispHub is seen (a first poll would take it as its baseline), and
        # a forced mass removal is not held back poll after poll; a client whose write failed
        # is left out, so that the next poll takes it as changed and syncs it again
        failed = {f.operation.id_servicio for f in report.failures}
        store.save_snapshot(
            redis, {key: print_ for key, print_ in passed.fingerprints.items() if key not in failed}
        )
    if whole and report.ok:
        store.clear_all_failed(redis)  # every target went through: nothing is failing
        failures.resolve_all(job, started)
    queue = Queue(job.origin, connection=redis)
    queueing.request_syncs(queue, passed.touched, "reconcile", rt.service)
    # the clients' histories get the reconcile's writes, not its skips: a client skipped every
    # night would see its history filled with the same line
    events = [] if dry_run else history.report_events(report, job.id)
    writes = [(key, e) for key, e in events if key is not None and e["event"] == "operation"]
    return fanout.finish_on_targets(job, report, passed.reports, errors, writes)


def _keep(
    job: Job,
    rt: Runtime,
    started: float,
    *,
    report: Report | None,
    reports: Mapping[str, Report],
    errors: Mapping[str, SyncError],
    stopped: SyncError | None,
) -> None:
    """Keep this run of a reconcile job for `/api/v1/reconciles` and the status page, in place
    of what its earlier attempts left (`runs.save_reconcile`). `report` is `None` when the
    WispHub pass failed; `stopped`, the error that stopped the whole run."""
    if stopped is not None:
        error: str | None = str(stopped)
    else:
        error = (
            phrases.JOINED.join(
                phrases.ON_TARGET.format(name=name, error=exc) for name, exc in errors.items()
            )
            or None
        )
    entry = runs.reconcile_entry(
        job.id,
        started,
        time.time(),
        report,
        attempt=queueing.attempts(job),
        error=error,
        targets=fanout.per_target(reports, errors),
    )
    runs.save_reconcile(job.connection, entry, rt.service.history.reconcile_reports)


@dataclass(frozen=True)
class Passed:
    """A full sync on some targets: the report of all (each operation naming its target), each
    target's report, the targets that raised, the clients to sync again (those jobs touched
    meanwhile, and those the pass missed), the fingerprints of the pass's clients (the
    poller's), and the error raised when every target failed (kept with the pass's size before
    it is raised)."""

    report: Report
    reports: dict[str, Report]
    errors: dict[str, SyncError]
    touched: list[int]
    fingerprints: dict[int, str]
    stopped: SyncError | None = None


def _full_sync(
    redis: Redis, rt: Runtime, job_id: str, shapers: list[Shaper], *, dry_run: bool, force: bool
) -> Passed:
    """Read one complete WispHub pass, run the full sync on every target at once, and keep
    what each applied."""
    if not dry_run:
        store.begin_reconcile(redis)
    try:
        plans = current_plans(redis, rt, refresh=True)
        read_at = store.now(redis)
        rows = rt.wisphub.list_clients(keep=client_index.keep(rt.settings.wisphub))
        rules = rt.rules(redis)  # with the overrides in force
        if not dry_run:
            client_index.save(redis, rows, read_at)
        mapped = mapped_per_selector(rows, [shaper.selector for shaper in shapers], rules, plans)
        # a dry run writes nothing: no job's state is newer than what it would write
        touched = None if dry_run else store.Touched(redis)

        def work(shaper: Shaper) -> engine.FullSync:
            keys = keys_of(shaper)
            outcome = engine.full_sync(
                mapped[shaper.selector],
                SelectedClients(rt.wisphub, shaper.selector),
                shaper.bqn,
                rules=rules,
                guard=rt.settings.guard,
                last_pass=store.pass_size(redis, keys),
                force=force,
                dry_run=dry_run,
                book=RedisAddressBook(redis, job_id, keys),
                taken=touched,
            )
            # only a pass that went through is the guard's next reference: a dry run, or one
            # the guard stopped (WispHub leaving rows out), would let the next run delete them
            if not dry_run and not outcome.report.guard:
                store.save_pass_size(redis, outcome.report.clients, keys)
            if not dry_run:  # while jobs still note what they touch: those are synced again
                _remember(redis, outcome, keys)
            return outcome

        stopped = None
        try:
            synced, errors = fanout.on_targets(redis, rt.service, shapers, work)
        except SyncError as exc:  # on every target
            synced, errors, stopped = {}, {shaper.name: exc for shaper in shapers}, exc
        # a pass the deletion guard stopped is not one to regroup the clients by, nor to end
        # the overrides of clients it shows cancelled (WispHub may be wrong: the guard says so)
        regroup = [s for s in shapers if s.name in synced and not synced[s.name].report.guard]
        if not dry_run and regroup and len(regroup) == len(shapers):
            client_overrides.end_cancelled(redis, rows, rules.overrides, rt.service)
        located = locations.keep_placed(redis, rt, regroup, rows, compare=True, dry_run=dry_run)
    finally:
        touched = [] if dry_run else store.end_reconcile(redis)
    reports = {name: outcome.report for name, outcome in synced.items()}
    report = merged(reports, clients=len(rows))
    report.notes += _unplaced(rt, rows)
    report.notes += locations.notes(located)
    alive = {key for outcome in synced.values() for key in outcome.alive}
    prints = fingerprints(rows, rules)
    return Passed(report, reports, errors, sorted({*touched, *alive}), prints, stopped)


def _unplaced(rt: Runtime, rows: Sequence[Row]) -> list[str]:
    """A note naming the clients no target takes, if any (never silently dropped)."""
    selectors = {shaper.name: shaper.selector for shaper in rt.shapers}
    found = [key for row in unplaced(rows, selectors) if (key := client_id(row)) is not None]
    if not found:
        return []
    shown = ", ".join(map(str, found[: defaults.RUN_LIST_ITEMS]))
    more = len(found) - defaults.RUN_LIST_ITEMS
    if more > 0:
        shown = phrases.AND_MORE.format(shown=shown, more=more)
    return [phrases.NO_TARGET.format(count=len(found), shown=shown)]


def _remember(redis: Redis, outcome: engine.FullSync, keys: store.TargetKeys) -> None:
    """Keep what a full sync leaves on a target's BQN: every client's footprint and every
    address's claimants, with the claimants of the entries it could not delete kept as they
    were."""
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
                pipe.watch(*keys.remembered)  # a job recording meanwhile: work it out again
                before, touched = store.all_applied(pipe, keys), store.touched(pipe)
                live = [ip for key in touched if key in before for ip in before[key].ips]
                applied, claims = remembered(
                    desired,
                    before,
                    store.claimants(pipe, [*leftover, *live], keys),
                    leftover=leftover,
                    leftover_groups=leftover_groups,
                    touched=touched,
                )
                pipe.multi()
                store.replace_applied(pipe, applied, claims, keys)
                pipe.execute()
                return
            except WatchError:
                continue
    # jobs kept recording: keep what was worked out last; the touched clients are synced
    # again when the reconcile ends, and the poller compares with the BQN
    log.warning("reconcile: jobs kept recording; what they recorded may be synced again")
    with redis.pipeline(transaction=True) as pipe:
        store.replace_applied(pipe, applied, claims, keys)
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
        return {"skipped": phrases.PASS_RECENT.format(age=age)}
    lock = store.singleton_lock(redis, "poll", defaults.POLL_LOCK_SECONDS)
    if not store.take(lock, job.id):
        return {"skipped": phrases.POLL_RUNNING}
    try:
        started, read_at = time.monotonic(), store.now(redis)
        try:
            rows = rt.wisphub.list_clients(keep=client_index.keep(rt.settings.wisphub))
        except SyncError as exc:
            log.warning("poll: WispHub pass failed, snapshot kept: %s", exc)
            runs.save_poll(redis, {"ok": False, "error": str(exc)})
            return {"ok": False, "error": str(exc)}
        client_overrides.end_expired(redis, rt.service)  # if their own job has not yet
        rules = rt.rules(redis)
        seen = fingerprints(rows, rules)
        before = store.snapshot(redis)
        guard = rt.settings.guard
        current, held = (seen, None) if before is None else hold_vanished(before, seen, guard)
        cancelled, by_id = None, rows_by_id(rows)
        if before is not None and held is None:
            current, cancelled = hold_cancelled(before, current, by_id, rules, guard)
        for reason in (held, cancelled):
            if reason:
                log.warning("poll: %s", reason)
                TALLY.count("deletion_guard_trips", where="poll")
        if held is None and cancelled is None:  # a cancellation the guard holds ends nothing
            client_overrides.end_cancelled(redis, rows, rules.overrides, rt.service)
        if held is None:
            for shaper in rt.shapers:
                selected = sum(shaper.selector.matches(row) for row in rows)
                store.save_pass_size(redis, selected, keys_of(shaper))
            client_index.save(redis, rows, read_at)
        changed = [] if before is None else changed_clients(before, current)
        carried = queueing.Carried(read_at, by_id)  # for the syncs it asks for
        queue = Queue(job.origin, connection=redis)
        healing, drifted, queued, located = None, set(), [], None
        # a pass that lost clients is not compared with the BQN, nor regroups the clients; a
        # first or empty one is compared, but removes nothing it finds there
        compares = held is None and store.next_poll_reads_bqn(redis, rt.service.poll_bqn_every)
        if compares:
            guarded = before is None or not rows
            healing, drifted, queued = _heal(redis, rt, queue, rows, carried, guarded=guarded)
        if held is None and cancelled is None and rows:  # nor regroups held clients
            located = locations.keep_placed(redis, rt, rt.shapers, rows, compare=compares)
        queued += queueing.request_syncs(
            queue,
            [key for key in changed if key not in drifted],
            "poll",
            rt.service,
            rows=carried,
        )
        store.save_snapshot(redis, current)
    finally:
        liveness.release(lock)
    # at INFO only when the poll found something: one every POLL_INTERVAL would drown the log
    log.log(
        logging.INFO if changed or queued else logging.DEBUG,
        "poll: %d clients read, %d changed, %d syncs asked for",
        len(seen),
        len(changed),
        len(queued),
    )
    summary = {
        "ok": True,
        "clients": len(seen),
        "first_pass": before is None,
        "changed": len(changed),
        "held_back": held or cancelled,
        "drift": healing,
        "locations": located,
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
    """Compare a complete pass with every target's BQN and correct the drift: policies at
    once, clients and addresses through their jobs (which read WispHub again before acting).
    Returns what was found (added up, and by target), the clients a sync was asked for, and
    their jobs (`carried`: the pass's rows, for them to carry).

    Removals are held back when `guarded` or when there are more than the deletion guard lets
    go at once. An entry nobody was ever seen claiming
    is removed only when a second comparison in a row finds it so, and a client or address
    whose last job failed for good is left in the failures list, not queued again."""
    try:
        if plans_renamed(redis, rt):  # even a plan no client has: names are decided together
            current_plans(redis, rt, refresh=True)
        catalogue = plan_source(redis, rt)(rows)
    except SyncError as exc:
        log.warning("poll: the BQN was not compared: %s", exc)
        return {"error": str(exc)}, set(), []
    found, errors = each_target(
        rt.shapers,
        lambda shaper: _compare(
            redis, rt, queue, shaper, rows=rows, catalogue=catalogue, guarded=guarded
        ),
    )
    by_target = {name: result.summary for name, result in found.items()}
    for name, error in errors.items():
        log.warning("poll: the BQN%s was not compared: %s", _of(name), error)
        by_target[name] = {"error": str(error)}
    compared = list(found.values())
    wanted = sorted({key for result in compared for key in result.clients})
    failing = store.failed(redis, [store.pending_key(key) for key in wanted])
    clients = [key for key in wanted if store.pending_key(key) not in failing]
    queued = queueing.request_syncs(queue, clients, "drift", rt.service, rows=carried)
    if corrected := sum(not item.coalesced for item in queued):
        TALLY.count("drift_corrected", corrected, kind="client")
    if not compared:
        first = next(iter(by_target.values()))
        return {**first, "targets": by_target}, set(), []
    summary = {
        "clients": sum(result.summary["clients"] for result in compared),
        "addresses": sum(result.summary["addresses"] for result in compared),
        "policies": sum(result.summary["policies"] for result in compared),
        "held_back": "; ".join(held for r in compared if (held := r.summary["held_back"])) or None,
        "policy_failures": [f for r in compared for f in r.summary["policy_failures"]],
        "targets": by_target,
    }
    return summary, set(clients), queued


@dataclass(frozen=True)
class Compared:
    """A target's BQN compared with the pass: what was found, and the clients to sync."""

    summary: dict[str, Any]
    clients: list[int]


def _compare(
    redis: Redis,
    rt: Runtime,
    queue: Queue,
    shaper: Shaper,
    *,
    rows: Sequence[Row],
    catalogue: Sequence[Plan],
    guarded: bool,
) -> Compared:
    """Compare one target's BQN with the clients of the pass it takes; correct its policies,
    queue its address jobs, and return the clients to sync."""
    keys = keys_of(shaper)
    breaker.check(redis, keys, shaper.name)  # a BQN that keeps failing holds no poll back
    selected = [row for row in rows if shaper.selector.matches(row)]
    found = engine.drift(shaper.bqn, rt.rules(redis), catalogue, selected)
    claimed = store.claimants(redis, found.addresses, keys)
    unclaimed = [ip for ip in found.addresses if ip not in claimed]
    seen_before = store.swap_unclaimed(redis, unclaimed, keys)
    addresses = [ip for ip in found.addresses if ip in claimed or ip in seen_before]
    gone, held = list(found.gone), None
    limit = allowed_deletions(rt.settings.guard, max(len(selected), 1))
    if found.removals and (guarded or found.removals > limit):
        held = phrases.ENTRIES_LEFT.format(count=found.removals)
        log.warning("poll: %s%s", held, _of(shaper.name))
        TALLY.count("deletion_guard_trips", where="poll")
        addresses, gone = [], []
    policies = engine.correct_policies(shaper.bqn, found.policies) if found.policies else None
    address_keys = [address_key(ip, shaper.name) for ip in addresses]
    failing = store.failed(redis, [store.pending_address_key(key) for key in address_keys])
    by_address = [
        queueing.enqueue_address_sync(queue, ip, shaper.name)
        for ip, key in zip(addresses, address_keys, strict=True)
        if store.pending_address_key(key) not in failing
    ]
    corrected = {
        "address": sum(not item.coalesced for item in by_address),
        "policy": 0 if policies is None else len(policies.planned) - len(policies.failures),
    }
    for kind, amount in corrected.items():
        if amount:
            TALLY.count("drift_corrected", amount, kind=kind)
    if found:
        log.info(
            "poll: the BQN%s differed from WispHub: %d clients, %d addresses, %d policies",
            _of(shaper.name),
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
    return Compared(summary, [*found.clients, *gone])


def _of(target: str) -> str:
    """` of target X` in a log line, but for the one `default` target."""
    return "" if target == DEFAULT_TARGET else f" of target {target}"
