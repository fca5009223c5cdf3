"""The web service's HTTP contract: auth, payload shapes, errors, job status, health."""

from __future__ import annotations

import json
import re
import time

import pytest

from service.app import create_app
from tests.integration.conftest import API, API_TOKEN, HOOK, WEBHOOK_SECRET, stamped
from tests.rows import row
from worker.core.errors import ConfigError
from worker.queue import pause

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("kwargs", "ids"),
    [
        pytest.param({"json": {"id_servicio": 12}}, [12], id="json-one"),
        pytest.param({"json": {"id_servicio": [12, "13", 12]}}, [12, 13], id="json-list"),
        pytest.param(
            {"json": {"clientes": [{"id_servicio": 5}, {"id_servicio": 6}]}},
            [5, 6],
            id="json-clientes",
        ),
        pytest.param({"data": {"id_servicio": ["7", "8"]}}, [7, 8], id="form-repeated"),
        pytest.param({"data": {"id_servicio": "7,8"}}, [7, 8], id="form-comma"),
        pytest.param({"query_string": {"id_servicio": "9"}}, [9], id="query"),
    ],
)
def test_every_notification_shape_queues_its_clients(web, queue, kwargs, ids):
    """One job for one client, one batch for several: each client named once."""
    response = web.post("/webhooks/wisphub", headers=HOOK, **kwargs)
    assert response.status_code == 202, response.json
    body = response.json
    assert [job["id_servicio"] for job in body["jobs"]] == ids
    assert sorted(queue.job_ids) == sorted({job["job_id"] for job in body["jobs"]})
    [queued] = queue.jobs
    assert queued.args[0] == (ids[0] if len(ids) == 1 else ids)


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param({"headers": {"X-Webhook-Token": WEBHOOK_SECRET}}, id="header"),
        pytest.param({"headers": {"Authorization": f"Bearer {WEBHOOK_SECRET}"}}, id="bearer"),
        pytest.param(
            {"query_string": {"token": WEBHOOK_SECRET, "id_servicio": "4"}}, id="query-token"
        ),
    ],
)
@pytest.mark.slow
def test_webhook_secret_forms(web, auth):
    kwargs = {"json": {"id_servicio": 4}} if "headers" in auth else {}
    assert web.post("/webhooks/wisphub", **auth, **kwargs).status_code == 202


def test_hmac_signed_notification(web):
    body = json.dumps({"id_servicio": 4}).encode()
    now = int(time.time())
    assert web.post("/webhooks/wisphub", data=body, headers=stamped(body, now)).status_code == 202
    forged = stamped(body, now + 1, "not-the-secret-at-all")
    response = web.post("/webhooks/wisphub", data=body, headers=forged)
    assert response.status_code == 401
    assert "signature" in response.json["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Webhook-Token": "wrong"}, {"Authorization": f"Bearer {API_TOKEN}"}],
    ids=["none", "wrong", "api-token-is-not-the-webhook-secret"],
)
def test_webhook_refuses_wrong_credentials(web, queue, headers):
    response = web.post("/webhooks/wisphub", json={"id_servicio": 1}, headers=headers)
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert queue.count == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"json": {}}, 'neither "id_servicio" nor "clientes"', id="empty-object"),
        pytest.param({"json": [1, 2]}, "must be an object", id="list"),
        pytest.param({"json": {"id_servicio": -3}}, "positive whole number", id="negative"),
        pytest.param({"json": {"id_servicio": 0}}, "positive whole number", id="zero"),
        pytest.param({"json": {"id_servicio": "12a"}}, "positive whole number", id="text"),
        pytest.param({"json": {"id_servicio": 1.5}}, "positive whole number", id="float"),
        pytest.param({"json": {"id_servicio": True}}, "positive whole number", id="bool"),
        pytest.param({"json": {"id_servicio": None}}, "positive whole number", id="null"),
        pytest.param(
            {"json": {"clientes": [{"id": 1}]}}, '"clientes" must be a list', id="clientes-shape"
        ),
        pytest.param(
            {"json": {"id_servicio": list(range(1, 1002))}}, "at most 1000", id="too-many"
        ),
        pytest.param(
            {"data": "{not json", "content_type": "application/json"},
            "not valid JSON",
            id="bad-json",
        ),
        pytest.param({}, "no id_servicio given", id="nothing"),
    ],
)
@pytest.mark.slow
def test_malformed_notifications_are_400_with_a_reason(web, queue, kwargs, message):
    response = web.post("/webhooks/wisphub", headers=HOOK, **kwargs)
    assert response.status_code == 400
    assert message in response.json["message"]
    assert queue.count == 0


def test_oversized_bodies_are_413(web):
    body = json.dumps({"id_servicio": 1, "padding": "x" * 70_000})
    response = web.post(
        "/webhooks/wisphub", data=body, headers={**HOOK, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json["error"] == "too_large"


def test_notifications_for_a_waiting_client_coalesce(web, queue):
    first = web.post("/webhooks/wisphub", json={"id_servicio": 77}, headers=HOOK).json
    ids = {
        web.post("/webhooks/wisphub", json={"id_servicio": 77}, headers=HOOK).json["jobs"][0][
            "job_id"
        ]
        for _ in range(99)
    }
    assert ids == {first["jobs"][0]["job_id"]}
    assert queue.count == 1


def test_manual_sync_needs_the_api_token(web, queue):
    assert web.post("/api/v1/clients/12/sync").status_code == 401
    assert (
        web.post("/api/v1/clients/12/sync", headers={"Authorization": "Bearer x"}).status_code
        == 401
    )
    response = web.post("/api/v1/clients/12/sync", headers=API)
    assert response.status_code == 202
    assert queue.job_ids == [response.json["job_id"]]


@pytest.mark.parametrize("raw_id", ["abc", "0", "-1", "1e3", "99999999999999999999"])
def test_bad_client_ids_are_400(web, raw_id):
    response = web.post(f"/api/v1/clients/{raw_id}/sync", headers=API)
    assert response.status_code == 400
    assert "positive whole number" in response.json["message"]


def test_reconcile_options_are_checked(web, queue):
    assert web.post("/api/v1/reconcile", json={"dry_run": "yes"}, headers=API).status_code == 400
    assert web.post("/api/v1/reconcile", data="[]", headers=API).status_code == 400
    response = web.post("/api/v1/reconcile", headers=API)
    assert response.status_code == 202
    assert queue.job_ids == [response.json["job_id"]]


def test_job_status_of_a_queued_and_an_unknown_job(web):
    job_id = web.post("/api/v1/clients/3/sync", headers=API).json["job_id"]
    view = web.get(f"/api/v1/jobs/{job_id}", headers=API).json
    assert view["status"] == "queued"
    assert view["attempts"] == 0
    missing = web.get("/api/v1/jobs/nope", headers=API)
    assert missing.status_code == 404
    assert missing.json["error"] == "not_found"


@pytest.mark.slow
def test_plan_shows_what_would_change_and_writes_nothing(web, wisphub_sim, bqn_sim):
    wisphub_sim.state.upsert_client(row(31, "10.31.0.1", "Suspendido", nombre="Lía"))
    response = web.get("/api/v1/clients/31/plan", headers=API)
    assert response.status_code == 200, response.json
    plan = response.json
    assert plan["dry_run"] is True
    assert [(op["action"], op["kind"], op["key"]) for op in plan["operations"]] == [
        ("create", "policy", "Wisphub_block"),
        ("create", "subscriber", "10.31.0.1"),
    ]
    assert bqn_sim.writes() == 0


def test_plan_reports_an_unreachable_bqn_as_503(service_env, redis, wisphub_sim):
    wisphub_sim.state.upsert_client(row(1, "10.1.0.1"))
    app = create_app({**service_env, "BQN_URL": "127.0.0.1:9", "BQN_RETRIES": "0"})
    response = app.test_client().get("/api/v1/clients/1/plan", headers=API)
    assert response.status_code == 503
    assert response.json["error"] == "upstream_unavailable"
    assert "BQN unreachable" in response.json["message"]


def test_unknown_routes_and_methods_answer_json(web):
    assert web.get("/nope").json["error"] == "not_found"
    assert web.get("/webhooks/wisphub").status_code == 405


def test_redis_down_is_503_never_2xx(service_env):
    app = create_app({**service_env, "REDIS_URL": "redis://127.0.0.1:9/0"})
    client = app.test_client()
    hook = client.post("/webhooks/wisphub", json={"id_servicio": 1}, headers=HOOK)
    assert hook.status_code == 503
    assert hook.json["error"] == "unavailable"
    assert client.post("/api/v1/clients/1/sync", headers=API).status_code == 503
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_ready_only_with_a_registered_worker(web, queue):
    assert web.get("/readyz").status_code == 503
    from rq import Worker

    worker = Worker([queue], connection=queue.connection)
    worker.register_birth()
    try:
        response = web.get("/readyz")
        assert response.status_code == 200
        assert response.json["workers"] == 1
    finally:
        worker.register_death()


@pytest.mark.parametrize(
    ("missing", "now_open", "still_closed"),
    [
        ("WEBHOOK_SECRET", "/webhooks/wisphub?id_servicio=1", "/api/v1/clients/1/sync"),
        ("API_TOKEN", "/api/v1/clients/1/sync", "/webhooks/wisphub?id_servicio=1"),
    ],
)
def test_the_app_refuses_to_start_open_unless_told(service_env, missing, now_open, still_closed):
    env = {k: v for k, v in service_env.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        create_app(env)
    client = create_app({**env, "ALLOW_UNAUTHENTICATED": "1"}).test_client()
    assert client.post(now_open).status_code == 202
    assert client.post(still_closed).status_code == 401


@pytest.mark.parametrize(
    ("offset", "status"),
    [(0, 202), (-290, 202), (-301, 401), (301, 401)],
    ids=["now", "almost-five-minutes-old", "too-old", "from-the-future"],
)
def test_a_timestamped_signature_must_be_fresh(web, offset, status):
    body = json.dumps({"id_servicio": 4}).encode()
    headers = stamped(body, int(time.time()) + offset)
    assert web.post("/webhooks/wisphub", data=body, headers=headers).status_code == status


def test_a_timestamp_is_part_of_what_is_signed(web):
    body = json.dumps({"id_servicio": 4}).encode()
    headers = stamped(body, int(time.time()) - 100)
    headers["X-Webhook-Timestamp"] = str(int(time.time()))  # replayed with a new stamp
    response = web.post("/webhooks/wisphub", data=body, headers=headers)
    assert response.status_code == 401
    headers["X-Webhook-Timestamp"] = "yesterday"
    assert (
        "Unix seconds" in web.post("/webhooks/wisphub", data=body, headers=headers).json["message"]
    )


def test_the_notification_rate_limit_is_per_source(service_env, redis):
    app = create_app({**service_env, "WEBHOOK_RATE_LIMIT": "3/minute", "TRUSTED_PROXIES": "1"})
    client = app.test_client()

    def notify(source: str) -> int:
        headers = {**HOOK, "X-Forwarded-For": source}
        return client.post(
            "/webhooks/wisphub", json={"id_servicio": 1}, headers=headers
        ).status_code

    assert [notify("198.51.100.7") for _ in range(4)] == [202, 202, 202, 429]
    assert notify("198.51.100.8") == 202  # another sender has its own allowance
    limited = client.post(
        "/webhooks/wisphub",
        json={"id_servicio": 1},
        headers={**HOOK, "X-Forwarded-For": "198.51.100.7"},
    )
    assert limited.json["error"] == "too_many_requests"
    assert "Retry-After" in limited.headers
    assert client.post("/api/v1/clients/1/sync", headers=API).status_code == 202  # API unlimited


def test_a_bad_rate_limit_is_a_configuration_error(service_env):
    with pytest.raises(ConfigError, match="WEBHOOK_RATE_LIMIT"):
        create_app({**service_env, "WEBHOOK_RATE_LIMIT": "lots"})


@pytest.mark.parametrize("job_id", ["a.b", "\x02\xf1", "x" * 129])
def test_malformed_job_ids_are_400(web, job_id):
    from urllib.parse import quote

    response = web.get(f"/api/v1/jobs/{quote(job_id)}", headers=API)
    assert response.status_code == 400
    assert "not a job id" in response.json["message"]
    requeue = web.post("/api/v1/failures/requeue", json={"job_ids": [job_id]}, headers=API)
    assert requeue.status_code == 400


MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-credentials"),
        pytest.param({"Authorization": "Bearer wrong", "X-Webhook-Token": "wrong"}, id="wrong"),
        pytest.param({"Authorization": f"Basic {API_TOKEN}"}, id="wrong-scheme"),
    ],
)
@pytest.mark.slow
def test_every_mutating_route_refuses_a_request_without_credentials(app, web, queue, headers):
    routes = [
        (re.sub(r"<[^>]+>", "7", rule.rule), method)
        for rule in app.url_map.iter_rules()
        for method in sorted(rule.methods & MUTATING)
    ]
    assert len(routes) == 18, routes  # the API's ten, the status page's eight (sign-in too)
    for path, method in routes:
        response = web.open(path, method=method, json={"id_servicio": 7}, headers=headers)
        assert response.status_code == 401, (method, path, response.status_code)
    assert queue.count == 0, "nothing was queued"
    assert not pause.paused(queue.connection), "nor were writes paused"
