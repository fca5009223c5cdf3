"""A job's work on every target (BQN): the targets at once, each one's failure kept to
itself.

A job's meta names the targets its last run did not settle (`TARGETS_LEFT`): a target whose
BQN is down or refusing gets its retry (or its failure) while the writes to the others go
through at once. A reconcile's or a plan sync's retry does those targets only; a client, batch
or address job's retry does every target again, because a request that joined it while it
waited may have changed its clients, and that change is owed to every target (a down target's
breaker keeps it cheap). The next reconcile, level-triggered, catches up with any target whose
retries were spent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import Redis
from rq.exceptions import DeserializationError
from rq.job import Job

from worker import defaults
from worker.clients.bqn import SERVICE as BQN
from worker.core.desired import Row
from worker.core.errors import SyncError, Unavailable
from worker.core.model import Footprint
from worker.core.report import Report, merged
from worker.core.rules import MappingRules
from worker.core.targets import split_address_key
from worker.queue import breaker, client_overrides, history, queueing, store
from worker.queue.address_book import RedisAddressBook
from worker.queue.catalogue import plan_source
from worker.queue.lifecycle import JobResult, finish
from worker.queue.runtime import Runtime, keys_of, runtime
from worker.settings import ServiceSettings
from worker.sync import engine
from worker.sync.targets import SelectedClients, Shaper, each_target, unless_all_failed

T = TypeVar("T")

# Job meta: the names of the targets a retry still has to do.
TARGETS_LEFT = "targets_left"


def targets_left(job: Job, rt: Runtime) -> list[Shaper]:
    """The targets a reconcile's or plan sync's run works on: those its last run did not
    settle that are still configured, else every one."""
    return rt.chosen(job.meta.get(TARGETS_LEFT)) or list(rt.shapers)


def targets_owed(job: Job, names: Sequence[str]) -> list[str]:
    """The targets of `names` a failed job still owes its work: those its meta lists as left
    to do; else the one target of an address job or of a one-target reconcile; else every
    one."""
    left = job.meta.get(TARGETS_LEFT)
    if left:
        return [name for name in names if name in left]
    try:
        func_name, args, kwargs = job.func_name, job.args, job.kwargs
    except DeserializationError:
        return list(names)
    only = None
    if func_name == queueing.SYNC_ADDRESS.path and args:
        only = split_address_key(str(args[0]))[1]
    elif func_name == queueing.RECONCILE.path:
        only = kwargs.get("target")
    return [name for name in names if only is None or name == only]


def note_targets_left(
    job: Job, reports: Mapping[str, Report], errors: Mapping[str, SyncError]
) -> None:
    """Keep in the job's meta the targets its run did not settle: those that raised, and those
    with a failed operation or a tripped deletion guard (saved with the job's next meta
    write)."""
    left = sorted({*errors, *(name for name, report in reports.items() if not report.ok)})
    job.meta[TARGETS_LEFT] = left or None


def per_target(
    reports: Mapping[str, Report], errors: Mapping[str, SyncError]
) -> dict[str, dict[str, Any]]:
    """What the job did on each target, for its result."""
    done: dict[str, dict[str, Any]] = {
        name: {"ok": report.ok, **report.counts()} for name, report in reports.items()
    }
    done.update({name: {"ok": False, "error": str(error)} for name, error in errors.items()})
    return done


def with_targets(
    result: JobResult, reports: Mapping[str, Report], errors: Mapping[str, SyncError]
) -> JobResult:
    """A job's result with what it did on each target (a retry stays as it is)."""
    if isinstance(result, dict):
        return {**result, "targets": per_target(reports, errors)}
    return result


def finish_on_targets(
    job: Job,
    report: Report,
    reports: Mapping[str, Report],
    errors: Mapping[str, SyncError],
    events: Sequence[history.ClientEvent] = (),
    **options: Any,
) -> JobResult:
    """`finish` for work done on several targets: the targets the run did not settle noted,
    a retry or a failure for those it could not reach, and what it did on each in the
    result."""
    note_targets_left(job, reports, errors)
    result = finish(job, report, events, unreached=errors, **options)
    return with_targets(result, reports, errors)


def on_targets(
    redis: Redis, service: ServiceSettings, shapers: Sequence[Shaper], work: Callable[[Shaper], T]
) -> tuple[dict[str, T], dict[str, SyncError]]:
    """`work` on every target at once, but those whose breaker is open
    (`worker.queue.breaker`): what it returned for each, and the errors of those it raised
    for. When it raised for every target, the first error is raised (as a single BQN's would
    be)."""
    limits = {"failures": service.breaker_failures, "open_seconds": service.breaker_open_seconds}

    def guarded(shaper: Shaper) -> T:
        keys = keys_of(shaper)
        breaker.check(redis, keys, shaper.name)
        try:
            done = work(shaper)
        except Unavailable as exc:
            if exc.service == BQN:  # not WispHub's, nor a lock another job held
                breaker.record(redis, keys, str(exc), **limits)
            raise
        breaker.record(redis, keys, None, **limits)
        return done

    return unless_all_failed(*each_target(shapers, guarded))


@dataclass(frozen=True)
class ClientsOnTargets:
    """Some clients synced on several targets: one sync as a single target's would be (the
    reports merged, each operation naming its target; the rows as WispHub answered; each
    client's addresses on any target), the targets that raised, what was last applied on
    each target before, and the rules they were mapped by (the overrides in force)."""

    sync: engine.ClientsSync
    errors: dict[str, SyncError]
    reports: dict[str, Report]
    previous: dict[int, Footprint | None]
    rules: MappingRules


def sync_clients(
    job: Job,
    ids: Sequence[int],
    *,
    rows: Mapping[int, Row] | None = None,
    lock_seconds: int = defaults.ADDRESS_LOCK_SECONDS,
) -> ClientsOnTargets:
    """Bring some clients in line on every target: each client is read from WispHub once (but
    those whose `rows` a complete pass read), then every target settles it as
    `engine.sync_clients` does, all at once. When every target raised, the first error is
    raised (as a single BQN's would be)."""
    redis = job.connection
    rt = runtime()
    rules = rt.rules(redis)
    shapers = list(rt.shapers)
    given: dict[int, Row | None] = dict(rows or {})
    unread: dict[int, SyncError] = {}
    if not rt.one_for_all:  # read once, for every target
        read, unread = engine.read_clients(rt.wisphub, [key for key in ids if key not in given])
        given.update(read)
    wanted = [key for key in ids if key not in unread]
    befores = store.touch(redis, wanted, [keys_of(shaper) for shaper in shapers])
    before = {shaper.name: found for shaper, found in zip(shapers, befores, strict=True)}
    views = {s.name: SelectedClients(rt.wisphub, s.selector, rows=given) for s in shapers}

    def work(shaper: Shaper) -> engine.ClientsSync:
        book = RedisAddressBook(redis, job.id, keys_of(shaper), seconds=lock_seconds)
        return engine.sync_clients(
            wanted,
            views[shaper.name],
            shaper.bqn,
            rules,
            plan_source(redis, rt),
            previous=before[shaper.name],
            book=book,
            policies=shaper.policies,
        )

    synced, errors = on_targets(redis, rt.service, shapers, work)
    reports = {name: found.report for name, found in synced.items()}
    as_read = {**given, **{k: v for view in views.values() for k, v in view.fetched.items()}}
    for found in synced.values():
        unread.update(found.unread)
    client_overrides.end_cancelled(redis, as_read.values(), rules.overrides, rt.service)
    sync = engine.ClientsSync(
        report=merged(reports, clients=len(wanted)),
        rows={key: as_read.get(key) for found in synced.values() for key in found.rows},
        current=_anywhere([found.current for found in synced.values()]),
        unread=unread,
    )
    return ClientsOnTargets(sync, errors, reports, _anywhere(list(before.values())), rules)


def _anywhere(footprints: Sequence[Mapping[int, Footprint | None]]) -> dict[int, Footprint | None]:
    """Each client's footprints on every target as one: the addresses and group it has (or
    had) on any of them, to name the client an operation was for."""
    found: dict[int, Footprint | None] = {}
    for by_client in footprints:
        for key, footprint in by_client.items():
            have = found.get(key)
            if footprint is None or have is None:
                found[key] = have or footprint
                continue
            ips = tuple(dict.fromkeys((*have.ips, *footprint.ips)))
            found[key] = Footprint(have.subscriber_id, ips, have.group or footprint.group)
    return found
