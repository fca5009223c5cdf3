"""What every job does around its work: claims, attempts, retries, failures, history and
metrics (`rq_job`), and how its report becomes its result (`finish`).

Transient failures (timeouts, connection errors, 5xx, 429) make a job return an RQ `Retry`, so
it runs again later at the `RETRY_INTERVALS` delays, about 74 minutes in all by default; permanent
ones (credentials, refused requests) raise at once and leave the job in RQ's failed registry with
the reason. Jobs are queued with a few RQ retries of their own, spent only when a worker dies in
the middle of a job (RQ's abandoned-job handling) or on an unexpected error, never on a
permanent one. Every job is idempotent, so running it again is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any, Concatenate, ParamSpec

from redis.client import Pipeline
from rq import Retry, get_current_job
from rq.job import Job

from worker.core import phrases
from worker.core.errors import SyncError, TransientError
from worker.core.report import Report
from worker.core.targets import DEFAULT_TARGET
from worker.queue import failures, history, queueing, store
from worker.queue.metrics import TALLY
from worker.queue.runtime import runtime
from worker.sync.targets import reasons

log = logging.getLogger(__name__)

P = ParamSpec("P")
JobResult = dict[str, Any] | Retry


class OperationsFailed(SyncError):
    """Some BQN operations were refused for good (a 4xx), or the deletion guard held
    deletions back: retrying would not help, a person should look."""


class RetriesSpent(SyncError):
    """A transient failure outlasted every retry (`RETRY_INTERVALS`): the job fails, listed
    among the failures for a person to requeue."""


class DeletionsHeldBack(OperationsFailed):
    """The deletion guard held deletions back: the job fails (listed among the failures, run
    again with `force` once a person agrees). The engine has logged the reason as a warning,
    so the worker logs no traceback for it (`worker.rqworker`)."""


def rq_job(func: Callable[Concatenate[Job, P], JobResult]) -> Callable[P, JobResult]:
    """Run `func(job, ...)` as an RQ job: count the attempt, turn a transient error into a
    retry later, and make a permanent one (or a transient one that outlasted every retry) fail
    at once (the RQ retries queued with the job are kept for a worker that dies mid-job).

    A client job holds its client's lock. A coalesced job (a client or address sync) does
    nothing when another job for the same client waits to run, releases its claim when it
    starts (a client job: once it holds the lock: until then it has read nothing, so requests
    coalesce into it) and takes it back when it must be retried. A client job's start,
    retries and failure go to the client's history; every job's outcome and API calls go to
    the metrics."""

    @wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> JobResult:
        job = _current_job()
        client = queueing.client_of(job)
        outcome = "failed"
        try:
            with _client_locked(job, client) as locked:
                if not locked:
                    result = retry(job, phrases.STAYED_LOCKED.format(client=client))
                    outcome = "retried"
                    _ended(job, client, result)
                    return result
                instead = _begin(job)
                if instead is not None:
                    outcome = "superseded"  # counted there
                    return _superseded(job, client, instead, func.__name__)
                _count_attempt(job, client)
                try:
                    result = func(job, *args, **kwargs)
                except TransientError as exc:
                    result = retry(job, str(exc))
                if isinstance(result, Retry) and (other := _reclaim(job)):
                    outcome = "superseded"
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


@contextmanager
def _client_locked(job: Job, client: int | None) -> Iterator[bool]:
    """Hold a client job's client lock while the block runs (waiting for it up to
    `LOCK_WAIT_SECONDS`); False when it stayed taken. Other jobs take none here."""
    if client is None:
        yield True
        return
    locked = store.take_client(job.connection, client, job.id)
    try:
        yield locked
    finally:
        if locked:
            store.release_locks(job.connection, [store.client_lock_key(client)], job.id)


def _count_attempt(job: Job, client: int | None) -> None:
    """Count the attempt in the job's meta and note the start in its client's history, in
    one round trip."""
    job.meta["attempts"] = int(job.meta.get("attempts", 0)) + 1
    history.write(
        job.connection,
        [] if client is None else [(client, history.started(job.id, job.meta["attempts"]))],
        runtime().service.history,
        also=lambda pipe: pipe.hset(job.key, "meta", job.serializer.dumps(job.meta)),
        known=False,
    )


def _begin(job: Job) -> str | None:
    """Clear a client or address job's claim as it starts; return the other job waiting
    under it, if any (a batch clears its clients' claims itself: `worker.queue.batch`)."""
    claim = queueing.claim_key(job)
    if claim is None:
        return None
    [other], _ = queueing.begin(job.connection, job.id, [claim])
    return other


def _reclaim(job: Job) -> str | None:
    """Take a client or address job's claim back before its retry; return the other job
    waiting under it, if any."""
    claim = queueing.claim_key(job)
    if claim is None:
        return None
    [other] = queueing.reclaim(job.connection, job.id, [claim])
    return other


def _ended(job: Job, client: int | None, result: JobResult) -> None:
    """A run that returned: a retry goes to the client's history; a success clears the mark
    of an earlier failure, and resolves the failures that owed what it did."""
    if isinstance(result, Retry):
        if client is not None:
            _note(job, client, history.retrying(job.id, job.meta.get("last_error", "")))
        return
    if claim := queueing.claim_key(job):
        store.clear_failed(job.connection, claim)
    failures.went_through(job, failures.done_by(job, result))


def _failed(job: Job, client: int | None, error: str, *, for_good: bool) -> None:
    """A run that raised: into the history of its client (or of a batch's unsettled
    clients), and what it owes noted (`worker.queue.failures`: the job that does it later
    resolves the failure); a failure for good (no RQ retry left) is marked, so the poller's
    drift correction leaves them in the failures list."""
    clients = [client] if client is not None else queueing.unsettled(job)
    if for_good:
        job.retries_left = 0
        claims = [store.pending_key(key) for key in clients]
        if client is None and (claim := queueing.claim_key(job)):
            claims.append(claim)  # an address job's
        for claim in claims:
            store.mark_failed(job.connection, claim, job.id)
    failures.noted(job.connection, job)
    history.write(
        job.connection,
        [(key, history.failed(job.id, error)) for key in clients],
        runtime().service.history,
        known=False,
    )


def _superseded(job: Job, client: int | None, other: str, name: str) -> JobResult:
    """End a job whose work another waiting job will do (with the latest state)."""
    log.info("job %s: job %s is waiting to do this work; nothing to do", job.id, other)
    if client is not None:
        _note(job, client, history.superseded(job.id, other))
    TALLY.count("jobs", job=name, outcome="superseded")
    TALLY.flush(job.connection)
    return {"superseded_by": other}


def _current_job() -> Job:
    job = get_current_job()
    if job is None:
        raise RuntimeError("this function runs as an RQ job")
    return job


def retry(job: Job, error: str) -> Retry:
    """Record why, then ask RQ to run the job again later; raise `RetriesSpent` when every
    retry is spent (RQ would fail the job without a word: this fails it as a refusal does,
    listed, marked and in the history)."""
    job.meta["last_error"] = error
    job.meta["last_error_attempt"] = queueing.attempts(job)  # the attempts made so far
    job.save_meta()
    intervals = list(runtime().service.retry_intervals)
    if (job.number_of_retries or 0) >= len(intervals):
        raise RetriesSpent(phrases.RETRIES_SPENT.format(count=len(intervals), error=error))
    log.warning("job %s will be retried: %s", job.id, error)
    return Retry(max=len(intervals), interval=intervals)


def finish(
    job: Job,
    report: Report,
    events: Sequence[history.ClientEvent] = (),
    *,
    known: bool = True,
    also: Callable[[Pipeline], None] | None = None,
    unreached: Mapping[str, SyncError] | None = None,
) -> JobResult:
    """The job's result; a retry when some operation failed transiently; an error when some
    were refused for good. The job's history `events`, with a client job's outcome, are
    written, its operations counted (metrics and the hourly chart), and what `also` adds,
    in one round trip. A client job whose client is not `known` (neither WispHub nor the BQN
    has it) keeps no history at all. The targets `unreached` (their work raised) make the job
    retry, or fail when none of their errors is transient."""
    _count_operations(report)
    client = queueing.client_of(job)
    done = [] if client is None else [(client, history.finished(job.id, report))]
    history.write(
        job.connection,
        [*events, *done] if known else [],
        runtime().service.history,
        also=lambda pipe: _count_and(pipe, report, also),
    )
    if not known and client is not None:
        history.forget(job.connection, client)
    data = report.to_dict()
    if unreached:
        data["unreached"] = reasons(unreached)
    if report.ok and not unreached:
        return data
    job.meta["report"] = data
    job.save_meta()
    if unreached:
        why = [
            phrases.ON_TARGET.format(name=name, error=error) for name, error in unreached.items()
        ]
        why += [
            phrases.OPERATION_FAILED.format(operation=f.operation.named(), error=f.error)
            for f in report.failures[:1]
        ]
        transient = any(isinstance(error, TransientError) for error in unreached.values())
        if transient or report.retryable:
            return retry(job, phrases.JOINED.join(why))
        raise OperationsFailed(phrases.JOINED.join(why))
    if not report.failures:
        raise DeletionsHeldBack(phrases.GUARD_TRIPPED.format(reason=report.guard))
    first = report.failures[0]
    reason = phrases.OPERATIONS_FAILED.format(
        failed=len(report.failures),
        planned=len(report.planned),
        first=first.operation.named(),
        error=first.error,
    )
    if report.retryable:
        return retry(job, reason)
    raise OperationsFailed(reason)


def _count_and(pipe: Pipeline, report: Report, also: Callable[[Pipeline], None] | None) -> None:
    history.count_operations(pipe, report)
    if also is not None:
        also(pipe)


def _note(job: Job, id_servicio: int, event: history.Event) -> None:
    """Add one event to a client's history."""
    history.write(job.connection, [(id_servicio, event)], runtime().service.history, known=False)


def _count_operations(report: Report) -> None:
    """Count a report's BQN writes for the metrics."""
    if report.dry_run:
        return
    for op, failure in report.results():
        result = "ok" if failure is None else "failed"
        TALLY.count(
            "bqn_operations",
            kind=str(op.kind),
            action=str(op.action),
            result=result,
            target=op.target or DEFAULT_TARGET,
        )
