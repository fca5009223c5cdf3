"""The BQN address is the unit of ownership: each case that once cost a paying client its
subscriber, as an operator would meet it, through notifications and real RQ workers.

Each test names the case it covers; the concurrent ones (several worker processes) are in
`test_convergence.py`.
"""

from __future__ import annotations

import pytest
from rq.job import Job

from tests.integration.conftest import (
    API,
    HOOK,
    expected_subscribers,
    managed_state,
)
from tests.rows import row
from worker import queueing, store

pytestmark = pytest.mark.integration

X, Y, Z = "10.60.0.1", "10.60.0.2", "10.60.0.3"
EARLY, LATE = "01/11/2026 08:00:00", "02/11/2026 08:00:00"


def notify(web, *ids):
    response = web.post("/webhooks/wisphub", json={"id_servicio": list(ids)}, headers=HOOK)
    assert response.status_code == 202, response.json
    return [job["job_id"] for job in response.json["jobs"]]


def status(redis, job_id):
    return Job.fetch(job_id, connection=redis).get_status()


@pytest.mark.parametrize("how", ["cancelled", "moved"])
def test_one_person_two_services_the_old_one_leaving_keeps_the_new_one(
    web, work, wisphub_sim, bqn_sim, how
):
    """Case 1: a new service of the same `nombre` takes the old one's IP; the old service is
    then cancelled or moved. Its job used to delete the new service's subscriber."""
    state = wisphub_sim.state
    state.upsert_client(row(1, X, nombre="Ana Pérez", plan="Online_basico", ultimo_cambio=EARLY))
    notify(web, 1)
    work()
    state.upsert_client(row(2, X, nombre="Ana Pérez", plan="Plan 20 Megas", ultimo_cambio=LATE))
    notify(web, 2)
    work()
    assert managed_state(bqn_sim) == {X: ("Ana Pérez", "Plan_20_Megas")}
    if how == "cancelled":
        state.update_client(1, estado="Cancelado")
    else:
        state.update_client(1, ip=Y)
    notify(web, 1)
    work()
    assert managed_state(bqn_sim) == expected_subscribers(wisphub_sim.rows())
    assert managed_state(bqn_sim)[X] == ("Ana Pérez", "Plan_20_Megas")


def test_a_duplicate_ip_undone_gives_the_ip_back_to_its_owner(web, work, wisphub_sim, bqn_sim):
    """Case 3: client 2 is given client 1's IP by mistake (client 2 wins), then corrected.
    Client 1, never changed, used to be left without a subscriber."""
    state = wisphub_sim.state
    state.upsert_client(row(1, X, nombre="Uno", plan="Online_basico", ultimo_cambio=EARLY))
    state.upsert_client(row(2, Y, nombre="Dos", plan="Online_basico", ultimo_cambio=EARLY))
    notify(web, 1, 2)
    work()
    state.update_client(2, ip=X)
    notify(web, 2)
    work()
    assert managed_state(bqn_sim) == {X: ("Dos", "Online_basico")}
    state.update_client(2, ip=Z)
    notify(web, 2)
    work()
    assert managed_state(bqn_sim) == {
        X: ("Uno", "Online_basico"),
        Z: ("Dos", "Online_basico"),
    }


@pytest.fixture
def service_env(service_env):
    """One BQN write at a time (so a test can tell which write fails), quick retries."""
    return {
        **service_env,
        "BQN_CONCURRENCY": "1",
        "BQN_RETRIES": "0",
        "RETRY_INTERVALS": "1,1,1,1,1",
    }


def test_a_partly_failed_job_then_another_move_leaves_no_orphan(
    web, work, settle, wisphub_sim, bqn_sim, redis
):
    """Case 7: a job creates the new subscriber but its delete of the old one fails; the
    client then moves again. The job used to remember its previous entries, not what it
    wrote, and the subscriber it created stayed on the BQN for nobody."""
    state = wisphub_sim.state
    state.upsert_client(row(1, X, nombre="Uno", plan="Online_basico"))
    notify(web, 1)
    work()
    state.update_client(1, ip=Y)
    bqn_sim.state.faults.update(fail_every=2, fail_status=503, writes_only=True)
    [job_id] = notify(web, 1)
    work()
    assert status(redis, job_id) == "scheduled", "the failed delete is retried"
    assert managed_state(bqn_sim) == {X: ("Uno", "Online_basico"), Y: ("Uno", "Online_basico")}
    assert set(store.last_applied(redis, 1).ips) == {X, Y}, "it remembers what it wrote"
    bqn_sim.state.faults.clear()
    state.update_client(1, ip=Z)
    assert notify(web, 1) == [job_id], "the waiting retry takes the latest state"
    settle()
    assert managed_state(bqn_sim) == {Z: ("Uno", "Online_basico")}
    assert store.last_applied(redis, 1).ips == (Z,)


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
    assert status(redis, job_id) == "scheduled"
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
    assert status(redis, job_id) == "queued", "a person's request runs the retry now"
    work()
    assert status(redis, job_id) == "finished"
    assert managed_state(bqn_sim) == {X: ("Uno", "Online_Free")}


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
    assert status(redis, job_id) == "failed"
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


def test_a_job_records_the_other_claimants_it_found_in_their_footprints(
    web, work, wisphub_sim, bqn_sim, redis
):
    """Client 1 moves A→B while client 2 moves B→A, and only client 1 is notified: its job
    gives A to client 2, so client 2's footprint must hold A, and client 2's next move (to a
    third IP) clears A without any help from the poller."""
    state = wisphub_sim.state
    state.upsert_client(row(1, X, nombre="Uno", plan="Online_basico"))
    state.upsert_client(row(2, Y, nombre="Dos", plan="Online_basico"))
    notify(web, 1, 2)
    work()
    state.update_client(1, ip=Y)
    state.update_client(2, ip=X)
    notify(web, 1)
    work()
    assert managed_state(bqn_sim) == {X: ("Dos", "Online_basico"), Y: ("Uno", "Online_basico")}
    assert X in store.last_applied(redis, 2).ips
    state.update_client(2, ip=Z)
    notify(web, 2)
    work()
    assert managed_state(bqn_sim) == {Y: ("Uno", "Online_basico"), Z: ("Dos", "Online_basico")}


def test_a_job_to_be_retried_leaves_the_work_to_a_follow_up_already_waiting(
    web, work, wisphub_sim, queue, redis
):
    """One job per client: a job that must be retried takes its claim back, unless a follow-up
    queued while it ran waits already; then it is not retried at all."""
    wisphub_sim.state.upsert_client(row(1, X))
    [first] = notify(web, 1)
    job = Job.fetch(first, connection=redis)
    queueing.release_claim(redis, job)  # the worker started it
    job.set_status("started")
    assert queueing.reclaim(redis, job) is None, "no follow-up: it takes its claim back"
    job.set_status("scheduled")
    assert notify(web, 1) == [first], "later requests wait for the retry"
    queueing.release_claim(redis, job)
    job.set_status("started")
    [follow_up] = notify(web, 1)
    assert follow_up != first
    assert queueing.reclaim(redis, job) == follow_up, "the follow-up does the work instead"
    assert queueing.waiting_instead(redis, job) == follow_up
