"""Redis Sentinel: the master killed under a steady flow of notifications, with the Procfile's
processes; the replica killed, or too slow to acknowledge. Every notification answered 202
reaches the BQN, every one refused is sent again and reaches it too. Two schedulers through
the master's death: one leads, and the poller and the reconcile are queued once. Then
Sentinel over TLS only: the processes work and fail over on it, and a client trusting another
CA is refused."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
import requests
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue, Worker
from rq.job import Job

from sandbox.processes import Processes
from sandbox.redis_server import tls_executable
from sandbox.sentinel import RedisHA
from sandbox.tls import TlsFiles, make_tls
from service.app import create_app
from tests.image import compose
from tests.integration.conftest import API, HOOK, stamped
from tests.integration.faults.conftest import assert_converged, churn
from tests.integration.faults.test_process_faults import idle
from tests.integration.processes import eventually, start
from tests.integration.test_image_checks import check
from worker import defaults
from worker.queue import connection, store
from worker.queue.queueing import POLL_CHANGES, JobKind, make_queue
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
# The two schedulers' test: a poll every POLL_EVERY seconds, counted over POLL_WINDOW seconds,
# which one active scheduler fills with at most POLL_WINDOW / POLL_EVERY + 1 polls and two
# with about twice as many.
POLL_EVERY = 2
POLL_WINDOW = 8 * POLL_EVERY
LEADER_LOCK = f"{store.PREFIX}lock:scheduler"
# A client's history events that say a sync was asked for, and what asks for one in a poll: a
# change it read, or a difference it found on the BQN.
QUEUED = ("queued", "coalesced")
POLLER = ("poll", "drift")


@pytest.fixture
def redis_ha(request: pytest.FixtureRequest, tmp_path: Path, tls: TlsFiles) -> Iterator[RedisHA]:
    """The master, its replica and three sentinels; parametrized `"tls"` (indirect), on TLS only
    with the simulators' certificate."""
    secure = getattr(request, "param", None) == "tls"
    if secure and tls_executable() is None:
        pytest.skip("no redis-server built with TLS (Debian's redis-server package is)")
    with RedisHA(tmp_path / "redis-ha", tls=tls if secure else None) as ha:
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


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_after_the_failover_one_scheduler_leads_and_queues_each_job_once(
    ha_env, redis_ha, wisphub_sim, bqn_sim
):
    """Issue 19: two schedulers, as on two hosts, through the master's death: one leads on
    the new master (the other stands by), the poller finds changes, the reconcile due each
    minute runs once; then the leader dies and the other takes over. Fails if both lead (polls
    and reconciles queued twice), if neither does, if the standby dies in the failover or
    never takes over, or if it queues again the reconcile its predecessor queued that minute
    (its own turns dated from its start)."""
    ids = [r["id_servicio"] for r in wisphub_sim.load(20)]
    env = {
        **ha_env,
        "POLL_INTERVAL": str(POLL_EVERY),
        "RECONCILE_CRON": "* * * * *",
        "RECONCILE_ON_START": "0",  # every reconcile is a scheduled one (the poller fills the BQN)
    }
    processes = start(env, ("web", "worker", "scheduler", "scheduler"))
    redis = client(env)
    try:
        eventually(lambda: _converged(wisphub_sim, bqn_sim), "the poller to fill the BQN")
        assert _leader(redis, processes) is not None
        old = redis_ha.master_port()
        redis_ha.servers[old].kill()
        killed = time.time()
        new = redis_ha.wait_for_master(not_port=old)
        eventually(lambda: _leader(redis, processes) is not None, "a scheduler to lead again")
        assert connection.master(redis) == f"127.0.0.1:{new}"
        leader = _leader(redis, processes)
        since = time.time()
        eventually(lambda: bool(_reconciles(processes, killed)), "a scheduled reconcile", 90)
        # changed just after a reconcile, which would otherwise apply the change before a poll
        # reads it (and leave it nothing to find); the leader then dies within the minute
        _poller_finds(processes, ids[0], wisphub_sim, bqn_sim)
        time.sleep(max(0.0, since + POLL_WINDOW - time.time()))
        until = time.time()
        polls = _queued(redis, POLL_CHANGES, since, until)
        assert 0 < polls <= (until - since) / POLL_EVERY + 2, f"{polls} polls in {until - since} s"
        assert _leader(redis, processes) == leader, "the lead stays where it is"

        processes.kill("scheduler", leader)
        eventually(lambda: _leader(redis, processes) not in (None, leader), "the standby", 60)
        _poller_finds(processes, ids[1], wisphub_sim, bqn_sim)
        eventually(lambda: idle(redis), "no job left queued or running")
        due = Counter(at[:16] for at in _reconciles(processes, killed))  # one due time a minute
        assert due, "a scheduled reconcile ran after the failover"
        assert max(due.values()) == 1, f"reconciles queued per minute: {due}"
        processes.check_alive()
    finally:
        processes.stop()


def _leader(redis: Redis, processes: Processes) -> int | None:
    """The process id of the live scheduler the leader lock names (its value is the
    scheduler's name, `host:pid:suffix`), if any."""
    value = redis.get(LEADER_LOCK)
    pid = None if value is None else int(value.decode().rsplit(":", 2)[1])
    live = {child.process.pid for child in processes.children if child.name == "scheduler"}
    return pid if pid in live else None


def _poller_finds(processes: Processes, id_servicio: int, wisphub_sim, bqn_sim) -> None:
    """Change a client in WispHub, announcing it to nobody: the poller must find it (a sync
    asked for by a poll, the client's history says) and the BQN follow."""

    def polled() -> set[str]:
        url = f"{processes.url}/api/v1/clients/{id_servicio}/history"
        events = requests.get(url, headers=API, timeout=5).json()["events"]
        return {e["id"] for e in events if e["event"] in QUEUED and e.get("via") in POLLER}

    before = polled()
    assert churn(wisphub_sim, [id_servicio], seed=id_servicio) == [id_servicio]
    eventually(
        lambda: bool(polled() - before) and _converged(wisphub_sim, bqn_sim),
        f"the poller to find client {id_servicio}'s change",
    )


def _reconciles(processes: Processes, since: float) -> list[str]:
    """When each reconcile that ran was queued (ISO, UTC), for those queued after `since`: from
    the reconciles the API lists and each one's job."""
    listed = requests.get(f"{processes.url}/api/v1/reconciles?limit=100", headers=API, timeout=5)
    queued = []
    for run in listed.json()["reconciles"]:
        job = requests.get(f"{processes.url}/api/v1/jobs/{run['job_id']}", headers=API, timeout=5)
        at = job.json()["enqueued_at"]
        if datetime.fromisoformat(at).timestamp() > since:
            queued.append(at)
    return queued


def _queued(redis: Redis, kind: JobKind, since: float, until: float) -> int:
    """How many `kind` jobs were queued between `since` and `until`, whatever came of them."""
    queue = Queue(defaults.QUEUE_NAME, connection=redis)
    registries = (
        queue.started_job_registry,
        queue.finished_job_registry,
        queue.failed_job_registry,
        queue.scheduled_job_registry,
    )
    ids = queue.get_job_ids() + [job_id for r in registries for job_id in r.get_job_ids()]
    return sum(
        job.func_name == kind.path and since <= job.enqueued_at.timestamp() <= until
        for job in Job.fetch_many(ids, connection=redis)
        if job is not None
    )


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
    waits = _waits(redis)
    assert web.post("/webhooks/wisphub", json={"id_servicio": 6}, headers=HOOK).status_code == 202
    assert _waits(redis) > waits, "a 202 waits for the replica while there is one"

    redis_ha.replica().kill()
    eventually(lambda: web.get("/readyz").json["replication"] == "degraded", "degraded mode")
    ready = web.get("/readyz", headers=API)
    assert ready.status_code == 200, "the service stays ready on the master alone"
    assert ready.json["replicas"] == 0
    waits = _waits(redis)
    assert web.post("/webhooks/wisphub", json={"id_servicio": 7}, headers=HOOK).status_code == 202
    assert _waits(redis) == waits, "no wait for a replica that is not there"


def _waits(redis: Redis) -> int:
    """How many WAIT commands the master has run (none yet: Redis lists none)."""
    return redis.info("commandstats").get("cmdstat_wait", {"calls": 0})["calls"]


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


def ready(processes: Processes) -> dict:
    """What /readyz tells the API token's holder (the master among it); {} while unreachable."""
    answer = requests.get(f"{processes.url}/readyz", headers=API, timeout=5)
    return answer.json() if answer.status_code == 200 else {}


@pytest.mark.slow
@pytest.mark.timeout(IN_FLIGHT + 120)
@pytest.mark.parametrize("redis_ha", ["tls"], indirect=True)
def test_over_tls_only_the_processes_queue_apply_and_fail_over(
    ha_env, redis_ha, wisphub_sim, bqn_sim
):
    """The servers and sentinels take TLS only (no plain port), so every process reaches them
    over TLS or not at all: to the sentinels, to the master, and to the new master."""
    ids = [r["id_servicio"] for r in wisphub_sim.load(10)]
    processes = start(ha_env)
    redis = client(ha_env)

    def applied_and_named(index: int, master: int) -> None:
        """A change of client `ids[index]`, notified and answered 202, reaches the BQN (its own
        job finished, not only the poller); /readyz names `master`."""
        sender = Sender(processes.url, churn(wisphub_sim, [ids[index]], seed=index))
        sender.run()  # sends again while refused, as during the failover
        assert sender.error is None, sender.error
        assert sender.accepted, "a change was notified"

        def finished() -> bool:
            jobs = Job.fetch_many(sender.accepted, connection=redis)
            return all(job is not None and job.get_status() == "finished" for job in jobs)

        eventually(finished, "the notified job to be applied", IN_FLIGHT)
        assert_converged(wisphub_sim, bqn_sim)
        named = f"127.0.0.1:{master}"
        eventually(lambda: ready(processes).get("redis_master") == named, f"/readyz: {named}")

    try:
        eventually(lambda: bqn_sim.state.stats.count() > 0 and idle(redis), "the reconcile")
        assert connection.address(redis).startswith("sentinel+tls://wisphub/0")
        applied_and_named(0, redis_ha.master_port())
        old = redis_ha.master_port()
        redis_ha.servers[old].kill()
        applied_and_named(1, redis_ha.wait_for_master(not_port=old))
        processes.check_alive()
    finally:
        processes.stop()


@pytest.mark.parametrize("redis_ha", ["tls"], indirect=True)
def test_over_tls_a_client_trusting_another_ca_is_refused(ha_env, redis_ha, tmp_path):
    """Checked certificates: a process whose CA did not sign the servers' certificate reaches
    nothing, and says why; the same settings without TLS reach nothing either (no plain port)."""
    other = make_tls(tmp_path / "other-ca")
    web = create_app({**ha_env, "REDIS_TLS_CA_FILE": str(other.ca)}).test_client()
    answer = web.get("/readyz", headers=API)
    assert answer.status_code == 503
    assert "CERTIFICATE_VERIFY_FAILED" in answer.json["redis"]
    assert web.post("/webhooks/wisphub", json={"id_servicio": 7}, headers=HOOK).status_code == 503

    plain = {key: value for key, value in ha_env.items() if not key.startswith("REDIS_TLS")}
    with pytest.raises(RedisConnectionError):
        client(plain).ping()
    assert client(ha_env).ping(), "the right CA is let in"


def test_the_ha_compose_worker_check_reaches_the_workers_through_the_sentinels(ha_env, redis_ha):
    """deploy/ha/docker-compose.yml's worker health check, run as written: unhealthy until a
    worker of this host is registered on the master the sentinels name, healthy then."""
    [_, *command] = compose("deploy/ha/docker-compose.yml")["services"]["worker"]["healthcheck"][
        "test"
    ]
    assert check(command, ha_env) != 0
    processes = Processes(ha_env, ["worker"])
    try:
        eventually(lambda: check(command, ha_env) == 0, "the check to pass", 30)
    finally:
        processes.stop()
