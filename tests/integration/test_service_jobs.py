"""The RQ jobs run by real workers against the simulators and a real Redis."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from rq.job import Job, JobStatus

from tests.integration.conftest import (
    API,
    API_KEY,
    expected_subscribers,
    job_status,
    managed_state,
    notify,
)
from tests.integration.processes import eventually
from tests.rows import row
from worker import defaults
from worker.queue import history, queueing, store

pytestmark = pytest.mark.integration


def job_view(web, job_id):
    return web.get(f"/api/v1/jobs/{job_id}", headers=API).json


def test_a_notification_reaches_the_bqn(web, work, wisphub_sim, bqn_sim):
    wisphub_sim.state.upsert_client(row(1, "10.1.0.1", "Activo", "Online_basico", "José"))
    [job_id] = notify(web, 1)
    work()
    assert managed_state(bqn_sim) == {"10.1.0.1": ("José", "Online_basico")}
    view = job_view(web, job_id)
    assert view["status"] == "finished"
    assert view["attempts"] == 1
    assert view["report"]["counts"]["created"] == 1


def test_a_manual_trigger_reaches_the_bqn(web, work, wisphub_sim, bqn_sim):
    wisphub_sim.state.upsert_client(row(2, "10.1.0.2", "Suspendido", nombre="Ana"))
    job_id = web.post("/api/v1/clients/2/sync", headers=API).json["job_id"]
    work()
    assert managed_state(bqn_sim) == {"10.1.0.2": ("Ana", "Wisphub_block")}
    assert bqn_sim.policies()["Wisphub_block"]["rateLimitDownlink"]["rate"] == 0
    assert job_view(web, job_id)["status"] == "finished"


def test_an_ip_change_removes_the_old_subscriber(web, work, wisphub_sim, bqn_sim):
    wisphub_sim.state.upsert_client(row(3, "10.1.0.3", nombre="Eva", plan="Online_basico"))
    notify(web, 3)
    work()
    wisphub_sim.state.update_client(3, ip="10.1.0.33")
    notify(web, 3)
    work()
    assert managed_state(bqn_sim) == {"10.1.0.33": ("Eva", "Online_basico")}


@pytest.mark.parametrize("how", ["cancelled", "deleted-from-wisphub"])
def test_a_client_that_goes_away_is_removed(web, work, wisphub_sim, bqn_sim, redis, how):
    wisphub_sim.state.upsert_client(row(4, "10.1.0.4", nombre="Leo", plan="Online_basico"))
    notify(web, 4)
    work()
    if how == "cancelled":
        wisphub_sim.state.update_client(4, estado="Cancelado")
    else:
        wisphub_sim.state.remove_client(4)
    notify(web, 4)
    work()
    assert managed_state(bqn_sim) == {}
    assert store.last_applied(redis, 4) is None


@pytest.mark.slow
def test_the_old_ip_is_kept_when_another_client_took_it(web, work, wisphub_sim, bqn_sim):
    wisphub_sim.state.upsert_client(row(5, "10.1.0.5", nombre="Uno", plan="Online_basico"))
    notify(web, 5)
    work()
    wisphub_sim.state.update_client(5, ip="10.1.0.55")
    wisphub_sim.state.upsert_client(row(6, "10.1.0.5", nombre="Dos", plan="Online_basico"))
    notify(web, 6)
    work()
    notify(web, 5)
    work()
    assert managed_state(bqn_sim) == {
        "10.1.0.5": ("Dos", "Online_basico"),
        "10.1.0.55": ("Uno", "Online_basico"),
    }


@pytest.mark.slow
def test_notifications_while_the_job_runs_queue_one_follow_up_with_the_last_change(
    web, work, wisphub_sim, bqn_sim, redis, monkeypatch
):
    wisphub_sim.state.upsert_client(row(7, "10.1.0.7", "Activo", "Online_basico", "Sol"))
    # every BQN call takes 1.5 s, so the job is still writing while the notifications come in
    monkeypatch.setenv("BQN_TIMEOUT", "10")
    bqn_sim.state.faults.update(latency_ms=1500)
    [first] = notify(web, 7)

    def during_the_run() -> set[str]:
        # a BQN write means the job has read the client from WispHub: the change comes after
        eventually(lambda: bqn_sim.writes() > 0, "the job to write to the BQN")
        wisphub_sim.state.update_client(7, estado="Suspendido")
        follow_ups = {notify(web, 7)[0] for _ in range(10)}
        assert job_status(redis, first) == "started", "the job ended before the notifications"
        bqn_sim.state.faults.clear()
        return follow_ups

    with ThreadPoolExecutor(1) as pool:
        notifications = pool.submit(during_the_run)
        work()  # runs the job, then the follow-up queued meanwhile
    follow_ups = notifications.result()
    assert len(follow_ups) == 1
    [follow_up] = follow_ups
    assert follow_up != first
    assert job_status(redis, first) == "finished"
    assert job_status(redis, follow_up) == "finished"
    reads = {e["job_id"]: e["estado"] for e in history.read(redis, 7) if e["event"] == "read"}
    assert reads == {first: "Activo", follow_up: "Suspendido"}
    assert managed_state(bqn_sim) == {"10.1.0.7": ("Sol", "Wisphub_block")}


def test_transient_failures_are_retried_with_the_reason_shown(web, work, wisphub_sim, bqn_sim):
    wisphub_sim.state.upsert_client(row(8, "10.1.0.8"))
    bqn_sim.state.faults.update(fail_every=1, fail_status=503, writes_only=True)
    [job_id] = notify(web, 8)
    work()
    view = job_view(web, job_id)
    assert view["status"] == "retrying"
    assert view["attempts"] == 1
    assert "BQN answered 503" in view["last_error"]
    assert view["report"]["counts"]["failed"] >= 1


def test_a_wrong_key_fails_at_once_with_a_clear_message(web, work, wisphub_sim):
    wisphub_sim.state.api_key = "rotated"
    [job_id] = notify(web, 9)
    work()
    view = job_view(web, job_id)
    assert view["status"] == "failed"
    assert "wrong API key or wrong WispHub host" in view["error"]


@pytest.mark.slow
def test_reconcile_through_the_api(web, work, wisphub_sim, bqn_sim, redis):
    rows = wisphub_sim.load(300)
    job_id = web.post("/api/v1/reconcile", json={"dry_run": False}, headers=API).json["job_id"]
    work()
    assert managed_state(bqn_sim) == expected_subscribers(rows)
    view = job_view(web, job_id)
    assert view["status"] == "finished"
    groups = [
        g
        for g in bqn_sim.state.snapshot()["groups"]
        if g["subscriberGroupName"] != "all-subscribers"
    ]
    assert view["report"]["counts"]["created"] == len(expected_subscribers(rows)) + len(groups)
    # the reconcile also seeds what jobs remember, so a later IP change clears the old entry
    some = next(
        r for r in rows if r["estado"] == "Activo" and r["ip"] in expected_subscribers(rows)
    )
    assert store.last_applied(redis, some["id_servicio"]).ips == (some["ip"],)


def test_a_dry_run_reconcile_writes_nothing(web, work, wisphub_sim, bqn_sim):
    wisphub_sim.load(60)
    job_id = web.post("/api/v1/reconcile", json={"dry_run": True}, headers=API).json["job_id"]
    work()
    view = job_view(web, job_id)
    assert view["report"]["dry_run"] is True
    assert view["report"]["operations"]
    assert bqn_sim.writes() == 0


@pytest.mark.slow
def test_the_poller_finds_changes_nobody_announced(queue, work, wisphub_sim, bqn_sim, redis):
    wisphub_sim.state.upsert_client(row(11, "10.2.0.1", "Activo", "Online_basico", "A"))
    wisphub_sim.state.upsert_client(row(12, "10.2.0.2", "Activo", "Online_basico", "B"))
    wisphub_sim.state.upsert_client(row(13, "10.2.0.3", "Suspendido", "Online_basico", "C"))
    wisphub_sim.state.upsert_client(row(14, "10.2.0.4", "Activo", "Online_basico", "D"))
    queueing.enqueue_reconcile(queue, dry_run=False)
    work()

    def poll():
        if redis.exists(store.SNAPSHOT_TAKEN):
            redis.set(store.SNAPSHOT_TAKEN, 0)  # the last pass is old: this poll is not skipped
        job = queue.enqueue("worker.jobs.poll_changes")
        work()
        return Job.fetch(job.id, connection=redis).return_value()

    first = poll()
    assert first["first_pass"] is False  # the reconcile's pass is its baseline
    assert first["changed"] == []

    wisphub_sim.state.update_client(11, plan_internet=451072)  # plan change
    wisphub_sim.state.update_client(12, estado="Suspendido")  # suspension
    wisphub_sim.state.update_client(13, estado="Activo")  # reactivation
    wisphub_sim.state.update_client(14, estado="Cancelado")  # cancellation
    wisphub_sim.state.update_client(11, saldo="0.00")  # changes nothing on the BQN
    second = poll()
    assert second["changed"] == [11, 12, 13, 14]
    assert managed_state(bqn_sim) == {
        "10.2.0.1": ("A", "Online_Free"),
        "10.2.0.2": ("B", "Wisphub_block"),
        "10.2.0.3": ("C", "Online_basico"),
    }


@pytest.mark.slow
def test_a_failed_poll_keeps_the_snapshot(queue, work, wisphub_sim, redis):
    wisphub_sim.load(20)
    queue.enqueue("worker.jobs.poll_changes")
    work()
    before = store.snapshot(redis)
    assert before
    redis.set(store.SNAPSHOT_TAKEN, 0)
    wisphub_sim.state.faults.update(fail_every=1, fail_status=500)
    job = queue.enqueue("worker.jobs.poll_changes")
    work()
    assert Job.fetch(job.id, connection=redis).return_value()["ok"] is False
    assert store.snapshot(redis) == before


@pytest.mark.slow
def test_polls_piling_up_behind_busy_workers_are_skipped(queue, work, wisphub_sim, redis):
    wisphub_sim.load(10)
    first = queue.enqueue("worker.jobs.poll_changes")
    second = queue.enqueue("worker.jobs.poll_changes")
    work()
    assert Job.fetch(first.id, connection=redis).return_value()["ok"] is True
    assert "skipped" in Job.fetch(second.id, connection=redis).return_value()


@pytest.mark.slow
def test_the_poller_compares_with_what_jobs_applied(web, queue, work, wisphub_sim, bqn_sim, redis):
    """Suspended and notified, then reactivated with no notification, all between two polls:
    the poller must still see the reactivation (it compares with what the job applied)."""
    wisphub_sim.state.upsert_client(row(21, "10.3.0.1", "Activo", "Online_basico", "Río"))
    queue.enqueue("worker.jobs.poll_changes")
    work()
    wisphub_sim.state.update_client(21, estado="Suspendido")
    notify(web, 21)
    work()
    assert managed_state(bqn_sim) == {"10.3.0.1": ("Río", "Wisphub_block")}
    wisphub_sim.state.update_client(21, estado="Activo")
    redis.set(store.SNAPSHOT_TAKEN, 0)
    job = queue.enqueue("worker.jobs.poll_changes")
    work()
    assert Job.fetch(job.id, connection=redis).return_value()["changed"] == [21]
    assert managed_state(bqn_sim) == {"10.3.0.1": ("Río", "Online_basico")}


@pytest.mark.slow
def test_a_guarded_reconcile_fails_visibly_and_force_goes_ahead(web, work, wisphub_sim, bqn_sim):
    rows = wisphub_sim.load(300)
    web.post("/api/v1/reconcile", headers=API)
    work()
    before = managed_state(bqn_sim)
    for client in rows[:200]:
        wisphub_sim.state.remove_client(client["id_servicio"])
    job_id = web.post("/api/v1/reconcile", headers=API).json["job_id"]
    work()
    view = job_view(web, job_id)
    assert view["status"] == "failed"
    assert "deletion guard" in view["error"]
    assert "held back" in view["report"]["guard"]
    assert managed_state(bqn_sim) == before
    job_id = web.post("/api/v1/reconcile", json={"force": True}, headers=API).json["job_id"]
    work()
    assert job_view(web, job_id)["status"] == "finished"
    assert managed_state(bqn_sim) == expected_subscribers(wisphub_sim.rows())


def test_failures_are_listed_and_can_be_requeued(web, work, wisphub_sim, bqn_sim):
    wisphub_sim.state.upsert_client(row(50, "10.8.0.1", nombre="Flor", plan="Online_basico"))
    wisphub_sim.state.upsert_client(row(51, "10.8.0.2", nombre="Gil", plan="Online_basico"))
    wisphub_sim.state.api_key = "rotated"  # every job fails for good
    failed = [*notify(web, 50), *notify(web, 51)]
    work()
    listing = web.get("/api/v1/failures", headers=API).json
    assert listing["count"] == 2
    by_client = {f["id_servicio"]: f for f in listing["failures"]}
    assert set(by_client) == {50, 51}
    assert "wrong API key" in by_client[50]["error"]
    assert by_client[50]["attempts"] == 1
    assert by_client[50]["last_try"]

    wisphub_sim.state.api_key = API_KEY  # the operator fixed the key
    one = web.post("/api/v1/failures/requeue", json={"job_ids": [failed[0], "nope"]}, headers=API)
    assert one.status_code == 202
    assert one.json["not_failed"] == ["nope"]
    assert [r["failed_job_id"] for r in one.json["requeued"]] == [failed[0]]
    rest = web.post("/api/v1/failures/requeue", headers=API).json
    assert [r["failed_job_id"] for r in rest["requeued"]] == [failed[1]]
    work()
    assert managed_state(bqn_sim) == {
        "10.8.0.1": ("Flor", "Online_basico"),
        "10.8.0.2": ("Gil", "Online_basico"),
    }
    assert web.get("/api/v1/failures", headers=API).json["count"] == 0


@pytest.mark.parametrize("limit", ["0", "x", "1001"])
def test_failure_listing_checks_its_limit(web, limit):
    assert web.get(f"/api/v1/failures?limit={limit}", headers=API).status_code == 400


@pytest.mark.parametrize("body", [{"job_ids": "abc"}, {"job_ids": [1, 2]}, [1]])
def test_requeue_checks_its_body(web, body):
    assert web.post("/api/v1/failures/requeue", json=body, headers=API).status_code == 400


@pytest.mark.slow
def test_a_shared_ip_goes_to_the_latest_change_as_in_a_full_sync(web, work, wisphub_sim, bqn_sim):
    older = row(60, "10.9.0.1", nombre="Antes", plan="Online_basico")
    newer = row(61, "10.9.0.1", nombre="Luego", plan="Online_basico")
    wisphub_sim.state.upsert_client({**older, "ultimo_cambio": "01/01/2026 00:00:00"})
    wisphub_sim.state.upsert_client({**newer, "ultimo_cambio": "02/01/2026 00:00:00"})
    notify(web, 61)
    work()
    notify(web, 60)  # changed earlier: the IP stays with client 61
    work()
    assert managed_state(bqn_sim) == {"10.9.0.1": ("Luego", "Online_basico")}
    wisphub_sim.state.update_client(60, estado="Suspendido")  # now 60 changed last
    notify(web, 60)
    work()
    assert managed_state(bqn_sim) == {"10.9.0.1": ("Antes", "Wisphub_block")}
    assert managed_state(bqn_sim) == expected_subscribers(wisphub_sim.rows())


def test_a_requeued_poll_or_address_job_is_queued_as_its_kind_always_is(web, queue, redis):
    failed = queue.failed_job_registry
    for job_id, path, args in [
        ("failed-poll", "worker.jobs.poll_changes", ()),
        ("failed-address", "worker.jobs.sync_address", ("10.8.9.9",)),
    ]:
        job = queue.enqueue(path, *args, job_id=job_id)
        queue.remove(job)
        job.set_status(JobStatus.FAILED)
        failed.add(job)
    answer = web.post("/api/v1/failures/requeue", headers=API).json
    again = {item["failed_job_id"]: queue.fetch_job(item["job_id"]) for item in answer["requeued"]}
    assert set(again) == {"failed-poll", "failed-address"}
    poll, address = again["failed-poll"], again["failed-address"]
    assert poll.timeout == defaults.POLL_JOB_TIMEOUT
    assert poll.result_ttl == defaults.POLL_RESULT_TTL
    assert poll.retries_left == len(defaults.RESTART_DELAYS)
    assert address.args == ("10.8.9.9",)
    # the address's claim: a second request for it coalesces into this job
    assert redis.get(store.pending_address_key("10.8.9.9")).decode() == address.id
