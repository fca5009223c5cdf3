"""Clients with several addresses or a routed block, in the three MULTI_IP_MODEs."""

from __future__ import annotations

import pytest

from tests.integration.conftest import HOOK, managed_state
from tests.rows import row

pytestmark = pytest.mark.integration

EMPRESA = row(40, "10.6.0.1, 200.1.2.0/29", "Activo", "Online_basico", "Empresa SAS")


def groups(bqn_sim):
    return {g["subscriberGroupName"]: g for g in bqn_sim.state.snapshot()["groups"]}


def shaped(group):
    return (
        sorted(group["subscriberMembers"]),
        sorted(group["subscriberRanges"]),
        group["policyRate"],
    )


def test_group_mode_shapes_the_addresses_as_one(wisphub_sim, bqn_sim, run_cli):
    wisphub_sim.state.upsert_client(EMPRESA)
    assert run_cli().code == 0
    assert shaped(groups(bqn_sim)["wisphub-40"]) == (
        ["10.6.0.1"],
        ["200.1.2.0/29"],
        "Online_basico",
    )
    assert managed_state(bqn_sim) == {}
    bqn_sim.state.stats.reset()
    assert run_cli().code == 0
    assert bqn_sim.writes() == 0


def test_subscribers_mode_gives_each_address_the_policy(wisphub_sim, bqn_sim, run_cli, env):
    wisphub_sim.state.upsert_client(EMPRESA)
    assert run_cli(environ={**env, "MULTI_IP_MODE": "subscribers"}).code == 0
    expected = {f"200.1.2.{n}": ("Empresa SAS", "Online_basico") for n in range(8)}
    expected["10.6.0.1"] = ("Empresa SAS", "Online_basico")
    assert managed_state(bqn_sim) == expected
    assert "wisphub-40" not in groups(bqn_sim)


def test_skip_mode_reports_the_client(wisphub_sim, bqn_sim, run_cli, env):
    wisphub_sim.state.upsert_client(EMPRESA)
    result = run_cli(environ={**env, "MULTI_IP_MODE": "skip"})
    assert result.code == 0
    assert "skipped: client 40" in result.out
    assert "MULTI_IP_MODE=skip" in result.out
    assert managed_state(bqn_sim) == {}
    assert "wisphub-40" not in groups(bqn_sim)


@pytest.mark.slow
def test_a_group_follows_changes_and_goes_on_cancel(web, work, wisphub_sim, bqn_sim):
    wisphub_sim.state.upsert_client(EMPRESA)
    web.post("/webhooks/wisphub", json={"id_servicio": 40}, headers=HOOK)
    work()
    assert shaped(groups(bqn_sim)["wisphub-40"]) == (
        ["10.6.0.1"],
        ["200.1.2.0/29"],
        "Online_basico",
    )

    wisphub_sim.state.update_client(40, estado="Suspendido", ip="10.6.0.1, 10.6.0.2")
    web.post("/webhooks/wisphub", json={"id_servicio": 40}, headers=HOOK)
    work()
    assert shaped(groups(bqn_sim)["wisphub-40"]) == (["10.6.0.1", "10.6.0.2"], [], "Wisphub_block")

    wisphub_sim.state.update_client(40, estado="Cancelado")
    web.post("/webhooks/wisphub", json={"id_servicio": 40}, headers=HOOK)
    work()
    assert "wisphub-40" not in groups(bqn_sim)


def test_groups_the_sync_did_not_create_are_never_touched(wisphub_sim, bqn_sim, run_cli):
    wisphub_sim.state.upsert_client(row(41, "10.6.1.1"))
    with bqn_sim.state.lock:
        bqn_sim.state.groups["tower-3"] = {
            "subscriberGroupName": "tower-3",
            "subscriberGroupType": "tower",
            "subscriberMembers": ["10.99.0.35"],
            "subscriberRanges": [],
        }
        bqn_sim.state.groups["wisphub-999"] = {
            "subscriberGroupName": "wisphub-999",
            "subscriberGroupType": "generic",
            "subscriberMembers": ["10.6.9.9"],
            "subscriberRanges": [],
            "policyRate": "Online_basico",
        }
    before = groups(bqn_sim)
    assert run_cli().code == 0
    after = groups(bqn_sim)
    assert after["tower-3"] == before["tower-3"]
    assert after["all-subscribers"] == before["all-subscribers"]
    assert "wisphub-999" not in after  # a group of the sync's whose client is gone
