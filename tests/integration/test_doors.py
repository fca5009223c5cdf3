"""The web process's doors against abuse: signed notifications that cannot be stretched or
replayed, a queue and a history that a flood cannot fill, a rate limit strangers cannot spend,
secrets that must be strong, and inputs that once crashed the parser."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from sandbox.redis_server import RedisServer, free_port
from service.app import create_app
from tests.integration.conftest import API, API_TOKEN, HOOK, WEBHOOK_SECRET, stamped
from tests.rows import row
from worker.core.errors import ConfigError
from worker.queue import history
from worker.settings import HistoryLimits, ServiceSettings

pytestmark = pytest.mark.integration


BODY = json.dumps({"id_servicio": [4]}).encode()


# Signed notifications ---------------------------------------------------------------------


def test_a_signature_without_a_timestamp_is_refused(web, queue):
    digest = hmac.new(WEBHOOK_SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    headers = {"X-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}
    response = web.post("/webhooks/wisphub", data=BODY, headers=headers)
    assert response.status_code == 401
    assert "X-Webhook-Timestamp" in response.json["message"]
    assert queue.count == 0


def test_a_signed_notification_names_its_clients_in_the_body_only(web, queue):
    """The query string is not signed: ids added to it must not ride on a valid signature."""
    headers = stamped(BODY)
    response = web.post("/webhooks/wisphub?id_servicio=1,2,3,5", data=BODY, headers=headers)
    assert response.status_code == 400
    assert "query string" in response.json["message"]
    assert queue.count == 0
    # nothing was queued: the sender may send it again, without the query
    assert web.post("/webhooks/wisphub", data=BODY, headers=headers).status_code == 202


def test_a_signed_notification_is_accepted_once(web, queue):
    headers = stamped(BODY)
    first = web.post("/webhooks/wisphub", data=BODY, headers=headers)
    assert first.status_code == 202
    replayed = web.post("/webhooks/wisphub", data=BODY, headers=headers)
    assert replayed.status_code == 409
    assert "already received" in replayed.json["message"]
    assert queue.count == 1
    # the sender's next notification, signed afresh, goes through
    assert (
        web.post(
            "/webhooks/wisphub", data=BODY, headers=stamped(BODY, int(time.time()) + 1)
        ).status_code
        == 202
    )


def test_a_signed_notification_refused_for_a_full_queue_may_be_sent_again(service_env, redis):
    """A 503 queued nothing, so the same signed notification must be accepted on retry."""
    client = create_app({**service_env, "MAX_QUEUED_JOBS": "1"}).test_client()
    assert (
        client.post("/webhooks/wisphub", json={"id_servicio": 1}, headers=HOOK).status_code == 202
    )
    headers = stamped(BODY)
    assert client.post("/webhooks/wisphub", data=BODY, headers=headers).status_code == 503
    redis.delete("rq:queue:" + ServiceSettings.queue_name)  # the worker took the waiting job
    assert client.post("/webhooks/wisphub", data=BODY, headers=headers).status_code == 202


# A queue and a history a flood cannot fill ------------------------------------------------------


def test_past_the_queue_cap_nothing_is_queued_and_the_sender_is_told_when_to_retry(
    service_env, redis, queue
):
    env = {**service_env, "MAX_QUEUED_JOBS": "2", "BATCH_SIZE": "2"}
    client = create_app(env).test_client()
    assert (
        client.post("/webhooks/wisphub", json={"id_servicio": [1, 2]}, headers=HOOK).status_code
        == 202
    )
    assert queue.count == 1, "one batch"
    full = client.post("/webhooks/wisphub", json={"id_servicio": [3, 4, 5, 6]}, headers=HOOK)
    assert full.status_code == 503
    assert full.json["error"] == "queue_full"
    assert int(full.headers["Retry-After"]) > 0
    assert queue.count == 1  # all or nothing: neither of its two batches was queued
    assert client.post("/api/v1/clients/9/sync", headers=API).status_code == 202  # room for one
    assert client.post("/api/v1/clients/10/sync", headers=API).status_code == 503


def test_ids_wisphub_does_not_have_keep_no_history_and_evict_none(
    service_env, redis, web, work, wisphub_sim, monkeypatch
):
    """A flood of made-up ids must not push real clients' histories out of the capped index."""
    monkeypatch.setenv("HISTORY_CLIENTS", "3")
    for key in (1, 2, 3):
        wisphub_sim.state.upsert_client(row(key, f"10.7.0.{key}", "Activo", "Plan_A"))
    client = create_app({**service_env, "HISTORY_CLIENTS": "3"}).test_client()
    assert (
        client.post("/webhooks/wisphub", json={"id_servicio": [1, 2, 3]}, headers=HOOK).status_code
        == 202
    )
    work()
    made_up = list(range(900_001, 900_041))
    assert (
        client.post("/webhooks/wisphub", json={"id_servicio": made_up}, headers=HOOK).status_code
        == 202
    )
    work()
    for key in (1, 2, 3):
        assert history.read(redis, key)[0]["event"] == "done", key
    assert {int(member) for member in redis.zrange(history.INDEX, 0, -1)} == {1, 2, 3}
    assert not any(redis.exists(history.stream_key(key)) for key in made_up)


# The rate limit --------------------------------------------------------------------------


def test_wrong_secrets_do_not_spend_the_real_senders_allowance(service_env, redis):
    app = create_app({**service_env, "WEBHOOK_RATE_LIMIT": "3/minute", "TRUSTED_PROXIES": "1"})
    client = app.test_client()
    source = {"X-Forwarded-For": "198.51.100.7"}

    def notify(headers: dict[str, str]) -> int:
        return client.post(
            "/webhooks/wisphub", json={"id_servicio": 1}, headers={**source, **headers}
        ).status_code

    assert [notify({"X-Webhook-Token": "a-wrong-secret-0000"}) for _ in range(10)] == [401] * 10
    assert [notify(HOOK) for _ in range(4)] == [202, 202, 202, 429]


def test_the_rate_limits_are_on_unless_turned_off(service_env):
    assert ServiceSettings.from_env(service_env).webhook_rate_limit == "1200/minute"
    assert ServiceSettings.from_env(service_env).login_rate_limit == "10/minute"
    off = {**service_env, "WEBHOOK_RATE_LIMIT": "off", "LOGIN_RATE_LIMIT": "OFF"}
    assert ServiceSettings.from_env(off).webhook_rate_limit is None
    assert ServiceSettings.from_env(off).login_rate_limit is None


# Secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"API_TOKEN": "a"}, "API_TOKEN is 1 characters long"),
        ({"WEBHOOK_SECRET": "short-secret"}, "WEBHOOK_SECRET is 12 characters long"),
        ({"WEBHOOK_SECRET": API_TOKEN}, "are the same"),
        ({"ALLOW_UNAUTHENTICATED": "1", "API_TOKEN": "weak"}, "API_TOKEN is 4"),
    ],
)
def test_weak_or_shared_secrets_refuse_to_start(service_env, changes, message):
    with pytest.raises(ConfigError, match=message):
        create_app({**service_env, **changes})


# Inputs that once answered 500 ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("post", "/webhooks/wisphub", HOOK),
        ("post", "/api/v1/reconcile", API),
        ("post", "/api/v1/failures/requeue", API),
    ],
)
def test_deeply_nested_json_is_a_400(web, method, path, headers):
    response = getattr(web, method)(
        path, data="[" * 20_000, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "nests too deep" in response.json["message"]


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"path": "/api/v1/clients/" + "7" * 5000 + "/sync", "headers": API},
        {"path": "/webhooks/wisphub", "json": {"id_servicio": "7" * 5000}, "headers": HOOK},
        {"path": "/webhooks/wisphub", "query_string": {"id_servicio": "7" * 5000}, "headers": HOOK},
        {
            "path": "/webhooks/wisphub",
            "data": '{"id_servicio": ' + "7" * 5000 + "}",
            "headers": {**HOOK, "Content-Type": "application/json"},
        },
    ],
    ids=["path", "json-text", "query", "json-number"],
)
def test_an_id_of_thousands_of_digits_is_a_400(web, queue, request_kwargs):
    response = web.post(**request_kwargs)
    assert response.status_code == 400
    assert queue.count == 0


# What answers say ------------------------------------------------------------------------


def test_readyz_tells_where_redis_is_only_to_the_api_token(service_env):
    down = f"redis://127.0.0.1:{free_port()}/0"
    client = create_app({**service_env, "REDIS_URL": down}).test_client()
    anonymous = client.get("/readyz")
    assert anonymous.status_code == 503
    assert anonymous.json == {"status": "unavailable", "redis": "unreachable"}
    trusted = client.get("/readyz", headers=API)
    assert trusted.status_code == 503
    assert down.split("//")[1].split("/")[0] in trusted.json["redis"]


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("get", "/api/v1/failures", API),
        ("post", "/webhooks/wisphub?id_servicio=1", HOOK),
        ("get", "/api/v1/jobs/no-such-job", API),
        ("get", "/healthz", {}),
    ],
)
def test_answers_are_neither_sniffed_nor_cached(web, method, path, headers):
    response = getattr(web, method)(path, headers=headers)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_the_web_process_warns_at_start_when_the_bqn_is_not_verified(service_env, caplog):
    unverified = {k: v for k, v in service_env.items() if k != "BQN_CA_BUNDLE"}
    with caplog.at_level(logging.WARNING, logger="service.app"):
        create_app(service_env)
        assert not [r for r in caplog.records if "not verified" in r.getMessage()]
        create_app(unverified)
    [warning] = [r for r in caplog.records if "not verified" in r.getMessage()]
    assert "BQN_CA_BUNDLE" in warning.getMessage()


def test_a_signed_in_page_with_redis_down_is_a_503_not_a_500(service_env, tmp_path):
    """The session lives in Redis: opening it fails before any view runs."""
    with RedisServer(tmp_path) as server:
        client = create_app({**service_env, "REDIS_URL": server.url}).test_client()
        assert client.post("/login", data={"token": API_TOKEN}).status_code == 302
        assert client.get("/").status_code == 200
        server.stop()
        response = client.get("/")
    assert response.status_code == 503
    assert response.json["error"] == "unavailable"


def test_requests_sent_together_cannot_slip_past_the_cap_or_the_rate_limit(
    service_env, redis, queue
):
    """The cap and the limit are taken atomically as each request arrives: checked first and
    counted after, 20 requests in flight would all pass."""
    app = create_app(
        {
            **service_env,
            "MAX_QUEUED_JOBS": "2000",
            "WEBHOOK_RATE_LIMIT": "15/minute",
            "BATCH_SIZE": "1",  # a job per client: 500 jobs a request
        }
    )
    batches = [list(range(1 + n * 500, 1 + (n + 1) * 500)) for n in range(20)]
    start = threading.Barrier(len(batches))

    def send(ids: list[int]) -> int:
        client = app.test_client()
        start.wait()
        return client.post("/webhooks/wisphub", json={"id_servicio": ids}, headers=HOOK).status_code

    with ThreadPoolExecutor(len(batches)) as pool:
        answers = Counter(pool.map(send, batches))
    assert answers == {202: 4, 503: 11, 429: 5}
    assert queue.count == 2000


def test_a_signature_without_its_algorithm_says_so(web):
    headers = stamped(BODY)
    headers["X-Signature-256"] = headers["X-Signature-256"].removeprefix("sha256=")
    response = web.post("/webhooks/wisphub", data=BODY, headers=headers)
    assert response.status_code == 401
    assert "sha256=<hex digest>" in response.json["message"]


def test_a_timestamp_of_hundreds_of_digits_is_a_401(web):
    headers = {**stamped(BODY), "X-Webhook-Timestamp": "1" + "0" * 400}
    response = web.post("/webhooks/wisphub", data=BODY, headers=headers)
    assert response.status_code == 401
    assert "Unix seconds" in response.json["message"]


def test_a_known_client_whose_jobs_keep_failing_keeps_its_place_in_the_history(redis):
    """Its retries and failures are noted as for any named id, yet they must keep it fresh:
    that history is the one an operator needs."""
    limits = HistoryLimits(clients=2)
    history.write(redis, [(1, history.event("done"))], limits)
    history.write(redis, [(2, history.event("done"))], limits)
    history.write(redis, [(1, history.event("retry"))], limits, known=False)
    history.write(redis, [(3, history.event("done"))], limits)  # the least recent goes: 2
    assert {int(member) for member in redis.zrange(history.INDEX, 0, -1)} == {1, 3}
    assert history.read(redis, 1)[0]["event"] == "retry"


def test_a_script_reading_the_page_with_a_bearer_token_makes_no_session(web, redis):
    """A monitor polling `/` every few seconds must not leave a session in Redis each time."""
    for _ in range(3):
        response = web.get("/", headers=API)
        assert response.status_code == 200
        assert "Set-Cookie" not in response.headers
    assert redis.keys("wisphub-bqn-sync:session:*") == []


def test_redis_down_while_signing_in_is_a_503_and_a_notification_logs_no_traceback(
    service_env, tmp_path, caplog
):
    """Saving the session fails after the view; the rate limit cannot be counted before it."""
    with RedisServer(tmp_path) as server:
        client = create_app({**service_env, "REDIS_URL": server.url}).test_client()
        server.stop()
        signing_in = client.post("/login", data={"token": API_TOKEN})
        with caplog.at_level(logging.INFO):
            notified = client.post("/webhooks/wisphub", json={"id_servicio": 1}, headers=HOOK)
    assert signing_in.status_code == 503
    assert notified.status_code == 503
    assert not [record for record in caplog.records if record.exc_info]


def test_a_signed_in_page_with_a_broken_basic_header_is_not_a_500(web):
    assert web.post("/login", data={"token": API_TOKEN}).status_code == 302
    broken = {"Authorization": "Basic \xff\xfe"}
    assert web.get("/", headers=broken).status_code == 200  # the session lets it in
    answer = web.post("/status/clients/sync", data={"id_servicio": "5"}, headers=broken)
    assert answer.status_code == 403  # no CSRF token: refused, not crashed


def test_more_ids_than_may_ever_wait_is_a_400_not_a_retry(service_env, redis):
    env = {**service_env, "MAX_QUEUED_JOBS": "3", "BATCH_SIZE": "1"}  # 4 clients: 4 jobs
    client = create_app(env).test_client()
    response = client.post("/webhooks/wisphub", json={"id_servicio": [1, 2, 3, 4]}, headers=HOOK)
    assert response.status_code == 400
    assert "MAX_QUEUED_JOBS" in response.json["message"]
    assert "Retry-After" not in response.headers
