"""Batches: many clients changed at once are applied together, with every guarantee of the
client job (claims and coalescing, fresh reads, shared IPs, per-client history, retries of
only what failed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq.job import Job

from tests.integration.conftest import API, HOOK, managed_state, notify
from tests.rows import row
from worker.core.changes import rows_by_id
from worker.queue import queueing, store
from worker.rqworker import PromptStop
from worker.settings import ServiceSettings

pytestmark = pytest.mark.integration

BLOCK = "Wisphub_block"


@pytest.fixture
def service_env(service_env):
    """Small batches, so that a handful of clients makes several; quick retries."""
    return {**service_env, "BATCH_SIZE": "8", "RETRY_INTERVALS": "1,1,1", "BQN_RETRIES": "0"}


def ip(key: int) -> str:
    return f"10.70.{key // 250}.{key % 250}"


def clients(wisphub_sim, count: int, first: int = 100) -> list[int]:
    ids = list(range(first, first + count))
    for key in ids:
        wisphub_sim.state.upsert_client(row(key, ip(key), nombre=f"C{key}", plan="Online_basico"))
    return ids


def run_one_job(queue) -> None:
    """Run only the job at the head of the queue (a poll, leaving what it queued waiting)."""
    PromptStop([queue], connection=queue.connection).work(burst=True, max_jobs=1)


def poll_now(queue, redis) -> str:
    if redis.exists(store.SNAPSHOT_TAKEN):
        redis.set(store.SNAPSHOT_TAKEN, 0)  # the last pass is old: this poll is not skipped
    return queue.enqueue("worker.jobs.poll_changes").id


def suspended_unannounced(web, work, queue, redis, wisphub_sim, count: int):
    """`count` clients synced and a first pass taken, then all suspended in WispHub with no
    notification and a poll run alone: the clients, and the jobs it queued (not run yet)."""
    ids = clients(wisphub_sim, count)
    notify(web, *ids)
    work()
    poll_now(queue, redis)
    work()  # the first pass only records a baseline
    for key in ids:
        wisphub_sim.state.update_client(key, estado="Suspendido")
    wisphub_sim.state.stats.reset()
    poll = poll_now(queue, redis)
    run_one_job(queue)
    return ids, Job.fetch(poll, connection=redis).return_value()["jobs"]


def test_a_cut_off_pass_is_applied_in_batches_without_reading_each_client_again(
    web, work, queue, redis, wisphub_sim, bqn_sim
):
    ids, jobs = suspended_unannounced(web, work, queue, redis, wisphub_sim, 20)
    assert len(set(jobs)) == 3, "20 clients in batches of at most 8: 7, 7 and 6"
    work()
    assert {ip: policy for ip, (_, policy) in managed_state(bqn_sim).items()} == {
        ip(key): BLOCK for key in ids
    }
    # the pass's own page and the plan lookups, not one read per client
    assert wisphub_sim.state.stats.count("GET") < 5
    events = web.get(f"/api/v1/clients/{ids[0]}/history", headers=API).json["events"]
    batch_job = events[0]["job_id"]
    assert batch_job in jobs
    assert [e["event"] for e in events if e["job_id"] == batch_job][:3] == [
        "done",
        "operation",
        "read",
    ]
    assert events[0]["ok"] is True
    assert events[0]["updated"] == 1


def test_a_notification_while_a_batch_waits_makes_it_read_that_client_again(
    web, work, queue, redis, wisphub_sim, bqn_sim
):
    ids, jobs = suspended_unannounced(web, work, queue, redis, wisphub_sim, 4)
    [batch_job] = set(jobs)
    # the client pays before the batch runs: WispHub says so, and notifies
    wisphub_sim.state.update_client(ids[0], estado="Activo")
    assert notify(web, ids[0]) == [batch_job], "coalesced into the waiting batch"
    work()
    state = managed_state(bqn_sim)
    assert state[ip(ids[0])][1] == "Online_basico", "the pass's row was not used for it"
    assert {state[ip(key)][1] for key in ids[1:]} == {BLOCK}


def rq_workers(service_env, queue, count: int) -> list[subprocess.Popen]:
    """`count` RQ workers in processes of their own, until the queue is empty."""
    rq = Path(sys.executable).with_name("rq")
    command = [rq, "worker", "--burst", "-w", "worker.rqworker.PromptStop"]
    return [
        subprocess.Popen(
            [*command, "-u", service_env["REDIS_URL"], queue.name],
            env={**os.environ, **service_env},
        )
        for _ in range(count)
    ]


def wait_for_status(redis, job_id: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while Job.fetch(job_id, connection=redis).get_status() != status:
        assert time.monotonic() < deadline, f"job {job_id} never {status}"
        time.sleep(0.02)


def test_a_notification_during_a_batch_gets_exactly_one_follow_up(
    web, work, queue, redis, wisphub_sim, bqn_sim, service_env
):
    ids = clients(wisphub_sim, 6)
    bqn_sim.state.faults.update(latency_ms=300)  # the batch is still writing when it comes
    [batch_job] = set(notify(web, *ids))
    [worker] = rq_workers(service_env, queue, 1)
    deadline = time.monotonic() + 30
    while redis.exists(store.pending_key(ids[2])):  # until the batch has begun: claims cleared
        assert time.monotonic() < deadline, "the batch never began"
        time.sleep(0.02)
    assert Job.fetch(batch_job, connection=redis).get_status() == "started"
    wisphub_sim.state.update_client(ids[2], estado="Suspendido")
    first = notify(web, ids[2])
    again = notify(web, ids[2])
    assert first == again, "one follow-up, however many requests"
    assert first != [batch_job]
    assert worker.wait(60) == 0
    bqn_sim.state.faults.clear()
    work()
    assert Job.fetch(first[0], connection=redis).get_status() == "finished"
    assert managed_state(bqn_sim)[ip(ids[2])][1] == BLOCK


def test_a_follow_up_waiting_for_its_clients_lock_still_takes_every_request(
    web, queue, redis, wisphub_sim, bqn_sim, service_env
):
    """With idle workers about, a job starts at once and waits for its client's lock (here
    held by another job): until it holds the lock it has read nothing, so later requests
    coalesce into it."""
    [key] = clients(wisphub_sim, 1)
    assert store.take_client_locks(redis, [key], "another-job") == [key]
    [waiting] = notify(web, key)
    [worker] = rq_workers(service_env, queue, 1)
    wait_for_status(redis, waiting, "started")  # and waiting for the lock
    wisphub_sim.state.update_client(key, estado="Suspendido")
    assert notify(web, key) == [waiting]
    assert notify(web, key) == [waiting]
    store.release_locks(redis, [store.client_lock_key(key)], "another-job")
    assert worker.wait(60) == 0
    assert managed_state(bqn_sim)[ip(key)][1] == BLOCK
    assert queue.count == 0, "no other job was queued"


def test_a_shared_ip_in_a_batch_goes_to_the_latest_change(web, work, wisphub_sim, bqn_sim):
    older = row(60, "10.9.0.1", nombre="Antes", plan="Online_basico")
    newer = row(61, "10.9.0.1", nombre="Luego", plan="Online_basico")
    wisphub_sim.state.upsert_client({**newer, "ultimo_cambio": "02/01/2026 00:00:00"})
    wisphub_sim.state.upsert_client({**older, "ultimo_cambio": "01/01/2026 00:00:00"})
    notify(web, 60, 61)
    work()
    assert managed_state(bqn_sim) == {"10.9.0.1": ("Luego", "Online_basico")}
    skipped = web.get("/api/v1/clients/60/history", headers=API).json["events"]
    assert any(e["event"] == "skipped" for e in skipped)


def test_only_the_clients_that_failed_are_retried(web, work, queue, redis, wisphub_sim, bqn_sim):
    notify(web, *clients(wisphub_sim, 1, first=90))
    work()  # the plan's policy is in place: the batch below writes subscribers only
    ids = clients(wisphub_sim, 6)
    bqn_sim.state.faults.update(fail_next=2, fail_status=503, writes_only=True)
    [batch_job] = set(notify(web, *ids))
    work()
    job = Job.fetch(batch_job, connection=redis)
    assert job.get_status() == "scheduled"
    unsettled = job.meta[queueing.UNSETTLED]
    assert len(unsettled) == 2
    assert set(unsettled) < set(ids)
    before = bqn_sim.writes()
    time.sleep(1.2)
    work(scheduler=True)
    while Job.fetch(batch_job, connection=redis).get_status() != "finished":
        time.sleep(0.2)
        work(scheduler=True)
    assert bqn_sim.writes() - before == 2, "only the two that failed were sent again"
    assert len(managed_state(bqn_sim)) == 7
    for key in unsettled:
        events = web.get(f"/api/v1/clients/{key}/history", headers=API).json["events"]
        assert [e["event"] for e in events].count("done") == 2  # failed once, then went through


def test_a_batch_refused_for_good_lists_its_clients_and_requeues_them(
    web, work, wisphub_sim, bqn_sim
):
    ids = clients(wisphub_sim, 3)
    bqn_sim.state.faults.update(fail_every=1, fail_status=400, writes_only=True)
    notify(web, *ids)
    work()
    [failure] = web.get("/api/v1/failures", headers=API).json["failures"]
    assert failure["clients"] == ids
    bqn_sim.state.faults.clear()
    web.post("/api/v1/failures/requeue", headers=API)
    work()
    assert len(managed_state(bqn_sim)) == 3
    assert web.get("/api/v1/failures", headers=API).json["count"] == 0


def test_a_burst_of_notifications_takes_a_job_per_request_not_per_client(web, queue, wisphub_sim):
    ids = clients(wisphub_sim, 40)
    for start in range(0, 40, 8):
        response = web.post(
            "/webhooks/wisphub", json={"id_servicio": ids[start : start + 8]}, headers=HOOK
        )
        assert response.status_code == 202
    assert queue.count == 5


def test_rows_a_pass_read_before_a_jobs_read_are_not_applied_over_it(
    web, work, queue, redis, wisphub_sim, bqn_sim
):
    """The pass reads a client suspended; the client pays and its notification's job applies
    that; only then does the poller queue the batch with the row it read. The batch must not
    put the suspension back."""
    ids = clients(wisphub_sim, 3)
    notify(web, *ids)
    work()
    for key in ids:
        wisphub_sim.state.update_client(key, estado="Suspendido")
    read_at = store.now(redis)
    pass_rows = rows_by_id(wisphub_sim.rows())
    wisphub_sim.state.update_client(ids[0], estado="Activo")  # the client pays
    notify(web, ids[0])
    work()
    assert managed_state(bqn_sim)[ip(ids[0])][1] == "Online_basico"
    service = ServiceSettings.from_env(os.environ)
    queueing.request_syncs(queue, ids, "poll", service, rows=queueing.Carried(read_at, pass_rows))
    work()
    state = managed_state(bqn_sim)
    assert state[ip(ids[0])][1] == "Online_basico", "the newer read wins"
    assert {state[ip(key)][1] for key in ids[1:]} == {BLOCK}


def test_clients_another_job_is_applying_wait_for_the_batchs_retry(
    web, work, queue, redis, wisphub_sim, bqn_sim
):
    ids = clients(wisphub_sim, 3)
    assert store.take_client_locks(redis, [ids[0]], "another-job") == [ids[0]]
    [batch_job] = set(notify(web, *ids))
    work()
    job = Job.fetch(batch_job, connection=redis)
    assert job.get_status() == "scheduled"
    assert job.meta[queueing.UNSETTLED] == [ids[0]]
    assert queue.count == 0, "no job handed over: the batch retries it itself"
    assert set(managed_state(bqn_sim)) == {ip(key) for key in ids[1:]}
    assert notify(web, ids[0]) == [batch_job], "its claim is the batch's again"
    store.release_locks(redis, [store.client_lock_key(ids[0])], "another-job")
    deadline = time.monotonic() + 30
    while Job.fetch(batch_job, connection=redis).get_status() != "finished":
        assert time.monotonic() < deadline, "the retry never ran"
        work(scheduler=True)
        time.sleep(0.3)
    assert set(managed_state(bqn_sim)) == {ip(key) for key in ids}


def test_a_job_that_outlasts_its_retries_fails_in_the_list_and_the_history(
    web, work, queue, redis, wisphub_sim, bqn_sim
):
    [key] = clients(wisphub_sim, 1)
    bqn_sim.state.faults.update(fail_every=1, fail_status=503, writes_only=True)
    [job_id] = notify(web, key)
    deadline = time.monotonic() + 30
    while Job.fetch(job_id, connection=redis).get_status() != "failed":
        assert time.monotonic() < deadline, "still retrying"
        work(scheduler=True)
        time.sleep(0.3)
    [failure] = web.get("/api/v1/failures", headers=API).json["failures"]
    assert failure["id_servicio"] == key
    assert "still failing after 3 retries" in failure["error"]
    events = web.get(f"/api/v1/clients/{key}/history", headers=API).json["events"]
    assert events[0]["event"] == "failed"
    assert redis.exists(store.failed_key(store.pending_key(key)))
