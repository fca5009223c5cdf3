"""Batch jobs: many clients brought in line as one plan (`worker.jobs.sync_clients`).

A request naming many clients (a poll pass, a notification with many ids, a reconcile's
follow-ups) queues batches instead of a job per client (`worker.queue.queueing`). A batch keeps
each guarantee of the client job, client by client:

- claims: a request while the batch waits coalesces into it (and drops the client's carried
  row, so that the client is read again); the batch clears its claims as it starts, so a request
  while it runs queues exactly one follow-up; a client whose claim another waiting job took is
  left to that job;
- the client locks are the client job's: a client another job is applying as the batch starts is
  retried later with the batch's other unsettled clients;
- the rows the poller's complete pass read are used as they are, unless a job has read the client
  since; every other client is read from WispHub again, and addresses follow
  `worker.core.ownership` as in a client job;
- each client's history gets its read, its operations (its old addresses' deletions included)
  and its own outcome;
- only the clients not settled are retried (`UNSETTLED` in the job's meta), and when only
  refusals are left the job fails, listed and requeueable, naming them;
- the clients it settled resolve the earlier failures that owed them
  (`worker.queue.failures`), as a client job's success does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline
from rq import Retry
from rq.job import Job

from worker import defaults
from worker.core.changes import fingerprint
from worker.core.desired import Row
from worker.core.errors import TransientError
from worker.core.model import Footprint, Kind, Operation
from worker.core.rules import MappingRules
from worker.queue import failures, fanout, history, queueing, store
from worker.queue.lifecycle import JobResult, OperationsFailed, finish, retry
from worker.queue.runtime import runtime
from worker.sync import engine

# Why a client the batch could not take waits for its retry.
LOCKED_ELSEWHERE = "another job was applying it"


@dataclass(frozen=True)
class Start:
    """What a batch finds as it starts: its clients, those another waiting job will do
    instead (with that job), and the rows it carries."""

    mine: list[int]
    deferred_to: dict[int, str]
    carried: queueing.Carried


def begin(redis: Redis, job: Job, ids: Sequence[int]) -> Start:
    """Clear the batch's claims and take the rows it carries, in one round trip."""
    holders, carried = queueing.begin(redis, job.id, [store.pending_key(key) for key in ids])
    deferred_to = {key: other for key, other in zip(ids, holders, strict=True) if other}
    mine = [key for key in ids if key not in deferred_to]
    return Start(mine, deferred_to, carried)


def run(job: Job, ids: Sequence[int]) -> JobResult:
    """Bring a batch's clients in line (on a retry, those it left unsettled)."""
    redis = job.connection
    rt = runtime()
    start = begin(redis, job, queueing.unsettled(job) or [int(key) for key in ids])
    job.meta[queueing.UNSETTLED] = start.mine  # until it knows better
    if start.deferred_to:  # named so far, perhaps: they take no place in the history index
        events = [(key, history.superseded(job.id, by)) for key, by in start.deferred_to.items()]
        history.write(redis, events, rt.service.history, known=False)
    seconds = defaults.CLIENT_LOCK_SECONDS  # its locks, renewed by its heartbeat
    taken = store.take_client_locks(redis, start.mine, job.id, seconds)
    locked_elsewhere = sorted(set(start.mine) - set(taken))
    try:
        rows = _fresh(redis, start.carried, taken)
        try:
            done = fanout.sync_clients(job, taken, rows=rows, lock_seconds=seconds)
        except TransientError as exc:
            return _retry_unsettled(job, start.mine, retry(job, str(exc)))
        fanout.note_targets_left(job, done.reports, done.errors)
        result = _finish(job, done, rows, locked_elsewhere)
        if isinstance(result, Retry):
            return result
        return fanout.with_targets(
            {**result, "deferred": start.deferred_to}, done.reports, done.errors
        )
    finally:
        store.release_locks(redis, [store.client_lock_key(key) for key in taken], job.id)


def _fresh(redis: Redis, carried: queueing.Carried, taken: list[int]) -> dict[int, Row]:
    """The carried rows of the clients taken, but those a job read after the pass did (a
    notification's job applied a newer state: the batch reads those again)."""
    wanted = [key for key in taken if key in carried.rows]
    newer = store.read_after(redis, wanted, carried.read_at)
    return {key: carried.rows[key] for key in wanted if key not in newer}


def _finish(
    job: Job,
    done: fanout.ClientsOnTargets,
    carried: Mapping[int, Row],
    locked_elsewhere: list[int],
) -> JobResult:
    """Record what the batch settled and each client's history; retry the rest: those an
    operation failed for, those not read, those another job was applying (and every client,
    on a target that could not be reached)."""
    outcome, previous = done.sync, done.previous
    owners = _owners(previous, outcome.current)
    failed = {
        _owner(failure.operation, owners)
        for failure in outcome.report.failures
        if failure.operation.kind is not Kind.POLICY  # its clients' entries failed with it
    }
    if None in failed or done.errors:  # no client to name: every client tries again
        failed = set(outcome.rows)
    unsettled = sorted(failed | outcome.unread.keys() | set(locked_elsewhere))
    job.meta[queueing.UNSETTLED] = unsettled
    clients = [*outcome.rows, *outcome.unread]
    planned = {op.id_servicio for op in outcome.report.planned}
    known = [key for key in clients if key in planned or _known(key, outcome, previous)]
    for key in set(clients) - set(known):
        history.forget(job.connection, key)
    settled = [key for key in outcome.rows if key not in unsettled]
    read = [key for key in outcome.rows if key not in carried]

    def record(pipe: Pipeline) -> None:
        store.note_read(pipe, read)
        _record_settled(pipe, outcome, settled, done.rules)

    events = _client_events(job.id, outcome, known, owners)
    events += [(key, history.retrying(job.id, LOCKED_ELSEWHERE)) for key in locked_elsewhere]
    waiting = len(outcome.unread) + len(locked_elsewhere)
    try:
        result = finish(job, outcome.report, events, also=record, unreached=done.errors)
    except OperationsFailed:
        if not waiting:
            raise
        result = None  # the refused ones fail once those still to read have been tried
    finally:  # those settled went through, whatever became of the others
        failures.went_through(job, [failures.client_debt(key) for key in settled])
    if isinstance(result, Retry):
        return _retry_unsettled(job, unsettled, result)
    if result is None or waiting:
        return _retry_unsettled(job, unsettled, retry(job, _why(outcome, locked_elsewhere)))
    return result


def _why(outcome: engine.ClientsSync, locked_elsewhere: list[int]) -> str:
    """Why a batch that applied what it could runs again."""
    reasons = []
    if outcome.unread:
        key, error = next(iter(outcome.unread.items()))
        reasons.append(f"{len(outcome.unread)} clients not read (client {key}: {error})")
    if locked_elsewhere:
        reasons.append(f"{len(locked_elsewhere)} clients being applied by another job")
    return "; ".join(reasons)


def _retry_unsettled(job: Job, unsettled: list[int], result: Retry) -> JobResult:
    """Retry the clients the batch could not settle, taking their claims back, unless other
    waiting jobs have them (those do the work instead)."""
    claims = [store.pending_key(key) for key in unsettled]
    others = dict(zip(unsettled, queueing.reclaim(job.connection, job.id, claims), strict=True))
    left = [key for key in unsettled if others[key] is None]
    job.meta[queueing.UNSETTLED] = left
    job.save_meta()
    if not left:
        return {"deferred": {key: other for key, other in others.items() if other}}
    return result


def _owners(
    previous: Mapping[int, Footprint | None], current: Mapping[int, Footprint | None]
) -> dict[str, int]:
    """Each address and group the batch's clients had or have, with the client."""
    found: dict[str, int] = {}
    for footprints in (previous, current):
        for key, footprint in footprints.items():
            if footprint is not None:
                found.update(dict.fromkeys(footprint.ips, key))
                if footprint.group:
                    found[footprint.group] = key
    return found


def _owner(op: Operation, owners: Mapping[str, int]) -> int | None:
    """The client an operation was for: named, or the one that had its address or group."""
    return op.id_servicio if op.id_servicio is not None else owners.get(op.key)


def _known(key: int, outcome: engine.ClientsSync, previous: Mapping[int, Footprint | None]) -> bool:
    """Whether WispHub or the BQN has the client, as far as the batch knows (else it keeps no
    history; one with an operation planned has); one it could not read is given the benefit
    of the doubt."""
    present = outcome.rows.get(key) is not None or key in outcome.unread
    return present or previous.get(key) is not None


def _client_events(
    job_id: str, outcome: engine.ClientsSync, known: list[int], owners: Mapping[str, int]
) -> list[history.ClientEvent]:
    """Each known client's read, operations, skips and outcome, for its history."""
    wanted = set(known)
    events: list[history.ClientEvent] = [
        (key, history.read_from_wisphub(job_id, outcome.rows[key]))
        for key in known
        if key in outcome.rows
    ]
    for key, event in history.report_events(outcome.report, job_id):
        owner = key if key is not None else owners.get(str(event.get("key")))
        if owner is not None and owner in wanted:
            events.append((owner, event))
    events += [
        (key, history.retrying(job_id, f"not read from WispHub: {error}"))
        for key, error in outcome.unread.items()
        if key in wanted
    ]
    had: dict[int, list[str]] = {}
    for name, owner in owners.items():
        had.setdefault(owner, []).append(name)
    events += [
        (key, history.finished(job_id, outcome.report.for_client(key, had.get(key, []))))
        for key in known
        if key in outcome.rows
    ]
    return events


def _record_settled(
    pipe: Pipeline, outcome: engine.ClientsSync, settled: list[int], rules: MappingRules
) -> None:
    """For the clients settled: update the poller's snapshot (`store.record_fingerprints`),
    and clear the mark of an earlier failure, in `pipe`."""
    values = {
        key: None if (row := outcome.rows.get(key)) is None else fingerprint(row, rules)
        for key in settled
        if key in outcome.rows
    }
    if values:
        store.record_fingerprints(pipe, values)
        pipe.delete(*(store.failed_key(store.pending_key(key)) for key in values))
