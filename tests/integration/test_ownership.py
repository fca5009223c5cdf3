"""The BQN address is the unit of ownership: each case that once cost a paying client its
subscriber, as an operator would meet it, through notifications and real RQ workers.

Each test names the case it covers; the concurrent ones (several worker processes) are in
`test_convergence.py`.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import (
    expected_subscribers,
    job_status,
    managed_state,
    notify,
)
from tests.rows import row
from worker.queue import store

pytestmark = pytest.mark.integration

X, Y, Z = "10.60.0.1", "10.60.0.2", "10.60.0.3"
EARLY, LATE = "01/11/2026 08:00:00", "02/11/2026 08:00:00"


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert job_status(redis, job_id) == "scheduled", "the failed delete is retried"
    assert managed_state(bqn_sim) == {X: ("Uno", "Online_basico"), Y: ("Uno", "Online_basico")}
    assert set(store.last_applied(redis, 1).ips) == {X, Y}, "it remembers what it wrote"
    bqn_sim.state.faults.clear()
    state.update_client(1, ip=Z)
    assert notify(web, 1) == [job_id], "the waiting retry takes the latest state"
    settle()
    assert managed_state(bqn_sim) == {Z: ("Uno", "Online_basico")}
    assert store.last_applied(redis, 1).ips == (Z,)


@pytest.mark.slow
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
