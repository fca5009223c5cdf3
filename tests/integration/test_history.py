"""Per-client history and the kept reconcile reports, through the API, with real workers."""

from __future__ import annotations

import pytest

from tests.integration.conftest import API, HOOK
from tests.rows import row
from worker.queue import history, queueing
from worker.settings import HistoryLimits

pytestmark = pytest.mark.integration


def events_of(web, id_servicio, **params):
    response = web.get(f"/api/v1/clients/{id_servicio}/history", headers=API, query_string=params)
    assert response.status_code == 200
    return response.json


def steps(events):
    """Event kinds, oldest first."""
    return [event["event"] for event in reversed(events)]


def test_a_notified_change_shows_step_by_step(web, work, wisphub_sim):
    wisphub_sim.state.upsert_client(row(1, "10.1.0.1", "Activo", "Online_basico", "José"))
    job_id = web.post("/webhooks/wisphub", json={"id_servicio": 1}, headers=HOOK).json["jobs"][0][
        "job_id"
    ]
    work()
    view = events_of(web, 1)
    assert steps(view["events"]) == [
        "queued",
        "started",
        "read",
        "operation",
        "operation",
        "done",
    ]
    queued, started, read, policy, subscriber, done = reversed(view["events"])
    assert (policy["action"], policy["kind"], policy["key"]) == (
        "create",
        "policy",
        "Online_basico",
    )
    assert queued == {**queued, "via": "webhook", "job_id": job_id}
    assert started["attempt"] == 1
    assert (read["estado"], read["plan"], read["ip"]) == ("Activo", "Online_basico", "10.1.0.1")
    assert (subscriber["action"], subscriber["kind"], subscriber["key"]) == (
        "create",
        "subscriber",
        "10.1.0.1",
    )
    assert subscriber["result"] == "ok"
    assert subscriber["policy"] == "Online_basico"
    assert done["ok"] is True
    assert done["created"] == 1
    assert {event["job_id"] for event in view["events"]} == {job_id}
    assert view["applied"] == {"subscriber_id": "José", "ips": ["10.1.0.1"], "group": None}


@pytest.mark.slow
def test_a_second_notification_while_waiting_is_coalesced(web, work, wisphub_sim):
    wisphub_sim.state.upsert_client(row(2, "10.1.0.2", "Suspendido", nombre="Ana"))
    web.post("/api/v1/clients/2/sync", headers=API)
    web.post("/webhooks/wisphub", json={"id_servicio": 2}, headers=HOOK)
    work()
    kinds = steps(events_of(web, 2)["events"])
    assert kinds[:2] == ["queued", "coalesced"]
    assert kinds.count("started") == 1


@pytest.mark.slow
def test_skips_and_failures_say_why(web, work, wisphub_sim, bqn_sim, queue):
    wisphub_sim.state.upsert_client(row(3, "", "Activo", "Online_basico", "Sin IP"))
    wisphub_sim.state.upsert_client(row(4, "10.1.0.4", "Activo", "Online_basico", "Eva"))
    web.post("/webhooks/wisphub", json={"id_servicio": [3, 4]}, headers=HOOK)
    bqn_sim.state.faults.update(fail_every=1, fail_status=400, writes_only=True)
    work()
    [skipped] = [e for e in events_of(web, 3)["events"] if e["event"] == "skipped"]
    assert "IP" in skipped["reason"] or "address" in skipped["reason"]
    four = events_of(web, 4)["events"]
    assert four[0]["event"] == "failed"
    assert "400" in four[0]["error"]
    assert any(e["event"] == "operation" and e["result"] == "failed" for e in four)
    # the failure is visible and re-queueable, and the requeue shows in the history too
    bqn_sim.state.faults.clear()
    failed = web.get("/api/v1/failures", headers=API).json["failures"]
    assert [f["clients"] for f in failed] == [[4]]  # their batch failed: client 3 was settled
    web.post("/api/v1/failures/requeue", headers=API)
    work()
    four = events_of(web, 4)["events"]
    assert four[0]["event"] == "done"
    assert [e.get("via") for e in four if e["event"] == "queued"] == ["requeue", "webhook"]


def test_limit_and_bad_ids(web):
    assert web.get("/api/v1/clients/7/history", headers=API).json["events"] == []
    assert web.get("/api/v1/clients/x/history", headers=API).status_code == 400
    assert web.get("/api/v1/clients/7/history?limit=0", headers=API).status_code == 400
    assert web.get("/api/v1/clients/7/history").status_code == 401


def test_history_is_capped_per_client_and_in_total(redis):
    limits = HistoryLimits(per_client=3, days=1, clients=2)
    for number in range(5):
        history.write(redis, [(10, history.event("queued", n=number))], limits)
    assert [event["n"] for event in history.read(redis, 10)] == [4, 3, 2]
    history.write(redis, [(11, history.event("queued")), (12, history.event("queued"))], limits)
    assert history.read(redis, 10) == []  # the least recently active client went first
    assert len(history.read(redis, 12)) == 1
    assert 0 < redis.ttl(history.stream_key(12)) <= 86400


@pytest.mark.slow
def test_reconciles_are_kept_newest_first(web, work, wisphub_sim, queue):
    wisphub_sim.state.upsert_client(row(5, "10.1.0.5", "Activo", "Online_basico", "Leo"))
    wisphub_sim.state.upsert_client(row(6, "", "Activo", "Online_basico", "Sin IP"))
    first = queueing.enqueue_reconcile(queue, dry_run=False)
    work()
    wisphub_sim.state.update_client(5, estado="Suspendido")
    second = queueing.enqueue_reconcile(queue, dry_run=False)
    queueing.enqueue_reconcile(queue, dry_run=True)  # dry runs are not kept
    work()
    kept = web.get("/api/v1/reconciles", headers=API).json["reconciles"]
    assert [entry["job_id"] for entry in kept] == [second, first]
    assert kept[0]["ok"] is True
    assert kept[0]["counts"]["updated"] == 1
    assert kept[1]["counts"]["created"] == 1
    assert web.get("/api/v1/reconciles?limit=1", headers=API).json["reconciles"][0]["job_id"] == (
        second
    )
    # the reconcile's operations are in the client's history
    ops = [e for e in events_of(web, 5)["events"] if e["event"] == "operation"]
    assert [(e["job_id"], e["action"]) for e in ops] == [(second, "update"), (first, "create")]
    # its skips are in its report, not in the client's history (they would repeat nightly)
    assert kept[0]["report"]["skipped"][0]["id_servicio"] == 6
    assert events_of(web, 6)["events"] == []


def test_a_reconcile_that_cannot_read_wisphub_is_kept_as_failed(web, work, wisphub_sim, queue):
    wisphub_sim.state.faults.update(fail_every=1, fail_status=401)
    job_id = queueing.enqueue_reconcile(queue, dry_run=False)
    work()
    [entry] = web.get("/api/v1/reconciles", headers=API).json["reconciles"]
    assert entry["job_id"] == job_id
    assert entry["ok"] is False
    assert "401" in entry["error"]
