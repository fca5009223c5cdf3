"""Redis Sentinel: the master killed under a steady flow of notifications, with the Procfile's
processes; the replica killed, or too slow to acknowledge. Every notification answered 202
reaches the BQN, every one refused is sent again and reaches it too."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from redis import Redis
from rq import Queue, Worker
from rq.job import Job

from sandbox.sentinel import RedisHA
from service.app import create_app
from tests.integration.conftest import API, HOOK, stamped
from tests.integration.faults.conftest import assert_converged, churn
from tests.integration.faults.test_process_faults import idle
from tests.integration.processes import eventually, start
from worker import defaults
from worker.queue import connection, store
from worker.queue.queueing import make_queue
from worker.settings import ServiceSettings

pytestmark = [pytest.mark.integration, pytest.mark.faults]

# The web must answer 202 again within this long of the master's death.
BACK_WITHIN_SECONDS = 15
# A job whose worker lost Redis in the middle (the worker lives on) is seen abandoned once its
# place in the started registry lapses: JOB_HEARTBEAT_TTL after its last heartbeat, and the
# minute RQ adds to it; then the next maintenance moves it, and its first retry runs after its
# delay. Measured: 10 to 75 s; bound, with time for the rerun on a loaded machine:
IN_FLIGHT = (
    defaults.JOB_HEARTBEAT_TTL
    + 60
    + defaults.WORKER_MAINTENANCE_SECONDS
    + defaults.RESTART_DELAYS[0]
    + 30
)


@pytest.fixture
def redis_ha(tmp_path: Path) -> Iterator[RedisHA]:
    with RedisHA(tmp_path / "redis-ha") as ha:
        yield ha


@pytest.fixture
def ha_env(service_env: dict[str, str], redis_ha: RedisHA) -> dict[str, str]:
    """The service on Sentinel, instead of the suite's Redis."""
    env = {key: value for key, value in service_env.items() if key != "REDIS_URL"}
    return {**env, **redis_ha.env}


def client(env: dict[str, str]) -> Redis:
    return connection.connect(ServiceSettings.from_env(env), socket_timeout=2)


@dataclass
class Sender:
    """Sends a notification for one changed client after another, and sends again each one
    refused (503, or no answer) until it is accepted, as a sender honouring 503 does."""

    url: str
    changes: list[int]
    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    # When each 202 was answered (monotonic clock).
    answered_at: list[float] = field(default_factory=list)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # the test's thread says why it stopped
            self.error = exc

    def _run(self) -> None:
        for id_servicio in self.changes:
            while not self._send(id_servicio):
                self.refused += 1
                time.sleep(0.2)  # Retry-After says 5 s: shorter here, the test's clock
            time.sleep(0.05)

    def _send(self, id_servicio: int) -> bool:
        try:
            answer = requests.post(
                f"{self.url}/webhooks/wisphub",
                json={"id_servicio": id_servicio},
                headers=HOOK,
                timeout=5,
            )
        except requests.RequestException:
            return False
        if answer.status_code == 503:
            assert answer.headers["Retry-After"], "a refusal says when to come back"
            return False
        assert answer.status_code == 202, answer.text
        self.accepted.extend(job["job_id"] for job in answer.json()["jobs"])
        self.answered_at.append(time.monotonic())
        return True


@pytest.mark.slow
@pytest.mark.timeout(IN_FLIGHT + 150)
def test_the_master_killed_under_notifications_loses_none(ha_env, redis_ha, wisphub_sim, bqn_sim):
    ids = [r["id_servicio"] for r in wisphub_sim.load(40)]
    processes = start(ha_env)  # the scheduler's start-up reconcile fills the BQN
    redis = client(ha_env)
    try:
        eventually(lambda: bqn_sim.state.stats.count() > 0 and idle(redis), "the reconcile")
        # every client changed in WispHub, one notification each, changed again on a second
        # round: the second change of a client whose first job was lost would be missed
        changes = churn(wisphub_sim, ids) + churn(wisphub_sim, ids, seed=8)
        sender = Sender(processes.url, changes)
        sending = threading.Thread(target=sender.run)
        sending.start()
        eventually(lambda: len(sender.accepted) >= 10, "notifications to be accepted")
        old = redis_ha.master_port()
        redis_ha.servers[old].kill()
        killed_at = time.monotonic()
        new = redis_ha.wait_for_master(not_port=old)
        sending.join(timeout=120)
        assert not sending.is_alive()
        assert sender.error is None, sender.error

        back = min(at for at in sender.answered_at if at > killed_at) - killed_at
        assert back < BACK_WITHIN_SECONDS, f"the web answered 202 again {back:.1f} s after"
        assert sender.refused > 0, "the kill came while notifications were sent"
        assert connection.master(redis) == f"127.0.0.1:{new}"

        def unapplied() -> dict[str, str]:
            jobs = Job.fetch_many(sender.accepted, connection=redis)
            assert None not in jobs, "an accepted job was lost"
            return {job.id: job.get_status() for job in jobs if job.get_status() != "finished"}

        try:  # a job whose worker lost Redis mid-way runs again once its heartbeat lapses
            eventually(lambda: not unapplied(), "every accepted job to be applied", IN_FLIGHT)
        except AssertionError:
            raise AssertionError(f"jobs not finished: {stuck(redis, unapplied())}") from None
        eventually(lambda: idle(redis), "no job left queued or running")
        assert_converged(wisphub_sim, bqn_sim)

        # the poller runs on: a change nobody announces reaches the BQN
        unannounced = churn(wisphub_sim, ids[:1], seed=9)
        assert unannounced
        eventually(lambda: _converged(wisphub_sim, bqn_sim), "the poller to find a change")
        # one scheduler leads, on the new master; the web says which master it uses
        assert redis.exists(f"{store.PREFIX}lock:scheduler")
        ready = requests.get(f"{processes.url}/readyz", headers=API, timeout=5).json()
        assert ready["redis_master"] == f"127.0.0.1:{new}"
        assert ready["replication"] == "degraded"  # the old master was the new one's replica
        processes.check_alive()
    finally:
        processes.stop()


def stuck(redis: Redis, jobs: dict[str, str]) -> list[dict]:
    """What RQ holds of each job left unfinished: where a failure's cause is to be read."""
    found = []
    queue = Queue(defaults.QUEUE_NAME, connection=redis)
    started = redis.zrange(queue.started_job_registry.key, 0, -1, withscores=True)
    for job_id, status in jobs.items():
        job = Job.fetch(job_id, connection=redis)
        found.append(
            {
                "job": job_id,
                "status": status,
                "worker": job.worker_name,
                "retries_left": job.retries_left,
                "started_at": str(job.started_at),
                "in_started_registry": [
                    (key.decode(), round(score - time.time()))
                    for key, score in started
                    if job_id in key.decode()
                ],
                "worker_alive": bool(
                    job.worker_name and redis.exists(f"rq:worker:{job.worker_name}")
                ),
                "scheduled": redis.zscore(queue.scheduled_job_registry.key, job_id),
            }
        )
    return found


def _converged(wisphub_sim, bqn_sim) -> bool:
    try:
        assert_converged(wisphub_sim, bqn_sim)
    except AssertionError:
        return False
    return True


def test_the_replica_killed_leaves_writes_going_and_says_degraded(ha_env, redis_ha):
    web = create_app(ha_env).test_client()
    redis = client(ha_env)
    Worker([make_queue(redis, ServiceSettings.queue_name)], connection=redis).register_birth()
    ready = web.get("/readyz", headers=API).json
    assert (ready["replication"], ready["replicas"]) == ("ok", 1)
    assert ready["redis_master"] == f"127.0.0.1:{redis_ha.master_port()}"
    assert "redis_master" not in web.get("/readyz").json, "the address is for the token only"

    redis_ha.replica().kill()
    eventually(lambda: web.get("/readyz").json["replication"] == "degraded", "degraded mode")
    ready = web.get("/readyz", headers=API)
    assert ready.status_code == 200, "the service stays ready on the master alone"
    assert ready.json["replicas"] == 0
    started = time.monotonic()
    assert web.post("/webhooks/wisphub", json={"id_servicio": 7}, headers=HOOK).status_code == 202
    assert time.monotonic() - started < 0.4, "no wait for a replica that is not there"


def test_a_replica_that_does_not_acknowledge_makes_the_sender_retry(ha_env, redis_ha):
    env = {**ha_env, "REDIS_WAIT_MS": "200"}
    web = create_app(env).test_client()
    body = b'{"id_servicio": 8}'
    headers = {**stamped(body), "Content-Type": "application/json"}
    replica = redis_ha.replica().process
    os.kill(replica.pid, signal.SIGSTOP)  # connected, but acknowledging nothing
    try:
        refused = web.post("/webhooks/wisphub", data=body, headers=headers)
        assert refused.status_code == 503
        assert refused.json["error"] == "not_replicated"
        assert refused.headers["Retry-After"] == "5"
        reconcile = web.post("/api/v1/reconcile", json={"dry_run": True}, headers=API)
        assert reconcile.status_code == 503, "every 202 waits, the API's too"
    finally:
        os.kill(replica.pid, signal.SIGCONT)
    # the same signed notification, sent again, is taken: its refusal did not spend it
    assert web.post("/webhooks/wisphub", data=body, headers=headers).status_code == 202
