"""The BQN failing: errors for a while, refused connections, answers slower than the timeout.
Each test ends with the BQN equal to WispHub and every accepted notification applied."""

from __future__ import annotations

import pytest

from tests.integration.conftest import managed_state
from tests.integration.faults.conftest import assert_converged, churn, failed_jobs
from tests.rows import row

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.mark.parametrize("status", [500, 503])
def test_bqn_errors_for_a_while_then_recovers(
    status, baseline, ledger, settle, wisphub_sim, bqn_sim, queue
):
    ids = baseline(60)
    changed = churn(wisphub_sim, ids[:20])
    # the next 40 writes fail, more than the client's own retries can ride out
    bqn_sim.state.faults.update(fail_next=40, fail_status=status, writes_only=True)
    for id_servicio in changed:
        ledger.notify([id_servicio])
    settle()
    assert bqn_sim.state.faults.fail_next == 0, "the fault was exercised"
    retried = [ledger.view(j) for j in ledger.job_ids if ledger.view(j)["attempts"] > 1]
    assert retried, "some jobs had to be retried"
    # done at last: the error of an earlier attempt is shown as such
    assert all(f"BQN answered {status}" in view["earlier_error"]["error"] for view in retried)
    ledger.assert_all_applied()
    assert failed_jobs(queue) == []
    assert_converged(wisphub_sim, bqn_sim)


def test_a_reconcile_rides_out_bqn_errors(baseline, ledger, settle, wisphub_sim, bqn_sim):
    ids = baseline(80)
    churn(wisphub_sim, ids[::3])
    bqn_sim.state.faults.update(fail_every=4, fail_status=503)  # reads and writes
    job_id = ledger.reconcile()
    settle()
    bqn_sim.state.faults.clear()
    ledger.assert_all_applied()
    assert ledger.view(job_id)["status"] == "finished"
    assert_converged(wisphub_sim, bqn_sim)


def test_bqn_refusing_connections(baseline, ledger, work, settle, wisphub_sim, bqn_sim):
    ids = baseline(30)
    changed = churn(wisphub_sim, ids[:10])
    with bqn_sim.outage():
        accepted = ledger.notify(changed)
        work()  # every job fails to connect and waits for a retry
        views = [ledger.view(j) for j in accepted]
        assert {view["status"] for view in views} == {"retrying"}
        assert all("BQN unreachable" in view["last_error"] for view in views)
    settle()
    ledger.assert_all_applied()
    assert_converged(wisphub_sim, bqn_sim)


def test_bqn_slower_than_the_timeout(baseline, ledger, work, settle, wisphub_sim, bqn_sim):
    ids = baseline(20)
    changed = churn(wisphub_sim, ids[:5])
    # every write takes 1.5 s, past the 1 s timeout; the BQN still applies it afterwards
    bqn_sim.state.faults.update(stall_every=1, stall_seconds=1.5, writes_only=True)
    accepted = ledger.notify(changed)
    work()
    retrying = [v for v in map(ledger.view, accepted) if v["status"] == "retrying"]
    assert retrying, "jobs that had to write are waiting for a retry"
    assert all("timed out" in view["last_error"] for view in retrying)
    bqn_sim.state.faults.clear()
    settle()
    ledger.assert_all_applied()
    assert_converged(wisphub_sim, bqn_sim)


def test_a_moved_client_whose_new_entry_meets_a_conflict_gets_it_on_a_retry(
    ledger, settle, wisphub_sim, bqn_sim, queue
):
    """Issue 20, item 8: the BQN refused (409) the create of a moved client's new address in
    the step that deleted its old one: the job failed for good and the client was left with no
    entry. Fails if a 409 is not retried."""
    wisphub_sim.state.upsert_client(row(151, "10.15.0.1", nombre="C151"))
    ledger.notify([151])
    settle()
    wisphub_sim.state.upsert_client(row(151, "10.15.0.2", nombre="C151"))
    bqn_sim.state.faults.update(fail_next=1, fail_status=409, writes_only=True)
    [job_id] = ledger.notify([151])
    settle()
    assert bqn_sim.state.faults.fail_next == 0, "the fault was exercised"
    assert ledger.view(job_id)["attempts"] == 2
    assert "BQN answered 409" in ledger.view(job_id)["earlier_error"]["error"]
    assert managed_state(bqn_sim) == {"10.15.0.2": ("C151", "Plan_10M")}
    ledger.assert_all_applied()
    assert failed_jobs(queue) == []
