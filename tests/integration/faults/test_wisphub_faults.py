"""WispHub failing: hung calls, HTML error pages, empty or half lists. Each test ends with the
BQN equal to WispHub and every accepted notification applied; a short list deletes nothing."""

from __future__ import annotations

import pytest
from rq.job import Job

from tests.integration.conftest import API, managed_state
from tests.integration.faults.conftest import assert_converged, churn, failed_jobs
from tests.rows import row
from worker.queue import store

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    """Small pages, so that a pass makes many calls for the faults to hit."""
    return {**service_env, "WISPHUB_PAGE_SIZE": "25"}


def test_wisphub_stalling_on_one_call_in_eight(baseline, ledger, settle, wisphub_sim, bqn_sim):
    ids = baseline(120)
    changed = churn(wisphub_sim, ids[:40])
    # every 8th call hangs past the 1 s timeout, for the whole test
    wisphub_sim.state.faults.update(stall_every=8, stall_seconds=2)
    for start in range(0, len(changed), 4):
        ledger.notify(changed[start : start + 4])
    reconcile = ledger.reconcile()
    settle()
    assert wisphub_sim.state.faults.settings()["stall_every"] == 8, "still stalling"
    ledger.assert_all_applied()
    assert ledger.view(reconcile)["report"]["clients"] == 120
    assert_converged(wisphub_sim, bqn_sim)


def test_wisphub_answering_html_errors(baseline, ledger, work, settle, wisphub_sim, bqn_sim):
    ids = baseline(60)
    changed = churn(wisphub_sim, ids[:20])
    wisphub_sim.state.faults.update(fail_next=100, fail_status=502)  # an HTML error page each
    accepted = ledger.notify(changed)
    work()
    views = [ledger.view(j) for j in accepted]
    assert {view["status"] for view in views} == {"retrying"}
    assert all("WispHub answered 502: HTML page" in view["last_error"] for view in views)
    wisphub_sim.state.faults.update(fail_next=0, fail_every=5)  # now one call in five
    ledger.reconcile()
    settle()
    ledger.assert_all_applied()
    assert_converged(wisphub_sim, bqn_sim)


@pytest.mark.parametrize("hidden", [1.0, 0.5], ids=["empty-list", "half-list"])
def test_a_short_wisphub_list_deletes_nothing(
    hidden, baseline, ledger, queue, settle, wisphub_sim, bqn_sim, redis
):
    ids = baseline(200)
    poll(queue, settle, redis)  # the poller's first pass: its snapshot
    before = managed_state(bqn_sim)
    deletions = bqn_sim.state.stats.count("DELETE")

    wisphub_sim.state.faults.update(hide_rows=hidden)
    polled = poll(queue, settle, redis)
    assert polled["held_back"], "the poller kept the missing clients"
    assert polled["jobs"] == []
    guarded = ledger.reconcile()
    settle()
    assert bqn_sim.state.stats.count("DELETE") == deletions, "nothing was deleted"
    # the rest was applied (a half list can move a shared IP), but every entry is still there
    assert managed_state(bqn_sim).keys() == before.keys()
    assert ledger.view(guarded)["status"] == "failed"
    [failure] = failed_jobs(queue)
    assert "deletion guard" in failure["error"]

    wisphub_sim.state.faults.update(hide_rows=0)  # WispHub is whole again
    changed = churn(wisphub_sim, ids[:10])
    polled = poll(queue, settle, redis)
    assert polled["held_back"] is None
    assert set(polled["changed"]) == set(changed)
    ledger.job_ids.discard(guarded)  # held back on purpose, and listed as a failure
    ledger.reconcile()
    settle()
    ledger.assert_all_applied()
    assert_converged(wisphub_sim, bqn_sim)


def poll(queue, settle, redis) -> dict:
    """Run the poller once now, and the syncs it queues."""
    if redis.exists(store.SNAPSHOT_TAKEN):
        redis.set(store.SNAPSHOT_TAKEN, 0)  # the last pass is old: this poll is not skipped
    job = queue.enqueue("worker.jobs.poll_changes")
    settle()
    return Job.fetch(job.id, connection=redis).return_value()


def test_rows_left_out_for_a_while_are_never_deleted_by_a_later_reconcile(
    ledger, queue, settle, wisphub_sim, bqn_sim, redis
):
    """Issue 20, item 1: WispHub leaves out its last 36 rows (of 300) for a while, 18 of them
    live: few enough deletions to pass the guard's count, but a pass far shorter than the last
    complete one. Every reconcile meanwhile must trip the guard: fails if a tripped (or dry)
    pass becomes the guard's reference, so that the next reconcile deletes the 18."""
    for key in range(1, 301):
        estado = "Cancelado" if key > 264 and key % 2 else "Activo"
        wisphub_sim.state.upsert_client(row(key, f"10.77.{key // 250}.{key % 250}", estado))
    ledger.reconcile()
    settle()
    poll(queue, settle, redis)  # the poller's first pass: its snapshot
    before = managed_state(bqn_sim)
    assert len(before) == 282
    deletions = bqn_sim.state.stats.count("DELETE")

    wisphub_sim.state.faults.update(hide_rows=0.12)  # the last 36 rows
    assert poll(queue, settle, redis)["held_back"], "the poller holds the missing clients"
    dry = ledger.web.post("/api/v1/reconcile", json={"dry_run": True}, headers=API)
    assert dry.status_code == 202
    tripped = [ledger.reconcile(), ledger.reconcile()]
    settle()
    assert bqn_sim.state.stats.count("DELETE") == deletions, "nothing was deleted"
    assert managed_state(bqn_sim) == before
    assert [ledger.view(job_id)["status"] for job_id in tripped] == ["failed", "failed"]
    failures = failed_jobs(queue)  # the dry run's too: it says what the guard held back
    assert len(failures) == 3
    assert all(failure["error"].startswith("deletion guard") for failure in failures)
    ledger.job_ids.difference_update(tripped)  # held back on purpose, and listed as failures

    wisphub_sim.state.faults.update(hide_rows=0)  # the rows are back, unchanged
    assert poll(queue, settle, redis)["held_back"] is None
    ledger.reconcile()
    settle()
    assert managed_state(bqn_sim) == before
    assert_converged(wisphub_sim, bqn_sim)
