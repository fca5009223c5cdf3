"""Two BQNs as an HA pair (`BQN_TARGETS_FILE`, both taking every client), with real Redis and
RQ workers: both hold what WispHub says, and one BQN down never holds the other back."""

from __future__ import annotations

import time

import pytest
from rq.job import Job

from tests.integration.conftest import (
    API,
    BQN_PASSWORD,
    SECOND_BQN_PASSWORD,
    expected_subscribers,
    make_pair_env,
    managed_state,
    notify,
)
from tests.integration.faults.conftest import churn
from worker.queue import breaker, store
from worker.queue.fanout import TARGETS_LEFT
from worker.queue.queueing import enqueue_reconcile

pytestmark = pytest.mark.integration


@pytest.fixture
def service_env(service_env, bqn_sim, second_bqn, tmp_path):
    """The service keeping core-a (`bqn_sim`) and core-b (`second_bqn`)."""
    return {
        **make_pair_env(service_env, bqn_sim, second_bqn, tmp_path),
        "RETRY_INTERVALS": "1,1,1,1,1,1",
    }


@pytest.fixture
def reconciled(wisphub_sim, queue, work):
    """40 clients in WispHub, reconciled onto both BQNs; their ids."""
    rows = wisphub_sim.load(40)
    enqueue_reconcile(queue, dry_run=False)
    work()
    return [row["id_servicio"] for row in rows]


def test_a_reconcile_puts_every_client_on_both_bqns(
    reconciled, wisphub_sim, bqn_sim, second_bqn, web
):
    expected = expected_subscribers(wisphub_sim.rows())
    assert len(expected) > 20  # the seed gives most clients a usable address
    assert managed_state(bqn_sim) == expected
    assert managed_state(second_bqn) == expected
    [entry] = web.get("/api/v1/reconciles", headers=API).json["reconciles"]
    assert entry["ok"] is True
    assert {name: done["ok"] for name, done in entry["targets"].items()} == {
        "core-a": True,
        "core-b": True,
    }


def test_a_notified_change_reaches_both_bqns_with_one_wisphub_read(
    reconciled, wisphub_sim, bqn_sim, second_bqn, web, work, queue
):
    [changed] = churn(wisphub_sim, reconciled[:1])
    reads = wisphub_sim.state.stats.count("GET")
    [job_id] = notify(web, changed)
    work()
    assert wisphub_sim.state.stats.count("GET") - reads == 1  # read once for both targets
    expected = expected_subscribers(wisphub_sim.rows())
    assert managed_state(bqn_sim) == expected
    assert managed_state(second_bqn) == expected
    events = web.get(f"/api/v1/clients/{changed}/history", headers=API).json["events"]
    writes = [e for e in events if e["event"] == "operation" and e["job_id"] == job_id]
    assert sorted(event["target"] for event in writes) == ["core-a", "core-b"]
    result = Job.fetch(job_id, connection=queue.connection).return_value()
    assert result["targets"]["core-a"] == result["targets"]["core-b"]
    assert result["targets"]["core-a"]["ok"] is True
    assert result["targets"]["core-a"]["updated"] == 1


def test_a_bqn_down_does_not_hold_the_other_back_and_catches_up(
    reconciled, wisphub_sim, bqn_sim, second_bqn, web, work, settle, queue, redis
):
    changed = churn(wisphub_sim, reconciled[:6])
    expected = expected_subscribers(wisphub_sim.rows())
    with second_bqn.outage():
        accepted = [job_id for key in changed for job_id in notify(web, key)]
        work()  # each job runs once: core-a is written, core-b refuses connections
        assert managed_state(bqn_sim) == expected
        writes_on_a = bqn_sim.writes()
        jobs = Job.fetch_many(accepted, connection=queue.connection)
        assert {job.get_status() for job in jobs} == {"scheduled"}  # retried later
        assert {tuple(job.meta[TARGETS_LEFT]) for job in jobs} == {("core-b",)}
        assert all("target core-b" in job.meta["last_error"] for job in jobs)
        down = breaker.state(redis, store.target_keys("core-b"))
        assert down["state"] == "open"  # the later jobs did not wait on core-b's timeouts
        assert breaker.state(redis, store.target_keys("core-a"))["state"] == "closed"
        scrape = web.get("/metrics", headers=API).get_data(as_text=True)
        assert 'wisphub_bqn_sync_target_breaker_open{target="core-b"} 1.0' in scrape
        assert 'wisphub_bqn_sync_target_breaker_open{target="core-a"} 0.0' in scrape
    settle()
    assert managed_state(second_bqn) == expected
    assert bqn_sim.writes() == writes_on_a  # the retries wrote core-b's part only
    jobs = Job.fetch_many(accepted, connection=queue.connection)
    assert {job.get_status() for job in jobs} == {"finished"}
    assert breaker.state(redis, store.target_keys("core-b"))["state"] == "closed"


def test_a_reconcile_of_one_target_leaves_the_other_alone(
    wisphub_sim, bqn_sim, second_bqn, web, work
):
    wisphub_sim.load(30)
    before = managed_state(second_bqn)
    response = web.post("/api/v1/reconcile", json={"target": "core-a"}, headers=API)
    assert response.status_code == 202
    work()
    assert managed_state(bqn_sim) == expected_subscribers(wisphub_sim.rows())
    assert managed_state(second_bqn) == before
    unknown = web.post("/api/v1/reconcile", json={"target": "core-c"}, headers=API)
    assert unknown.status_code == 400
    assert "core-a, core-b" in unknown.json["message"]


def test_no_password_reaches_the_api_or_the_metrics(reconciled, web):
    answers = [
        web.get("/metrics", headers=API).get_data(as_text=True),
        web.get(f"/api/v1/clients/{reconciled[0]}/history", headers=API).get_data(as_text=True),
        web.get(f"/api/v1/clients/{reconciled[0]}/plan", headers=API).get_data(as_text=True),
        web.get("/api/v1/reconciles", headers=API).get_data(as_text=True),
    ]
    for text in answers:
        assert BQN_PASSWORD not in text
        assert SECOND_BQN_PASSWORD not in text
    assert 'target="core-b"' in answers[0]  # the metrics name the targets


def test_a_change_notified_while_a_job_waits_for_one_target_reaches_the_other(
    reconciled, wisphub_sim, bqn_sim, second_bqn, web, work, settle, queue
):
    """The second notification joins the job waiting to retry core-b: that retry must still
    bring core-a up to date, not only core-b."""
    [key] = [key for key in reconciled if wisphub_sim.state.get_client(key)["estado"] == "Activo"][
        :1
    ]
    with second_bqn.outage():
        wisphub_sim.state.update_client(key, estado="Suspendido")
        [job_id] = notify(web, key)
        work()
        assert Job.fetch(job_id, connection=queue.connection).get_status() == "scheduled"
        wisphub_sim.state.update_client(key, estado="Activo")
        assert notify(web, key) == [job_id]  # it joined the waiting job
        time.sleep(1.2)  # its retry is due
        work(scheduler=True)
        assert Job.fetch(job_id, connection=queue.connection).meta["attempts"] == 2
        assert managed_state(bqn_sim) == expected_subscribers(wisphub_sim.rows())
    settle()
    assert managed_state(second_bqn) == expected_subscribers(wisphub_sim.rows())


def test_a_reconcile_retried_for_one_target_keeps_one_record_of_both(
    wisphub_sim, second_bqn, web, work, settle, queue
):
    """Each retry of a reconcile was a record of its own, the retry's naming only the target
    it redid."""
    wisphub_sim.load(20)
    with second_bqn.outage():
        job_id = enqueue_reconcile(queue, dry_run=False)
        work()
        [first] = web.get("/api/v1/reconciles", headers=API).json["reconciles"]
    assert first["attempts"] == 1
    assert first["targets"]["core-a"]["ok"] is True
    assert first["targets"]["core-b"]["ok"] is False
    settle()
    [entry] = web.get("/api/v1/reconciles", headers=API).json["reconciles"]
    assert entry["job_id"] == job_id
    assert entry["ok"] is True
    assert entry["attempts"] == Job.fetch(job_id, connection=queue.connection).meta["attempts"]
    assert entry["attempts"] >= 2
    assert entry["targets"]["core-a"] == first["targets"]["core-a"]  # done by the first attempt
    assert entry["targets"]["core-b"]["ok"] is True
