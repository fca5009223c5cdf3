"""Redis restarted, and a worker killed in the middle of a job, with the Procfile's worker
process: every accepted notification is applied in the end."""

from __future__ import annotations

import time

import pytest
from redis import Redis
from rq import Queue
from rq.scheduler import RQScheduler

from sandbox.redis_server import RedisServer
from service.app import create_app
from tests.integration.conftest import HOOK, managed_state
from tests.integration.faults.conftest import Ledger, assert_converged, churn
from tests.integration.processes import Processes, eventually
from tests.rows import row
from worker import defaults
from worker.settings import ServiceSettings

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def test_redis_restarted_with_jobs_queued(tmp_path, service_env, wisphub_sim, bqn_sim):
    directory = tmp_path / "redis"
    server = RedisServer(directory, persistent=True)
    env = {**service_env, "REDIS_URL": server.url}
    web = create_app(env).test_client()
    connection = Redis.from_url(server.url)
    ledger = Ledger(web, connection)
    ids = [r["id_servicio"] for r in wisphub_sim.load(40)]
    ledger.reconcile()
    for id_servicio in ids:
        ledger.notify([id_servicio])
    server.kill()  # a crash, with 41 jobs queued and no worker running yet

    down = web.post("/webhooks/wisphub", json={"id_servicio": 1}, headers=HOOK)
    assert down.status_code == 503, "nothing is acknowledged while Redis is down"
    server = RedisServer(directory, server.port, persistent=True)
    workers = Processes(env, ["worker"])
    try:
        assert Queue(ServiceSettings.queue_name, connection=connection).count == 41
        eventually(lambda: all_finished(ledger), "the queued jobs to run")
        eventually(lambda: idle(connection), "the reconcile's follow-ups to run")
        assert_converged(wisphub_sim, bqn_sim)

        server.kill()  # again, now under an idle running worker
        time.sleep(0.5)
        server = RedisServer(directory, server.port, persistent=True)
        ledger.notify(churn(wisphub_sim, ids[:10]))
        eventually(lambda: all_finished(ledger), "the worker to carry on after the restart")
        workers.check_alive()
        assert_converged(wisphub_sim, bqn_sim)
    finally:
        workers.stop()
        server.stop()


def test_a_worker_killed_mid_job_leaves_the_job_retried(
    service_env, ledger, queue, wisphub_sim, bqn_sim
):
    env = {**service_env, "WISPHUB_TIMEOUT": "30"}
    wisphub_sim.state.upsert_client(row(70, "10.70.0.1", nombre="Rosa", plan="Online_basico"))
    wisphub_sim.state.faults.update(latency_ms=20_000)  # the job's WispHub read hangs
    workers = Processes(env, ["worker"])
    try:
        [job_id] = ledger.notify([70])
        calls = wisphub_sim.state.stats.count()
        eventually(lambda: wisphub_sim.state.stats.count() > calls, "the job to call WispHub")
        assert ledger.view(job_id)["status"] == "started"
        workers.kill("worker")
        assert ledger.view(job_id)["status"] == "started", "nobody finished it"
        # RQ gives a dead worker's job up once its execution has outlived the job timeout,
        # when a worker cleans the registries: do that cleaning now, with the clock moved on
        later = time.time() + defaults.CLIENT_JOB_TIMEOUT + 120
        queue.started_job_registry.cleanup(timestamp=later)
        assert ledger.view(job_id)["status"] in ("scheduled", "retrying", "queued")

        # the dead worker's scheduler lock would lapse within two minutes: let it lapse now
        queue.connection.delete(RQScheduler.get_locking_key(queue.name))
        wisphub_sim.state.faults.clear()
        workers = Processes(env, ["worker"])
        eventually(lambda: ledger.view(job_id)["status"] == "finished", "the job to run again")
    finally:
        workers.stop()
    assert ledger.view(job_id)["attempts"] == 2
    assert managed_state(bqn_sim)["10.70.0.1"] == ("Rosa", "Online_basico")


def all_finished(ledger: Ledger) -> bool:
    return set(ledger.statuses().values()) == {"finished"}


def idle(connection: Redis) -> bool:
    """Nothing queued, scheduled or running, the jobs that jobs queued included (a job a
    worker has just taken sits in RQ's intermediate list, in neither the queue nor a
    registry)."""
    queue = Queue(ServiceSettings.queue_name, connection=connection)
    registries = (queue.started_job_registry, queue.scheduled_job_registry)
    taken = connection.llen(queue.intermediate_queue_key)
    return queue.count == taken == 0 and all(registry.count == 0 for registry in registries)
