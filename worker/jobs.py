"""The jobs RQ runs, at the paths it keeps in Redis.

RQ stores each job's function as a dotted path (`worker.jobs.sync_client`), so these paths are
data: a job queued or failed before an upgrade must find its function after it, and during a
rolling upgrade a worker of either release must run the jobs the other queued. The functions
stay here under these names; what they do is in `worker.queue` and `worker.sync`.
"""

from __future__ import annotations

from redis.client import Pipeline
from rq.job import Job

from worker.core.changes import fingerprint
from worker.queue import batch, history, passes, store
from worker.queue.address_book import RedisAddressBook
from worker.queue.catalogue import current_plans, plan_source
from worker.queue.lifecycle import JobResult, finish, rq_job
from worker.queue.runtime import runtime
from worker.sync import engine


@rq_job
def sync_client(job: Job, id_servicio: int) -> JobResult:
    """Re-read one client from WispHub and bring the addresses it has or had in line (the
    client's lock is held: `rq_job`)."""
    redis = job.connection
    rt = runtime()
    previous = store.touch(redis, [id_servicio])[id_servicio]  # before it records
    outcome = engine.sync_client(
        id_servicio,
        rt.wisphub,
        rt.bqn,
        rt.settings.rules,
        plan_source(redis, rt),
        previous=previous,
        book=RedisAddressBook(redis, job.id),
        policies=rt.policies,
    )
    row = outcome.row
    seen = {id_servicio: None if row is None else fingerprint(row, rt.settings.rules)}
    events = [history.read_from_wisphub(job.id, row)]
    events += [event for _, event in history.report_events(outcome.report, job.id)]
    known = row is not None or previous is not None or bool(outcome.report.planned)
    return finish(
        job,
        outcome.report,
        [(id_servicio, event) for event in events],
        known=known,
        also=lambda pipe: _record(pipe, id_servicio, seen if outcome.report.ok else None),
    )


def _record(pipe: Pipeline, id_servicio: int, seen: dict[int, str | None] | None) -> None:
    """A client job read its client (rows a pass read before are not applied over it), and,
    when it went through, what the poller should compare with next."""
    store.note_read(pipe, [id_servicio])
    if seen is not None:
        store.record_fingerprints(pipe, seen)


@rq_job
def sync_clients(job: Job, ids: list[int]) -> JobResult:
    """Bring many clients in line as one plan (`worker.queue.batch`): a poll pass's changes,
    or a notification naming many clients."""
    return batch.run(job, ids)


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
    """The full sync: every client from a complete WispHub pass against the whole BQN
    (`worker.queue.passes.reconcile`); `force` lets through what the deletion guard holds."""
    return passes.reconcile(job, dry_run=dry_run, force=force)


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
