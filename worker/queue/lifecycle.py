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
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, Concatenate, ParamSpec

from rq import Retry, get_current_job
from rq.job import Job

from worker.core.errors import SyncError, TransientError
from worker.core.report import Report
from worker.queue import history, queueing, store
from worker.queue.metrics import TALLY
from worker.queue.runtime import runtime

log = logging.getLogger(__name__)

P = ParamSpec("P")
JobResult = dict[str, Any] | Retry


class OperationsFailed(SyncError):
    """Some BQN operations were refused for good (a 4xx), or the deletion guard held
    deletions back: retrying would not help, a person should look."""


class DeletionsHeldBack(OperationsFailed):
    """The deletion guard held deletions back: the job fails (listed among the failures, run
    again with `force` once a person agrees). The engine has logged the reason as a warning,
    so the worker logs no traceback for it (`worker.rqworker`)."""


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
                result = retry(job, str(exc))
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


def _current_job() -> Job:
    job = get_current_job()
    if job is None:
        raise RuntimeError("this function runs as an RQ job")
    return job


def retry(job: Job, error: str) -> Retry:
    """Record why, then ask RQ to run the job again later."""
    log.warning("job %s will be retried: %s", job.id, error)
    job.meta["last_error"] = error
    job.save_meta()
    intervals = list(runtime().service.retry_intervals)
    return Retry(max=len(intervals), interval=intervals)


def finish(
    job: Job, report: Report, events: Sequence[history.ClientEvent] = (), *, known: bool = True
) -> JobResult:
    """The job's result; a retry when some operation failed transiently; an error when some
    were refused for good. The job's history `events`, with a client job's outcome, are
    written, and its operations counted (metrics and the hourly chart), in one round trip.
    A client job whose client is not `known` (neither WispHub nor the BQN has it) keeps no
    history at all."""
    _count_operations(report)
    client = queueing.client_of(job)
    done = [] if client is None else [(client, history.finished(job.id, report))]
    history.write(
        job.connection,
        [*events, *done] if known else [],
        runtime().service.history,
        also=lambda pipe: history.count_operations(pipe, report),
    )
    if not known and client is not None:
        history.forget(job.connection, client)
    data = report.to_dict()
    if report.ok:
        return data
    job.meta["report"] = data
    job.save_meta()
    if not report.failures:
        raise DeletionsHeldBack(f"deletion guard: {report.guard}")
    first = report.failures[0]
    reason = f"{len(report.failures)} of {len(report.planned)} operations failed, first: "
    reason += f"{first.operation.describe()}: {first.error}"
    if report.retryable:
        return retry(job, reason)
    raise OperationsFailed(reason)


def _note(job: Job, id_servicio: int, event: history.Event) -> None:
    """Add one event to a client's history."""
    history.write(job.connection, [(id_servicio, event)], runtime().service.history, known=False)


def _count_operations(report: Report) -> None:
    """Count a report's BQN writes for the metrics."""
    if report.dry_run:
        return
    for op, failure in report.results():
        result = "ok" if failure is None else "failed"
        TALLY.count("bqn_operations", kind=str(op.kind), action=str(op.action), result=result)
