"""Two sites, each with its BQN: site-a takes its clients by network, site-b by WispHub
router. Each BQN holds exactly its own clients, and a client that moves leaves one site for
the other, announced or not."""

from __future__ import annotations

import ipaddress

import pytest

from tests.integration.conftest import (
    API,
    BQN_PASSWORD,
    BQN_USER,
    SECOND_BQN_PASSWORD,
    expected_subscribers,
    managed_state,
    notify,
    targets_env,
    write_targets,
)
from worker.queue import store
from worker.queue.queueing import enqueue_reconcile

pytestmark = pytest.mark.integration

SITE_A_NETWORKS = ("10.10.0.0/16", "10.20.0.0/16")  # the seed's Nodo Centro and OLT Norte
SITE_B_ROUTERS = (63679, 64011, 64203)  # LA ESTRELLA, Torre San José, Los Pinos
NOWHERE = 990_001  # a client of a router neither site takes


@pytest.fixture
def service_env(service_env, bqn_sim, second_bqn, tmp_path):
    """The service keeping site-a (`bqn_sim`) and site-b (`second_bqn`)."""
    path = write_targets(
        tmp_path,
        [
            {
                "name": "site-a",
                "url": bqn_sim.server.url,
                "user": BQN_USER,
                "password": BQN_PASSWORD,
                "networks": list(SITE_A_NETWORKS),
            },
            {
                "name": "site-b",
                "url": second_bqn.server.url,
                "user": BQN_USER,
                "password": SECOND_BQN_PASSWORD,
                "routers": list(SITE_B_ROUTERS),
            },
        ],
    )
    return {**targets_env(service_env, path), "POLL_BQN_EVERY": "1"}


def at_site_a(row) -> bool:
    """Written apart from the selectors: a usable address inside one of site-a's networks."""
    try:
        address = ipaddress.ip_address((row.get("ip") or "").strip())
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in SITE_A_NETWORKS)


def at_site_b(row) -> bool:
    return (row.get("router") or {}).get("id") in SITE_B_ROUTERS


def expected_at(wisphub_sim, site) -> dict:
    return expected_subscribers([row for row in wisphub_sim.rows() if site(row)])


@pytest.fixture
def placed(wisphub_sim, queue, work):
    """300 seeded clients and one no site takes, reconciled; the reconcile's job id."""
    wisphub_sim.load(300)
    wisphub_sim.state.upsert_client(
        {
            **wisphub_sim.rows()[0],
            "id_servicio": NOWHERE,
            "ip": "10.99.0.5",
            "router": {"id": 99, "nombre": "Otra torre"},
        }
    )
    job_id = enqueue_reconcile(queue, dry_run=False)
    work()
    return job_id


def test_each_bqn_holds_exactly_its_own_clients(placed, wisphub_sim, bqn_sim, second_bqn, web):
    at_a, at_b = expected_at(wisphub_sim, at_site_a), expected_at(wisphub_sim, at_site_b)
    assert len(at_a) > 50
    assert len(at_b) > 50
    assert managed_state(bqn_sim) == at_a
    assert managed_state(second_bqn) == at_b
    [entry] = web.get("/api/v1/reconciles", headers=API).json["reconciles"]
    unplaced = [note for note in entry["report"]["notes"] if "belong to no target" in note]
    assert len(unplaced) == 1
    assert str(NOWHERE) in unplaced[0]


def a_client_of_site_b(wisphub_sim) -> dict:
    """An active client site-b holds at its one address."""
    held = expected_at(wisphub_sim, at_site_b)
    return next(
        row
        for row in wisphub_sim.rows()
        if at_site_b(row) and row["estado"] == "Activo" and row["ip"] in held
    )


def test_a_notified_move_leaves_one_site_for_the_other(
    placed, wisphub_sim, bqn_sim, second_bqn, web, work
):
    mover = a_client_of_site_b(wisphub_sim)
    assert mover["ip"] in second_bqn.subscribers()
    wisphub_sim.state.update_client(
        mover["id_servicio"], ip="10.10.250.250", router={"id": 63702, "nombre": "Nodo Centro"}
    )
    notify(web, mover["id_servicio"])
    work()
    assert "10.10.250.250" in bqn_sim.subscribers()
    assert mover["ip"] not in second_bqn.subscribers()
    assert managed_state(bqn_sim) == expected_at(wisphub_sim, at_site_a)
    assert managed_state(second_bqn) == expected_at(wisphub_sim, at_site_b)


def test_an_unannounced_move_to_no_site_is_found_by_the_poller(
    placed, wisphub_sim, bqn_sim, second_bqn, queue, work, redis
):
    """Only the router changes (the poller's fingerprints do not cover it): the comparison
    with each BQN finds the entry site-b should not hold any more."""
    queue.enqueue("worker.jobs.poll_changes")  # the first pass: the baseline
    work()
    mover = a_client_of_site_b(wisphub_sim)
    wisphub_sim.state.update_client(
        mover["id_servicio"], router={"id": 63702, "nombre": "Nodo Centro"}
    )
    redis.set(store.SNAPSHOT_TAKEN, 0)  # let the next poll run at once
    queue.enqueue("worker.jobs.poll_changes")
    work()
    assert mover["ip"] not in second_bqn.subscribers()
    assert managed_state(bqn_sim) == expected_at(wisphub_sim, at_site_a)
    assert managed_state(second_bqn) == expected_at(wisphub_sim, at_site_b)
