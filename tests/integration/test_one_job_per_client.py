"""One job per client: a client whose job waits (in the queue, or for a retry) is not queued
again; the waiting job takes the latest state; a failure for good waits in the failures list."""

from __future__ import annotations

import pytest
from rq.job import Job

from tests.integration.conftest import API, job_status, managed_state, notify
from tests.rows import row
from worker.queue import queueing, store

pytestmark = pytest.mark.integration

X = "10.63.0.1"


@pytest.fixture
def service_env(service_env):
    """Retries a minute apart: a test sees a job waiting for its retry."""
    return {**service_env, "RETRY_INTERVALS": "60,60,60,60,60", "BQN_RETRIES": "0"}


def test_a_notification_runs_a_waiting_retry_once_then_waits_for_it(
    web, work, wisphub_sim, bqn_sim, redis
):
    """A notification for a client whose job waits for a retry runs it at once (WispHub
    changed; the BQN may be back), but only once per job, so a failure that lasts keeps its
    backoff instead of spending a retry per notification."""
    wisphub_sim.state.upsert_client(row(1, X, nombre="Uno", plan="Online_basico"))
    bqn_sim.state.faults.update(fail_every=1, fail_status=503, writes_only=True)
    [job_id] = notify(web, 1)
    work()
    assert job_status(redis, job_id) == "scheduled"
    assert notify(web, 1) == [job_id]
    assert job_status(redis, job_id) == "queued", "run at once"
    work()
    assert job_status(redis, job_id) == "scheduled", "the BQN still fails: a retry later"
    assert notify(web, 1) == [job_id]
    assert job_status(redis, job_id) == "scheduled", "not run early twice"


@pytest.mark.slow
def test_a_client_waiting_for_a_retry_is_not_queued_again(
    web, work, wisphub_sim, bqn_sim, queue, redis
):
    """Case 9: while a notified job waits for its retry, the poller found the client changed
    and queued a second job for it. Now the poller's request waits for that retry (its drift
    correction runs it at once), and a person's request does too."""
    state = wisphub_sim.state
    state.upsert_client(row(1, X, nombre="Uno", plan="Online_basico"))
    notify(web, 1)
    work()
    queue.enqueue("worker.jobs.poll_changes")  # the first pass: the baseline
    work()
    bqn_sim.state.faults.update(fail_every=1, fail_status=503, writes_only=True)
    state.update_client(1, estado="Suspendido")
    [job_id] = notify(web, 1)
    work()
    assert job_status(redis, job_id) == "scheduled"
    state.update_client(1, plan_internet=451072, estado="Activo")
    redis.set(store.SNAPSHOT_TAKEN, 0)  # let the next poll run at once
    poll = queue.enqueue("worker.jobs.poll_changes")
    work()
    result = Job.fetch(poll.id, connection=redis).return_value()
    assert result["jobs"] == [job_id], "the poll asks the waiting retry, not a second job"
    waiting = {*queue.get_job_ids(), *queue.scheduled_job_registry.get_job_ids()}
    assert waiting == {job_id}
    bqn_sim.state.faults.clear()
    response = web.post("/api/v1/clients/1/sync", headers=API)
    assert response.json == {"job_id": job_id, "coalesced": True}
    assert job_status(redis, job_id) == "queued", "a person's request runs the retry now"
    work()
    assert job_status(redis, job_id) == "finished"
    assert managed_state(bqn_sim) == {X: ("Uno", "Online_Free")}


@pytest.mark.slow
def test_a_client_whose_job_failed_for_good_waits_in_the_failures_list(
    web, work, wisphub_sim, bqn_sim, queue, redis
):
    """The poller's drift correction does not queue, poll after poll, a client whose last job
    failed for good (the failures list holds it, for a person to requeue once the cause is
    fixed); a change of the client in WispHub still queues it."""
    state = wisphub_sim.state
    state.upsert_client(row(1, X, nombre="Uno", plan="Online_basico"))
    bqn_sim.state.faults.update(fail_every=1, fail_status=400, writes_only=True)
    [job_id] = notify(web, 1)
    work()
    assert job_status(redis, job_id) == "failed"
    for _ in range(2):
        if redis.exists(store.SNAPSHOT_TAKEN):
            redis.set(store.SNAPSHOT_TAKEN, 0)  # let the next poll run at once
        poll = queue.enqueue("worker.jobs.poll_changes")
        work()
        result = Job.fetch(poll.id, connection=redis).return_value()
        assert result["drift"]["clients"] == 1
        assert result["jobs"] == []
    assert queue.failed_job_registry.count == 1
    bqn_sim.state.faults.clear()
    state.update_client(1, estado="Suspendido")
    redis.set(store.SNAPSHOT_TAKEN, 0)
    queue.enqueue("worker.jobs.poll_changes")
    work()
    assert managed_state(bqn_sim) == {X: ("Uno", "Wisphub_block")}


def test_a_job_to_be_retried_leaves_the_work_to_a_follow_up_already_waiting(
    web, work, wisphub_sim, queue, redis
):
    """One job per client: a job that must be retried takes its claim back, unless a follow-up
    queued while it ran waits already; then it is not retried at all."""
    wisphub_sim.state.upsert_client(row(1, X))
    [first] = notify(web, 1)
    job = Job.fetch(first, connection=redis)
    claims = [store.pending_key(1)]
    assert queueing.begin(redis, first, claims)[0] == [None]  # the worker started it
    job.set_status("started")
    assert queueing.reclaim(redis, first, claims) == [None], "no follow-up: takes its claim back"
    job.set_status("scheduled")
    assert notify(web, 1) == [first], "later requests wait for the retry"
    assert queueing.begin(redis, first, claims)[0] == [None]
    job.set_status("started")
    [follow_up] = notify(web, 1)
    assert follow_up != first
    assert queueing.reclaim(redis, first, claims) == [follow_up], "the follow-up does it instead"
    assert queueing.begin(redis, first, claims)[0] == [follow_up]
