"""Upgrades: RQ keeps each job's function as a dotted path in Redis, so jobs queued or failed
by the previous release must still run after an upgrade, and during a rolling upgrade each
release must run the other's jobs (docs/upgrading.md)."""

from __future__ import annotations

import pytest
from rq import Retry
from rq.utils import import_attribute

from tests.integration.conftest import API, API_KEY, job_status, managed_state
from tests.rows import row
from worker.queue import queueing, store
from worker.settings import ServiceSettings

pytestmark = pytest.mark.integration

# The job paths the previous release (0.1) stored with its jobs.
PREVIOUS_RELEASE = {
    "worker.jobs.sync_client",
    "worker.jobs.sync_address",
    "worker.jobs.reconcile",
    "worker.jobs.sync_plans",
    "worker.jobs.poll_changes",
}
# Paths this release adds: a worker of the previous release cannot run them (upgrading.md says
# to upgrade the workers first; RQ's restarts run such a job again meanwhile).
NEW_IN_THIS_RELEASE = {"worker.jobs.sync_clients", "worker.jobs.expire_overrides"}
# How the previous release queued a client job: its path, the client, RQ's restarts.
PREVIOUS_RESTARTS = Retry(max=3, interval=[5, 60, 300])


def test_this_release_queues_every_job_under_the_previous_paths(queue, service_env):
    assert set(queueing.KINDS) == PREVIOUS_RELEASE | NEW_IN_THIS_RELEASE
    for kind in queueing.KINDS.values():
        # RQ stores a function it is given under its module and name: the scheduler's jobs
        # and any job queued with the function itself must land on the same path
        function = import_attribute(kind.path)
        assert f"{function.__module__}.{function.__qualname__}" == kind.path
    [queued] = queueing.request_syncs(queue, [1], "api", ServiceSettings.from_env(service_env))
    assert queue.fetch_job(queued.job_id).func_name == "worker.jobs.sync_client"
    reconcile = queueing.enqueue_reconcile(queue, dry_run=True)
    assert queue.fetch_job(reconcile).func_name == "worker.jobs.reconcile"


@pytest.mark.slow
def test_jobs_the_previous_release_queued_run_after_the_upgrade(
    work, wisphub_sim, bqn_sim, queue, redis
):
    wisphub_sim.state.upsert_client(row(70, "10.9.0.70", nombre="Rosa", plan="Online_basico"))
    # queued as the previous release did: by path, under the client's claim
    redis.set(store.pending_key(70), "old-sync-70")
    queue.enqueue("worker.jobs.sync_client", 70, job_id="old-sync-70", retry=PREVIOUS_RESTARTS)
    queue.enqueue("worker.jobs.sync_plans", job_id="old-plans")
    work()
    assert job_status(redis, "old-sync-70") == "finished"
    assert job_status(redis, "old-plans") == "finished"
    assert managed_state(bqn_sim) == {"10.9.0.70": ("Rosa", "Online_basico")}
    assert "Online_basico" in bqn_sim.policies()
    # the claim was released: the next change queues a job of its own
    assert redis.get(store.pending_key(70)) is None

    wisphub_sim.state.upsert_client(row(71, "10.9.0.71", nombre="Teo", plan="Online_basico"))
    wisphub_sim.state.update_client(70, estado="Suspendido")
    queue.enqueue("worker.jobs.reconcile", kwargs={"dry_run": False}, job_id="old-reconcile")
    queue.enqueue("worker.jobs.poll_changes", job_id="old-poll")
    work()
    assert job_status(redis, "old-reconcile") == "finished"
    assert job_status(redis, "old-poll") == "finished"
    assert managed_state(bqn_sim) == {
        "10.9.0.70": ("Rosa", "Wisphub_block"),
        "10.9.0.71": ("Teo", "Online_basico"),
    }


@pytest.mark.slow
def test_a_job_that_failed_before_the_upgrade_is_requeued_and_runs(
    web, work, wisphub_sim, bqn_sim, queue, redis
):
    wisphub_sim.state.upsert_client(row(72, "10.9.0.72", nombre="Uma", plan="Online_basico"))
    wisphub_sim.state.api_key = "rotated"  # the job fails for good
    queue.enqueue("worker.jobs.sync_client", 72, job_id="old-sync-72", retry=PREVIOUS_RESTARTS)
    work()
    assert job_status(redis, "old-sync-72") == "failed"

    wisphub_sim.state.api_key = API_KEY  # the operator fixed the key, after the upgrade
    requeued = web.post("/api/v1/failures/requeue", headers=API).json["requeued"]
    assert [item["failed_job_id"] for item in requeued] == ["old-sync-72"]
    work()
    assert job_status(redis, requeued[0]["job_id"]) == "finished"
    assert managed_state(bqn_sim) == {"10.9.0.72": ("Uma", "Online_basico")}
