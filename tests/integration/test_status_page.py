"""The status page at `/`, rendered by the app against a real Redis and real workers."""

from __future__ import annotations

import base64
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.sessions import KEY_PREFIX
from tests.integration.conftest import API, API_TOKEN, HOOK
from tests.rows import row
from worker.queue import queueing

pytestmark = pytest.mark.integration


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()}


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def test_the_page_asks_for_the_token(web):
    response = web.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert web.get("/", headers=basic("wrong")).status_code == 401
    assert "Basic" in web.get("/", headers=basic("wrong")).headers["WWW-Authenticate"]
    assert web.post("/login", data={"token": "wrong"}).status_code == 401
    assert web.get("/", headers=basic(API_TOKEN)).status_code == 200
    assert web.get("/", headers=API).status_code == 200


def test_signing_in_once_keeps_a_session(web):
    response = web.post("/login", data={"token": API_TOKEN, "next": "/?client=3"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/?client=3"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert API_TOKEN not in cookie
    assert web.get("/").status_code == 200
    html = web.get("/").get_data(as_text=True)
    assert web.post("/logout", data={"csrf": csrf_of(html)}).status_code == 302
    assert web.get("/").status_code == 302


def test_the_page_cannot_be_framed_or_cached(web):
    response = web.get("/", headers=API)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src" not in response.headers["Content-Security-Policy"]  # none at all
    assert response.headers["Cache-Control"] == "no-store"


def test_no_open_redirect_after_signing_in(web):
    response = web.post("/login", data={"token": API_TOKEN, "next": "//evil.example/"})
    assert response.headers["Location"] == "/"


def test_a_change_shows_on_the_page_step_by_step(web, work, wisphub_sim):
    wisphub_sim.state.upsert_client(row(1, "10.1.0.1", "Activo", "Online_basico", "José"))
    web.post("/webhooks/wisphub", json={"id_servicio": 1}, headers=HOOK)
    html = web.get("/", headers=API).get_data(as_text=True)
    assert re.search(r'id="queued">1<', html)
    work()
    html = web.get("/clients/1", headers=API).get_data(as_text=True)
    for step in (
        "sync asked for via webhook",
        "a worker started the job (attempt 1)",
        "WispHub says: estado Activo, plan Online_basico, IP 10.1.0.1",
        "BQN: create subscriber 10.1.0.1 with policy Online_basico: done",
        "done: 1 created",
    ):
        assert step in html
    assert html.index("done: 1 created") < html.index("sync asked for via webhook")  # newest first
    assert "<h2>José <span" in html  # the page is named after the client (issue 17)
    assert re.search(r'id="queued">0<', web.get("/", headers=API).get_data(as_text=True))


def test_failures_can_be_requeued_from_the_page(web, work, wisphub_sim, bqn_sim):
    wisphub_sim.state.upsert_client(row(4, "10.1.0.4", "Activo", "Online_basico", "Eva"))
    bqn_sim.state.faults.update(fail_every=1, fail_status=400, writes_only=True)
    web.post("/webhooks/wisphub", json={"id_servicio": 4}, headers=HOOK)
    work()
    html = web.get("/", headers=basic(API_TOKEN)).get_data(as_text=True)
    assert "Failures (1)" in html
    job_id = re.search(r'name="job_id" value="([^"]+)"', html).group(1)
    without_csrf = web.post(
        "/status/failures/requeue", data={"job_id": job_id}, headers=basic(API_TOKEN)
    )
    assert without_csrf.status_code == 403
    bqn_sim.state.faults.clear()
    response = web.post(
        "/status/failures/requeue",
        data={"job_id": job_id, "csrf": csrf_of(html)},
        headers=basic(API_TOKEN),
    )
    assert response.status_code == 302
    work()
    html = web.get("/", headers=basic(API_TOKEN)).get_data(as_text=True)
    assert "No failed jobs." in html


def test_sync_now_button(web, work, wisphub_sim, bqn_sim):
    wisphub_sim.state.upsert_client(row(5, "10.1.0.5", "Suspendido", nombre="Leo"))
    html = web.get("/clients/5", headers=basic(API_TOKEN)).get_data(as_text=True)
    assert 'id="no-history"' in html
    web.post(
        "/status/clients/sync",
        data={"id_servicio": "5", "csrf": csrf_of(html)},
        headers=basic(API_TOKEN),
    )
    work()
    html = web.get("/clients/5", headers=basic(API_TOKEN)).get_data(as_text=True)
    assert "sync asked for via status-page" in html
    assert "with policy Wisphub_block: done" in html


@pytest.mark.slow
def test_reconcile_poll_and_chart(web, work, wisphub_sim, queue):
    wisphub_sim.load(5)
    queueing.enqueue_reconcile(queue, dry_run=False)
    work()
    html = web.get("/", headers=API).get_data(as_text=True)
    section = html[html.index('id="reconcile"') : html.index('id="poll"')]
    assert "OK" in section
    assert "5 clients read" in section
    chart = html[html.index('id="chart"') :]
    assert re.search(r"<title>\d\d:00: [1-9]\d* done</title>", chart)


@pytest.mark.slow
def test_a_blank_search_or_a_bad_client_id_says_so(web):
    blank = web.get("/clients?q=+", headers=API)
    assert blank.status_code == 400
    assert "q is required" in blank.get_data(as_text=True)
    bad = web.get("/clients/abc", headers=API)
    assert bad.status_code == 404
    assert "is not an id_servicio" in bad.get_data(as_text=True)


# Sign-in hardening (issue 14) -------------------------------------------------------------


def signed_in(app: Flask, address: str = "127.0.0.1") -> FlaskClient:
    """A client of `app` that has signed in with the API token."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    assert client.post("/login", data={"token": API_TOKEN}).status_code == 302
    return client


def session_id(client: FlaskClient) -> str:
    return client.get_cookie("session").value


def with_session(app: Flask, sid: str) -> FlaskClient:
    """A new client of `app` presenting a session cookie it got elsewhere."""
    client = app.test_client()
    client.set_cookie("session", sid)
    return client


@pytest.mark.parametrize(
    "target",
    [
        "/%09/evil.example",  # werkzeug drops the tab: //evil.example
        "/%5Cevil.example",  # browsers read /\ as //
        "/%0d%0aSet-Cookie:%20x=1",  # a header break: was a 500
        "https://evil.example/",
        "javascript:alert(1)",
        "//evil.example/",
    ],
)
def test_sign_in_goes_nowhere_but_this_site(web, target):
    response = web.post(f"/login?next={target}", data={"token": API_TOKEN})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    form = web.get(f"/login?next={target}")
    assert form.status_code == 200
    assert 'name="next" value="/"' in form.get_data(as_text=True)


def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(app):
    client = signed_in(app)
    stolen = session_id(client)
    assert with_session(app, stolen).get("/").status_code == 200
    html = client.get("/").get_data(as_text=True)
    assert client.post("/logout", data={"csrf": csrf_of(html)}).status_code == 302
    assert with_session(app, stolen).get("/").status_code == 302
    assert client.get("/").status_code == 302


def test_sessions_are_kept_in_redis_and_strangers_make_none(app, redis):
    stranger = app.test_client()
    stranger.get("/")
    stranger.get("/login?next=/")
    stranger.post("/login", data={"token": "wrong"})
    assert redis.keys(KEY_PREFIX + "*") == []
    client = signed_in(app)
    assert redis.keys(KEY_PREFIX + "*") == [(KEY_PREFIX + session_id(client)).encode()]
    client.post("/logout", data={"csrf": csrf_of(client.get("/").get_data(as_text=True))})
    assert redis.keys(KEY_PREFIX + "*") == []


def test_signing_in_again_gives_a_new_session_id(app):
    client = signed_in(app)
    before = session_id(client)
    assert client.post("/login", data={"token": API_TOKEN}).status_code == 302
    assert session_id(client) != before
    assert with_session(app, before).get("/").status_code == 302
    assert client.get("/").status_code == 200


def test_a_new_api_token_signs_everybody_out(app, service_env):
    sid = session_id(signed_in(app))
    renewed = create_app({**service_env, "API_TOKEN": "another-api-token-0123456789"})
    assert with_session(renewed, sid).get("/").status_code == 302


def test_each_session_has_its_own_csrf_token(app, work, wisphub_sim):
    first, second = signed_in(app), signed_in(app)
    first_csrf = csrf_of(first.get("/").get_data(as_text=True))
    second_csrf = csrf_of(second.get("/").get_data(as_text=True))
    assert first_csrf != second_csrf
    sync = {"id_servicio": "7", "csrf": first_csrf}
    assert second.post("/status/clients/sync", data=sync).status_code == 403
    assert first.post("/status/clients/sync", data=sync).status_code == 302
    assert API_TOKEN not in first_csrf


def test_the_cookie_is_secure_over_https(service_env, redis):
    def cookie(env: dict[str, str], **request: object) -> str:
        client = create_app(env).test_client()
        return client.post("/login", data={"token": API_TOKEN}, **request).headers["Set-Cookie"]

    assert "Secure" not in cookie(service_env)
    assert "Secure" in cookie(service_env, base_url="https://localhost")
    proxied = {**service_env, "TRUSTED_PROXIES": "1"}
    assert "Secure" in cookie(proxied, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in cookie(service_env, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in cookie({**service_env, "SESSION_COOKIE_SECURE": "1"})


def test_token_guesses_are_limited_per_address(app):
    guesser = app.test_client()
    guesser.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    for _ in range(10):
        assert guesser.post("/login", data={"token": "guess"}).status_code == 401
    assert guesser.post("/login", data={"token": "guess"}).status_code == 429
    assert guesser.post("/login", data={"token": API_TOKEN}).status_code == 429
    assert signed_in(app, address="192.0.2.8").get("/").status_code == 200


def test_a_basic_header_that_is_not_base64_is_refused(web):
    response = web.get("/", headers={"Authorization": "Basic \xff\xfe"})
    assert response.status_code == 401


def test_unverified_bqn_tls_shows_as_a_warning(service_env, tls, redis):
    unpinned = {name: value for name, value in service_env.items() if name != "BQN_CA_BUNDLE"}
    english = {**API, "Accept-Language": "en"}
    html = create_app(unpinned).test_client().get("/", headers=english).get_data(as_text=True)
    assert 'class="flash warning"' in html
    assert "the BQN&#39;s TLS certificate is not verified" in html
    spanish = create_app(unpinned).test_client().get("/", headers={**API, "Accept-Language": "es"})
    assert "el certificado TLS del BQN no se verifica" in spanish.get_data(as_text=True)
    pinned = create_app({**service_env, "BQN_CA_BUNDLE": str(tls.ca)})
    html = pinned.test_client().get("/", headers=english).get_data(as_text=True)
    assert 'class="flash warning"' not in html
    assert "not verified" not in html
