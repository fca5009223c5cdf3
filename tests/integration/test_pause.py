"""Pausing writes for a BQN's maintenance, with the Procfile's worker command (a pool of real RQ
workers), a real Redis and the simulators: while paused, notifications are queued and coalesced
and nothing reaches the BQN; once resumed, what was queued is applied."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Queue, Worker
from rq.suspension import is_suspended, suspend

from tests.integration.conftest import API, API_TOKEN, managed_state, notify
from tests.integration.processes import Processes, eventually
from tests.integration.test_status_page import basic, csrf_of
from tests.rows import row
from worker.queue import pause
from worker.queue.scheduler import build
from worker.settings import ServiceSettings

pytestmark = pytest.mark.integration

PROCESSES = 2


def ip(key: int) -> str:
    return f"10.72.0.{key}"


def status(queue: Queue, job_id: str) -> str:
    return queue.fetch_job(job_id).get_status()


@pytest.fixture
def pool(service_env: dict[str, str], redis: Redis, queue: Queue) -> Iterator[Processes]:
    """The Procfile's worker command alone, once its workers are registered."""
    env = {**service_env, "WORKER_PROCESSES": str(PROCESSES), "BQN_TIMEOUT": "5"}
    processes = Processes(env, ["worker"])
    try:
        eventually(lambda: len(Worker.all(queue=queue)) == PROCESSES, "the workers")
        yield processes
    finally:
        processes.stop()


def metric(web, name: str) -> float:
    text = web.get("/metrics", headers=API).get_data(as_text=True)
    [line] = [line for line in text.splitlines() if line.startswith(f"wisphub_bqn_sync_{name} ")]
    return float(line.split()[1])


@pytest.mark.slow
def test_paused_writes_wait_in_the_queue_until_resumed(
    pool, web, redis, queue, wisphub_sim, bqn_sim
):
    """Fails if a worker runs a job during the pause (one already waiting on the queue when the
    pause begins takes the next job unless it puts it back), if requests stop coalescing, if
    the pause is not shown (readyz, metrics, the API), or if resuming does not apply what
    was queued meanwhile."""
    for key, name in ((1, "Uno"), (2, "Dos"), (3, "Tres")):
        wisphub_sim.state.upsert_client(row(key, ip(key), nombre=name, plan="Online_basico"))
    notify(web, 1)
    eventually(lambda: ip(1) in managed_state(bqn_sim), "the first sync")

    # a job running when the pause is asked finishes; the answer says it runs
    bqn_sim.state.faults.update(latency_ms=1500)
    wisphub_sim.state.update_client(1, estado="Suspendido")
    [running] = notify(web, 1)
    eventually(lambda: status(queue, running) == "started", "the job to start")
    paused = web.post("/api/v1/pause", json={"reason": "BQN upgrade"}, headers=API)
    assert paused.status_code == 200
    answer = paused.json
    assert (answer["paused"], answer["via"], answer["reason"]) == (True, "api", "BQN upgrade")
    assert answer["since"]
    assert answer["running"] == 1

    # while paused: queued and coalesced, never applied; the other worker, waiting on the
    # queue since before the pause, takes the next job at once: it must put it back
    [waiting] = notify(web, 2)
    assert notify(web, 2) == [waiting], "a second request coalesces into the waiting job"
    wisphub_sim.state.update_client(2, nombre="Dos bis")
    assert notify(web, 2) == [waiting]
    [other] = notify(web, 3)
    eventually(lambda: status(queue, running) == "finished", "the running job to finish")
    bqn_sim.state.faults.clear()
    time.sleep(4)
    assert ip(2) not in managed_state(bqn_sim)
    assert ip(3) not in managed_state(bqn_sim)
    assert {status(queue, job_id) for job_id in (waiting, other)} == {"queued"}
    assert queue.count == 2
    assert web.get("/api/v1/pause", headers=API).json["paused"] is True
    ready = web.get("/readyz")
    assert (ready.status_code, ready.json["writes"]) == (200, "paused")
    assert ready.json["writes_paused_since"] == answer["since"]
    assert metric(web, "writes_paused") == 1
    assert len(Worker.all(queue=queue)) == PROCESSES, "suspended workers stay registered"
    again = web.post("/api/v1/pause", headers=API).json
    assert again["since"] == answer["since"], "pausing again keeps its start"

    # resumed: what was queued is applied
    resumed = web.post("/api/v1/resume", headers=API).json
    assert (resumed["paused"], resumed["since"]) == (False, None)
    eventually(
        lambda: (
            managed_state(bqn_sim).get(ip(2)) == ("Dos bis", "Online_basico")
            and ip(3) in managed_state(bqn_sim)
        ),
        "the queued changes to be applied",
    )
    assert status(queue, waiting) == "finished"
    assert metric(web, "writes_paused") == 0
    assert web.get("/readyz").json["writes"] == "ok"


def test_the_page_pauses_and_resumes_writes(web, redis):
    """Fails without the buttons, the banner, or the CSRF check on them."""
    auth = basic(API_TOKEN)
    html = web.get("/", headers=auth).get_data(as_text=True)
    assert 'id="pause"' in html
    assert 'id="paused"' not in html
    assert web.post("/status/pause", data={"reason": "x"}, headers=auth).status_code == 403
    done = web.post(
        "/status/pause", data={"reason": "core switch swap", "csrf": csrf_of(html)}, headers=auth
    )
    assert done.status_code == 302
    assert is_suspended(redis)
    html = web.get("/", headers=auth).get_data(as_text=True)
    assert "Writes to the BQN are paused" in html
    assert "core switch swap" in html
    assert "via status-page" in html
    assert 'id="pause"' not in html
    web.post("/status/resume", data={"csrf": csrf_of(html)}, headers=auth)
    assert not is_suspended(redis)
    assert "Writes to the BQN are paused" not in web.get("/", headers=auth).get_data(as_text=True)


@pytest.mark.parametrize("reason", [7, "a" * 201, ["x"]])
def test_a_pause_reason_is_checked(web, redis, reason):
    answer = web.post("/api/v1/pause", json={"reason": reason}, headers=API)
    assert answer.status_code == 400
    assert not is_suspended(redis)


def test_a_pause_reason_is_one_line(web, redis):
    answer = web.post("/api/v1/pause", json={"reason": " BQN\nupgrade\x1b[2J "}, headers=API)
    assert answer.json["reason"] == "BQN upgrade [2J"


def test_a_pause_by_hand_with_rq_suspend_is_seen(web, redis):
    suspend(redis)
    answer = web.get("/api/v1/pause", headers=API).json
    assert (answer["paused"], answer["via"], answer["since"]) == (True, "rq", None)


def test_the_scheduler_lets_polls_pass_while_paused(service_env, redis, queue):
    """Fails if the poller and the plan refresh pile up in the queue during a pause (a
    maintenance of hours would leave a poll per interval to run at once afterwards)."""
    settings = ServiceSettings.from_env(
        {**service_env, "POLL_INTERVAL": "1", "PLAN_REFRESH_INTERVAL": "1"}
    )
    scheduler = build(settings, redis)
    pause.pause(redis, "api")
    for _ in range(3):
        scheduler.enqueue_jobs()
        time.sleep(0.6)
    assert queue.count == 0
    pause.resume(redis, "api")
    eventually(lambda: bool(scheduler.enqueue_jobs()), "a poll once resumed")
    assert {job.func_name for job in queue.get_jobs()} <= {
        "worker.jobs.poll_changes",
        "worker.jobs.sync_plans",
    }
    assert queue.count >= 1
