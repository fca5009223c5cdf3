"""The worker command as the Procfile runs it: a pool of `WORKER_PROCESSES` RQ workers that run
jobs at once, stop after the jobs in hand, and run again, within a minute, a job whose worker
was killed mid-job."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Queue, Worker
from rq.job import Job

from tests.integration.conftest import BqnSim, WispHubSim, differences, managed_state, notify
from tests.integration.processes import Processes, eventually
from tests.rows import row
from worker import defaults
from worker.queue import history, queueing, store
from worker.queue.scheduler import build
from worker.settings import ServiceSettings

pytestmark = pytest.mark.integration

PROCESSES = 3
# Every BQN request waits this long: a job is seen running long before it ends.
BQN_LATENCY_MS = 1000


@pytest.fixture
def pool(service_env: dict[str, str], redis: Redis, queue: Queue) -> Iterator[Processes]:
    """The Procfile's worker command alone, with `PROCESSES` workers, once all registered."""
    env = {**service_env, "WORKER_PROCESSES": str(PROCESSES), "BQN_TIMEOUT": "5"}
    processes = Processes(env, ["worker"])
    try:
        eventually(lambda: registered(queue) == PROCESSES, f"{PROCESSES} registered workers")
        yield processes
    finally:
        processes.stop()


def registered(queue: Queue) -> int:
    return len(Worker.all(queue=queue))


def job(redis: Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis)


def status(redis: Redis, job_id: str) -> str:
    return job(redis, job_id).get_status()


def kill_worker_of(redis: Redis, job_id: str) -> str:
    """SIGKILL the worker process running the job (as the OOM killer would); its name."""
    name = job(redis, job_id).worker_name
    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, connection=redis)
    assert worker is not None
    os.kill(worker.pid, signal.SIGKILL)
    return name


def load_clients(wisphub_sim: WispHubSim, count: int) -> list[int]:
    for number in range(1, count + 1):
        wisphub_sim.state.upsert_client(
            row(number, f"10.9.0.{number}", "Activo", "Online_basico", f"Cliente {number}")
        )
    return list(range(1, count + 1))


@pytest.fixture
def one_by_one(service_env: dict[str, str]) -> ServiceSettings:
    """The service's settings with a job per client (no batches)."""
    return ServiceSettings.from_env({**service_env, "BATCH_SIZE": "1"})


@pytest.mark.slow
def test_the_workers_run_jobs_at_once_and_finish_them_when_told_to_stop(
    pool, redis, queue, wisphub_sim, bqn_sim: BqnSim, one_by_one
):
    workers = Worker.all(queue=queue)
    assert len({worker.pid for worker in workers}) == PROCESSES
    assert {worker.hostname for worker in workers} == {os.uname().nodename}
    ids = load_clients(wisphub_sim, PROCESSES)
    bqn_sim.state.faults.update(latency_ms=BQN_LATENCY_MS)
    job_ids = [job.job_id for job in queueing.request_syncs(queue, ids, "api", one_by_one)]
    eventually(
        lambda: all(status(redis, job_id) == "started" for job_id in job_ids),
        "every job to start",
    )

    # SIGTERM to the command alone (systemd's KillMode=mixed, docker stop): each worker
    # finishes its job, then the command exits
    [command] = pool.children
    command.process.send_signal(signal.SIGTERM)
    assert command.process.wait(timeout=30) == 0
    assert [status(redis, job_id) for job_id in job_ids] == ["finished"] * PROCESSES
    runs = [job(redis, job_id) for job_id in job_ids]
    assert len({run.worker_name for run in runs}) == PROCESSES
    # every job started before any ended: they ran at once, each in its own worker
    assert max(run.started_at for run in runs) < min(run.ended_at for run in runs)
    held = managed_state(bqn_sim)
    for number in ids:
        assert held[f"10.9.0.{number}"] == (f"Cliente {number}", "Online_basico")
    assert registered(queue) == 0  # each worker said it stopped


@pytest.mark.slow
def test_jobs_whose_workers_are_killed_run_again_within_a_minute(
    pool, redis, queue, wisphub_sim, bqn_sim: BqnSim, one_by_one
):
    """A client job and a full reconcile, each killed mid-run with its worker (SIGKILL, as the
    OOM killer would), together: RQ sees both abandoned, and each runs again, on another
    worker, and finishes within a minute (the `eventually` deadline); the reconcile takes back
    the lock its dead run left instead of skipping. Fails if a dead worker's job waits for its
    whole timeout, or a dead reconcile's lock blocks its own rerun."""
    rows = wisphub_sim.load(40)
    client = next(r for r in rows if r["estado"] == "Activo")
    bqn_sim.state.faults.update(latency_ms=BQN_LATENCY_MS)
    reconcile_id = queueing.enqueue_reconcile(queue, dry_run=False)
    [queued] = queueing.request_syncs(queue, [client["id_servicio"]], "api", one_by_one)
    client_id = queued.job_id
    lock = f"{store.PREFIX}lock:reconcile"
    eventually(lambda: redis.get(lock) == reconcile_id.encode(), "the reconcile to take its lock")
    # mid-job: started, and its first attempt counted (a kill before that is not mid-job)
    eventually(
        lambda: (
            status(redis, client_id) == "started" and job(redis, client_id).meta.get("attempts")
        ),
        "the client job to start",
    )
    killed = {kill_worker_of(redis, job_id) for job_id in (reconcile_id, client_id)}
    bqn_sim.state.faults.clear()
    assert len(killed) == 2
    assert redis.get(lock) == reconcile_id.encode()  # left behind by the dead run...
    # ...for a minute at most: no longer kept alive, it cannot block other reconciles for hours,
    # nor the client's lock its next jobs (issue 20, item 6)
    assert 0 < redis.pttl(lock) <= defaults.LIVE_LOCK_SECONDS * 1000
    client_lock = store.client_lock_key(client["id_servicio"])
    assert 0 < redis.pttl(client_lock) <= defaults.LIVE_LOCK_SECONDS * 1000

    took = eventually(
        lambda: all(status(redis, job_id) == "finished" for job_id in (reconcile_id, client_id)),
        "both jobs to run again",
    )
    print(f"both jobs ran again and finished {took:.1f} s after their workers were killed")
    for job_id in (reconcile_id, client_id):
        again = job(redis, job_id)
        assert again.worker_name not in killed
        assert again.meta["attempts"] == 2
    report = job(redis, reconcile_id).return_value()
    assert (report["ok"], report["clients"]) == (True, 40)
    assert differences(wisphub_sim, bqn_sim) == []
    assert redis.get(lock) is None
    eventually(lambda: registered(queue) >= PROCESSES, "the pool to replace the dead workers")


def test_the_scheduler_queues_the_nightly_reconcile_with_rqs_retries(service_env, redis):
    scheduler = build(ServiceSettings.from_env(service_env), redis)
    scheduler.register_birth()  # RQ keeps its cron jobs' description in Redis, as JSON
    [nightly] = [cron_job for cron_job in scheduler.get_jobs() if cron_job.cron]
    queued = nightly.enqueue(redis)
    assert queued.func_name == queueing.RECONCILE.path
    assert queued.retries_left == len(defaults.RESTART_DELAYS)
    assert queued.retry_intervals == list(defaults.RESTART_DELAYS)


@pytest.mark.slow
def test_a_reconcile_leaves_a_client_a_job_applied_meanwhile_alone(
    pool, web, redis, queue, wisphub_sim, bqn_sim: BqnSim
):
    """Issue 20, item 10: a client suspended (and notified) while a reconcile applied a pass
    read before it was put back on its plan by the reconcile's stale write, until the
    reconcile ended. Fails if the reconcile writes a client a job applied meanwhile."""
    for number in range(1, 81):
        wisphub_sim.state.upsert_client(
            row(number, f"10.9.1.{number}", "Activo", "Online_basico", f"Cliente {number}")
        )
    bqn_sim.state.faults.update(latency_ms=300, writes_only=True)
    reconcile_id = queueing.enqueue_reconcile(queue, dry_run=False)
    # the pass is read before the first write: the last client is still active in it
    eventually(lambda: bqn_sim.state.stats.count("POST") > 0, "the reconcile to write")
    wisphub_sim.state.upsert_client(
        row(80, "10.9.1.80", "Suspendido", "Online_basico", "Cliente 80")
    )
    [job_id] = notify(web, 80)
    eventually(lambda: status(redis, job_id) == "finished", "the client's job")
    eventually(lambda: status(redis, reconcile_id) == "finished", "the reconcile")
    report = job(redis, reconcile_id).return_value()
    assert any(note.startswith("1 writes left to the client jobs") for note in report["notes"])
    reconciled = [e for e in history.read(redis, 80) if e["job_id"] == reconcile_id]
    assert reconciled == []  # the reconcile wrote nothing for it: the job's state stood
    assert managed_state(bqn_sim)["10.9.1.80"] == ("Cliente 80", "Wisphub_block")
