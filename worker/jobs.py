"""The jobs RQ runs, at the paths it keeps in Redis.

RQ stores each job's function as a dotted path (`worker.jobs.sync_client`), so these paths are
data: a job queued or failed before an upgrade must find its function after it, and during a
rolling upgrade a worker of either release must run the jobs the other queued. The functions
stay here under these names; what they do is in `worker.queue` and `worker.sync`.
"""

from __future__ import annotations

from redis.client import Pipeline
from rq import Queue
from rq.job import Job

from worker.core import phrases
from worker.core.changes import fingerprint
from worker.core.report import merged
from worker.core.targets import split_address_key
from worker.queue import batch, client_overrides, fanout, history, passes, queueing, store
from worker.queue.address_book import RedisAddressBook
from worker.queue.catalogue import current_plans, plan_source
from worker.queue.lifecycle import JobResult, finish, rq_job
from worker.queue.runtime import keys_of, runtime
from worker.sync import engine
from worker.sync.targets import SelectedClients


@rq_job
def sync_client(job: Job, id_servicio: int) -> JobResult:
    """Re-read one client from WispHub and bring the addresses it has or had in line, on
    every target (the client's lock is held: `rq_job`)."""
    done = fanout.sync_clients(job, [id_servicio])
    outcome = done.sync
    if id_servicio in outcome.unread:
        raise outcome.unread[id_servicio]
    row, previous = outcome.rows.get(id_servicio), done.previous.get(id_servicio)
    went_through = outcome.report.ok and not done.errors
    seen = {id_servicio: None if row is None else fingerprint(row, done.rules)}
    events = [history.read_from_wisphub(job.id, row)]
    events += [event for _, event in history.report_events(outcome.report, job.id)]
    known = row is not None or previous is not None or bool(outcome.report.planned)
    return fanout.finish_on_targets(
        job,
        outcome.report,
        done.reports,
        done.errors,
        [(id_servicio, event) for event in events],
        known=known,
        also=lambda pipe: _record(pipe, id_servicio, seen if went_through else None),
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
def sync_address(job: Job, address: str) -> JobResult:
    """Settle one BQN address the poller found held for no client of its pass (`address`:
    the IP, or `IP@target` on a target other than `default`): whoever last claimed it there is
    read again, and the entry goes only if none of them claims it now."""
    redis = job.connection
    rt = runtime()
    ip, target = split_address_key(address)
    shapers = rt.chosen([target])
    if not shapers:
        return {"skipped": phrases.TARGET_GONE.format(target=target)}
    [shaper] = shapers
    report = engine.sync_addresses(
        [ip],
        SelectedClients(rt.wisphub, shaper.selector),
        shaper.bqn,
        rt.rules(redis),
        plan_source(redis, rt),
        book=RedisAddressBook(redis, job.id, keys_of(shaper)),
        policies=shaper.policies,
    )
    report = merged({shaper.name: report}, clients=report.clients)
    events = history.report_events(report, job.id)
    return finish(job, report, [(key, e) for key, e in events if key is not None])


@rq_job
def reconcile(
    job: Job, dry_run: bool = False, force: bool = False, target: str | None = None
) -> JobResult:
    """The full sync: every client from a complete WispHub pass against every target's whole
    BQN, or `target`'s alone (`worker.queue.passes.reconcile`); `force` lets through what the
    deletion guard holds."""
    return passes.reconcile(job, dry_run=dry_run, force=force, target=target)


@rq_job
def sync_plans(job: Job) -> JobResult:
    """Read the plan catalogue again and put every plan's rate policy in place on every
    target."""
    rt = runtime()
    plans = current_plans(job.connection, rt, refresh=True)
    reports, errors = fanout.on_targets(
        job.connection,
        rt.service,
        fanout.targets_left(job, rt),
        lambda shaper: engine.sync_policies(shaper.bqn, rt.rules(job.connection), plans),
    )
    report = merged(reports, clients=0)
    if report.ok and report.planned and not errors:  # its clients may go through now
        store.clear_all_failed(job.connection)
    return fanout.finish_on_targets(job, report, reports, errors)


@rq_job
def poll_changes(job: Job) -> JobResult:
    """Read the whole client list, queue a sync for every client that changed, and compare
    the pass with the BQN (`worker.queue.passes.poll`)."""
    return passes.poll(job)


@rq_job
def expire_overrides(job: Job) -> JobResult:
    """End the temporary overrides whose time has come and queue their clients' syncs, so
    that each returns to what WispHub says within seconds (queued at each override's `until`:
    `worker.queue.client_overrides`)."""
    rt = runtime()
    ended = client_overrides.end_expired(job.connection, rt.service)
    queue = Queue(job.origin, connection=job.connection)
    queued = queueing.request_syncs(queue, ended, "override", rt.service)
    return {"ended": ended, "jobs": sorted({item.job_id for item in queued})}
