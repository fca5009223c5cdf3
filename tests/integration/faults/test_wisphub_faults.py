"""WispHub failing: hung calls, HTML error pages, empty or half lists. Each test ends with the
BQN equal to WispHub and every accepted notification applied; a short list deletes nothing."""

from __future__ import annotations

import pytest
from rq.job import Job

from tests.integration.conftest import managed_state
from tests.integration.faults.conftest import assert_converged, churn, failed_jobs
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
