"""Plan speeds reaching the BQN as rate policies: CLI, jobs and API against the simulators."""

from __future__ import annotations

import json

import pytest
from rq.job import Job

from sandbox.seed import wisphub_plans
from tests.integration.conftest import API, HOOK, managed_state
from tests.rows import row

pytestmark = pytest.mark.integration

PLANS = {plan["id"]: plan for plan in wisphub_plans()}
KBPS = {
    "10M": 10_000,
    "5M": 5_000,
    "2M": 2_000,
    "3M": 3_000,
    "20M": 20_000,
    "50M": 50_000,
    "25M": 25_000,
    "1G": 1_000_000,
    "500M": 500_000,
    "1M": 1_000,
    "512k": 512,
    "256k": 256,
}


def rates(policy):
    return (
        policy.get("policyId"),
        policy.get("rateLimitDownlink", {}).get("rate"),
        policy.get("rateLimitUplink", {}).get("rate"),
    )


@pytest.mark.slow
def test_every_plan_with_speeds_becomes_a_rated_policy(wisphub_sim, bqn_sim, run_cli):
    wisphub_sim.load(300)
    result = run_cli("--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    held = bqn_sim.policies()
    for plan in PLANS.values():
        name = plan["nombre"].replace(" ", "_")
        if plan["tipo"] == "PCQ":
            assert report["plans_without_speeds"] == [
                {
                    "plan": plan["nombre"],
                    "policy": name,
                    "reason": "PCQ plans have no speeds in WispHub",
                }
            ]
            continue
        assert rates(held[name]) == (str(plan["id"]), KBPS[plan["bajada"]], KBPS[plan["subida"]])


@pytest.mark.slow
def test_the_override_file_fills_pcq_plans_and_overrides_others(
    wisphub_sim, bqn_sim, run_cli, env, tmp_path
):
    wisphub_sim.load(200)
    speeds = tmp_path / "speeds.yaml"
    speeds.write_text(
        "Comunitario PCQ: {download: 30M, upload: 10M}\n"
        "Plan 10 Megas: {download: 12M, upload: 4M, burst_rate: 20M, burst_threshold: 12M,"
        " burst_duration: 8}\n"
    )
    result = run_cli("--json", environ={**env, "PLAN_SPEEDS_FILE": str(speeds)})
    assert result.code == 0, result.err
    assert json.loads(result.out)["plans_without_speeds"] == []
    held = bqn_sim.policies()
    assert rates(held["Comunitario_PCQ"]) == ("442890", 30_000, 10_000)
    assert held["Plan_10_Megas"]["rateLimitDownlink"]["burstRate"] == 20_000
    assert held["Plan_10_Megas"]["rateLimitDownlink"]["burstDuration"] == 8
    # no "undefined" policy is left that WispHub or the file could have filled
    assert all("rateLimitDownlink" in policy for policy in held.values())


def test_a_bad_override_file_is_a_configuration_error(run_cli, env, tmp_path):
    speeds = tmp_path / "speeds.csv"
    speeds.write_text("plan,download,upload\nComunitario PCQ,fast,1M\n")
    result = run_cli(environ={**env, "PLAN_SPEEDS_FILE": str(speeds)})
    assert result.code == 2
    assert "Comunitario PCQ" in result.err
    assert "unreadable speed" in result.err


def test_corrections_keep_what_was_set_by_hand(wisphub_sim, bqn_sim, run_cli):
    wisphub_sim.state.upsert_client(row(1, "10.4.0.1", plan="Plan 20 Megas"))
    with bqn_sim.state.lock:
        bqn_sim.state.policies["Plan_20_Megas"] = {
            "policyName": "Plan_20_Megas",
            "policyId": "439318",
            "rateLimitDownlink": {"rate": 15_000, "burstRate": 30_000, "congestionMgmt": False},
            "rateLimitUplink": {"rate": 5_000, "congestionMgmt": False},
            "flowLimit": 500,
        }
    assert run_cli().code == 0
    held = bqn_sim.policies()["Plan_20_Megas"]
    assert held["rateLimitDownlink"] == {
        "rate": 20_000,
        "burstRate": 30_000,
        "congestionMgmt": False,
    }
    assert held["rateLimitUplink"] == {"rate": 5_000, "congestionMgmt": False}
    assert held["flowLimit"] == 500
    bqn_sim.state.stats.reset()
    assert run_cli().code == 0
    assert bqn_sim.writes() == 0


def test_an_undefined_policy_is_completed(wisphub_sim, bqn_sim, run_cli):
    # the original script left subscribers on policies the BQN created as "undefined"
    bqn_sim.add_rest_subscriber("10.4.0.2", "Ana", "Básico_5M")
    assert bqn_sim.policies()["Básico_5M"] == {"policyName": "Básico_5M"}
    wisphub_sim.state.upsert_client(row(2, "10.4.0.2", plan="Básico 5M", nombre="Ana"))
    assert run_cli().code == 0
    assert rates(bqn_sim.policies()["Básico_5M"]) == ("441250", 5_000, 1_000)


def test_a_static_policy_is_left_alone_and_reported(wisphub_sim, bqn_sim, run_cli):
    static = {
        "policyName": "Online_basico",
        "policyId": "gui",
        "rateLimitDownlink": {"rate": 7_000},
        "rateLimitUplink": {"rate": 7_000},
    }
    bqn_sim.state.add_static_policy(static)
    wisphub_sim.state.upsert_client(row(3, "10.4.0.3", plan="Online_basico", nombre="Eli"))
    result = run_cli()
    assert result.code == 0, result.err
    assert "note: policy Online_basico: the BQN kept its own settings" in result.out
    assert rates(bqn_sim.policies()["Online_basico"]) == ("gui", 7_000, 7_000)
    assert managed_state(bqn_sim)["10.4.0.3"] == ("Eli", "Online_basico")


def test_unused_policies_are_listed_not_deleted(bqn_sim, run_cli):
    with bqn_sim.state.lock:
        bqn_sim.state.policies["Viejo_Plan"] = {
            "policyName": "Viejo_Plan",
            "policyId": "1",
            "rateLimitDownlink": {"rate": 1},
            "rateLimitUplink": {"rate": 1},
        }
    result = run_cli("--json")
    assert "Viejo_Plan" in json.loads(result.out)["unused_policies"]
    assert "Viejo_Plan" in bqn_sim.policies()


def on_a_new_plan(wisphub_sim, client, plan_id, nombre, tipo):
    """A plan created in WispHub (its speed is in its name: `Nuevo 100M` is 100M/50M) and a
    client put on it."""
    down = nombre.split()[-1]
    up = f"{int(down[:-1]) // 2}M"
    wisphub_sim.state.set_plan(
        id=plan_id, nombre=nombre, tipo=tipo, bajada=down, subida=up, precio="1.00"
    )
    wisphub_sim.state.upsert_client(client)
    wisphub_sim.state.update_client(client["id_servicio"], plan_internet=plan_id)


def test_a_client_job_puts_its_policy_in_place_first(web, work, wisphub_sim, bqn_sim):
    on_a_new_plan(wisphub_sim, row(4, "10.4.0.4", nombre="Teo"), 777, "Nuevo 100M", "PPPoE")
    web.post("/webhooks/wisphub", json={"id_servicio": 4}, headers=HOOK)
    work()
    assert rates(bqn_sim.policies()["Nuevo_100M"]) == ("777", 100_000, 50_000)
    assert managed_state(bqn_sim) == {"10.4.0.4": ("Teo", "Nuevo_100M")}
    writes = [key for key in bqn_sim.state.stats.snapshot()["requests"] if key.startswith("POST")]
    assert writes == [
        "POST /api/v1/policies/rate/<path:name>",
        "POST /api/v1/subscribers/<path:ip>",
    ]


@pytest.mark.slow
def test_a_speed_change_in_wisphub_reaches_the_bqn_on_refresh(
    web, work, wisphub_sim, bqn_sim, redis
):
    wisphub_sim.load(50)
    web.post("/api/v1/reconcile", headers=API)
    work()
    assert rates(bqn_sim.policies()["Plan_10_Megas"]) == ("439305", 10_000, 3_000)
    plan = PLANS[439305]
    wisphub_sim.state.set_plan(**{**plan, "bajada": "15M", "subida": "5M"})
    job_id = web.post("/api/v1/plans/sync", headers=API).json["job_id"]
    work()
    assert rates(bqn_sim.policies()["Plan_10_Megas"]) == ("439305", 15_000, 5_000)
    report = Job.fetch(job_id, connection=redis).return_value()
    assert report["policies"] == ["update Plan_10_Megas"]


@pytest.mark.slow
def test_a_failed_catalogue_read_keeps_the_last_good_one(web, work, wisphub_sim, bqn_sim, redis):
    web.post("/api/v1/plans/sync", headers=API)
    work()
    wisphub_sim.state.faults.update(fail_every=1, fail_status=500)
    job_id = web.post("/api/v1/plans/sync", headers=API).json["job_id"]
    work()
    assert Job.fetch(job_id, connection=redis).get_status() == "finished"
    wisphub_sim.state.faults.clear()
    listing = web.get("/api/v1/plans", headers=API).json
    assert len(listing["plans"]) == len(PLANS)


@pytest.mark.slow
def test_the_plans_endpoint_shows_speeds_source_and_bqn_state(web, work, wisphub_sim, bqn_sim):
    web.post("/api/v1/plans/sync", headers=API)
    work()
    with bqn_sim.state.lock:
        bqn_sim.state.policies["Hogar_512k"]["rateLimitUplink"] = {"rate": 1}
    listing = {p["name"]: p for p in web.get("/api/v1/plans", headers=API).json["plans"]}
    assert listing["Online_basico"]["bqn"] == "ok"
    assert listing["Online_basico"]["wisphub_speeds"] == {"bajada": "10M", "subida": "5M"}
    assert listing["Online_basico"]["speeds"]["download_kbps"] == 10_000
    assert listing["Online_basico"]["source"] == "wisphub"
    assert listing["Hogar 512k"]["bqn"] == "different"
    assert listing["Comunitario PCQ"]["bqn"] == "left for the operator"
    assert listing["Comunitario PCQ"]["problem"] == "PCQ plans have no speeds in WispHub"
    assert web.get("/api/v1/plans").status_code == 401


@pytest.mark.slow
def test_a_plan_created_after_the_last_refresh_is_read_when_a_client_names_it(
    web, work, wisphub_sim, bqn_sim
):
    web.post("/api/v1/plans/sync", headers=API)
    work()
    on_a_new_plan(
        wisphub_sim, row(5, "10.4.0.5", nombre="Ulises"), 778, "Nuevo 200M", "Simple Queue"
    )
    web.post("/webhooks/wisphub", json={"id_servicio": 5}, headers=HOOK)
    work()
    assert rates(bqn_sim.policies()["Nuevo_200M"]) == ("778", 200_000, 100_000)
    assert managed_state(bqn_sim) == {"10.4.0.5": ("Ulises", "Nuevo_200M")}
