"""The targets through the web: `/api/v1/targets` (never a password), a target's drift read now,
`/readyz` and the status page naming each one; against an HA pair of BQN simulators, a real
Redis and real workers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from rq import Worker

from service.app import create_app
from tests.integration.conftest import (
    API,
    BQN_PASSWORD,
    BQN_USER,
    SECOND_BQN_PASSWORD,
    english,
    expected_subscribers,
    managed_state,
    targets_env,
    write_targets,
)
from tests.rows import row
from worker.queue import breaker, queueing, runtime, store

pytestmark = pytest.mark.integration

PASSWORDS = (BQN_PASSWORD, SECOND_BQN_PASSWORD)


@pytest.fixture
def pair_web(pair_env, redis) -> FlaskClient:
    return english(create_app(pair_env).test_client())


@pytest.fixture
def pair_work(work, pair_env, monkeypatch) -> Callable[..., None]:
    """`work`, its workers keeping the pair instead of the single BQN."""
    for name in ("BQN_URL", "BQN_USER", "BQN_PASSWORD"):
        monkeypatch.delenv(name)
    for name, value in pair_env.items():
        monkeypatch.setenv(name, value)
    runtime.runtime.cache_clear()
    return work


def leaks(text: str) -> list[str]:
    """The BQN passwords found in `text`, as written or as JSON escapes them."""
    return [secret for secret in PASSWORDS if secret in text or json.dumps(secret)[1:-1] in text]


def policies_wanted(wisphub_sim) -> int:
    """The policies a full reconcile puts on a BQN: the block policy, and one per plan with
    speeds (WispHub gives none for PCQ plans)."""
    return 1 + sum(plan["tipo"] != "PCQ" for plan in wisphub_sim.state.plans.values())


def targets_of(web: FlaskClient) -> dict[str, dict]:
    response = web.get("/api/v1/targets", headers=API)
    assert response.status_code == 200, response.json
    assert leaks(response.get_data(as_text=True)) == []
    return {target["name"]: target for target in response.json["targets"]}


def drift_of(web: FlaskClient, name: str) -> dict:
    response = web.get(f"/api/v1/targets/{name}/drift", headers=API)
    assert response.status_code == 200, response.json
    return response.json


def test_the_listing_names_each_target_with_its_selector_and_no_password(
    service_env, redis, bqn_sim, second_bqn, tmp_path
):
    path = write_targets(
        tmp_path,
        [
            {"name": "core-a", "url": bqn_sim.server.url, "user": BQN_USER,
             "password": BQN_PASSWORD},
            {"name": "site-b", "url": second_bqn.server.url, "user": BQN_USER,
             "password_env": "SITE_B_PASSWORD", "networks": ["10.10.0.0/16"],
             "routers": [63702, 63679]},
        ],
    )  # fmt: skip
    app = create_app(targets_env(service_env, path, SITE_B_PASSWORD=SECOND_BQN_PASSWORD))
    client = app.test_client()
    assert client.get("/api/v1/targets").status_code == 401
    listed = targets_of(client)
    assert list(listed) == ["core-a", "site-b"]
    assert listed["core-a"]["url"] == f"{bqn_sim.server.url}/api/v1"  # the REST API's root
    assert listed["core-a"]["selector"] == {}
    assert listed["site-b"]["url"] == f"{second_bqn.server.url}/api/v1"
    assert listed["site-b"]["selector"] == {"networks": ["10.10.0.0/16"], "routers": [63679, 63702]}
    for target in listed.values():
        assert target["breaker"]["state"] == "closed"
        assert target["last_reconcile"] is None
        assert target["failures"] == 0


def test_failed_jobs_count_for_the_targets_they_still_owe(
    pair_web, pair_work, queue, wisphub_sim, second_bqn
):
    wisphub_sim.state.upsert_client(row(1, "10.1.0.1", plan="Online_basico"))
    wisphub_sim.state.upsert_client(row(2, "10.1.0.2", plan="Online_basico"))
    # core-b refuses the writes of client 1's sync: its retry would owe core-b alone
    second_bqn.state.faults.update(fail_every=1, fail_status=400, writes_only=True)
    assert pair_web.post("/api/v1/clients/1/sync", headers=API).status_code == 202
    pair_work()
    # a reconcile of core-b alone, refused there: it owes core-b only
    second_bqn.state.faults.update(fail_status=403, writes_only=False)
    queueing.enqueue_reconcile(queue, dry_run=False, target="core-b")
    pair_work()
    # WispHub refuses client 2's read: nothing was done anywhere, every target is owed
    second_bqn.state.faults.clear()
    wisphub_sim.state.faults.update(fail_every=1, fail_status=403)
    assert pair_web.post("/api/v1/clients/2/sync", headers=API).status_code == 202
    pair_work()
    wisphub_sim.state.faults.clear()
    assert pair_web.get("/api/v1/failures", headers=API).json["count"] == 3
    listed = targets_of(pair_web)
    assert {name: target["failures"] for name, target in listed.items()} == {
        "core-a": 1,
        "core-b": 3,
    }


def test_drift_shows_what_a_one_target_reconcile_left_on_the_other(
    pair_web, pair_work, queue, wisphub_sim, bqn_sim, second_bqn
):
    rows = wisphub_sim.load(12)
    plans = {plan_id: plan["nombre"] for plan_id, plan in wisphub_sim.state.plans.items()}
    on_bqn = expected_subscribers(rows, plans)
    clients = sorted(
        r["id_servicio"] for r in rows if r["estado"] != "Cancelado" and r["ip"] in on_bqn
    )
    assert len(clients) == len(on_bqn)  # one address each: 12 clients make no shared ones
    policies = policies_wanted(wisphub_sim)
    queueing.enqueue_reconcile(queue, dry_run=False, target="core-a")
    pair_work()
    assert len(managed_state(bqn_sim)) == len(on_bqn)
    assert managed_state(second_bqn) == {}
    writes = bqn_sim.writes(), second_bqn.writes()

    done = drift_of(pair_web, "core-a")
    assert done["differ"] == 0
    assert done["counts"] == {"clients": 0, "gone": 0, "addresses": 0, "policies": 0}
    missed = drift_of(pair_web, "core-b")
    assert missed["target"] == "core-b"
    assert missed["wisphub_clients"] == len(rows)
    assert missed["counts"] == {
        "clients": len(clients),
        "gone": 0,
        "addresses": 0,
        "policies": policies,
    }
    assert missed["differ"] == len(clients) + policies
    assert missed["clients"] == clients[:10]
    assert len(missed["policies"]) == min(policies, 10)
    assert {op["action"] for op in missed["policies"]} == {"create"}
    assert (bqn_sim.writes(), second_bqn.writes()) == writes, "a drift read writes nothing"

    listed = targets_of(pair_web)
    last = listed["core-a"]["last_reconcile"]
    assert last["ok"] is True
    assert last["counts"]["created"] == len(on_bqn)  # policies are not counted
    assert listed["core-b"]["last_reconcile"] is None


def test_drift_of_an_unknown_target_is_a_json_404(pair_web):
    assert pair_web.get("/api/v1/targets/core-a/drift").status_code == 401
    response = pair_web.get("/api/v1/targets/core-c/drift", headers=API)
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
    assert "core-c" in response.json["message"]


def test_drift_with_the_bqn_down_is_a_503(pair_web, wisphub_sim, second_bqn):
    wisphub_sim.state.upsert_client(row(1, "10.1.0.1"))
    with second_bqn.outage():
        response = pair_web.get("/api/v1/targets/core-b/drift", headers=API)
    assert response.status_code == 503
    assert response.json["error"] == "upstream_unavailable"


def test_readyz_names_each_target_with_its_breaker(pair_web, queue, redis, second_bqn):
    worker = Worker([queue], connection=queue.connection)
    worker.register_birth()
    try:
        response = pair_web.get("/readyz")
        assert response.status_code == 200
        assert response.json["targets"] == {"core-a": "closed", "core-b": "closed"}
        breaker.record(redis, store.target_keys("core-b"), "BQN unreachable", failures=1)
        response = pair_web.get("/readyz")
    finally:
        worker.register_death()
    assert response.status_code == 200, "the other target's work goes on"
    assert response.json["targets"] == {"core-a": "closed", "core-b": "open"}
    assert second_bqn.server.url not in response.get_data(as_text=True)


def test_the_status_page_shows_each_target_and_what_each_applied(
    pair_web, pair_work, queue, wisphub_sim
):
    wisphub_sim.state.upsert_client(row(1, "10.1.0.1", plan="Online_basico"))
    queueing.enqueue_reconcile(queue, dry_run=False, target="core-a")
    pair_work()
    html = pair_web.get("/", headers=API).get_data(as_text=True)
    assert leaks(html) == []
    section = html[html.index('id="targets"') : html.index('id="reconcile"')]
    core_a = section[section.index('id="target-core-a"') : section.index('id="target-core-b"')]
    core_b = section[section.index('id="target-core-b"') :]
    for part in (core_a, core_b):
        assert "every client" in part
        assert re.search(r'class="good">closed', part)
    assert 'class="good">OK<' in core_a
    assert re.search(r"\b1 created\b", core_a)  # the subscriber (policies are not counted)
    assert "none yet" in core_b
    html = pair_web.get("/clients/1", headers=API).get_data(as_text=True)
    assert leaks(html) == []
    applied = html[html.index('id="applied"') :]
    applied = applied[: applied.index("</p>")]
    assert re.search(r"on core-a at 10\.1\.0\.1", applied)
    assert re.search(r"no entry applied by the sync on core-b", applied)
