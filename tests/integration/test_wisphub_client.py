"""The WispHub client against the simulator: paging, narrowing, retries, auth, TLS."""

from __future__ import annotations

import dataclasses
import time

import pytest
import requests

from sandbox.server import serve
from tests.rows import row
from worker.clients.wisphub import WispHubClient
from worker.core.errors import ConfigError, FilterIgnored, IncompletePass, TransientError
from worker.settings import Settings

pytestmark = pytest.mark.integration


def client_with(settings: Settings, **changes: object) -> WispHubClient:
    return WispHubClient(dataclasses.replace(settings.wisphub, **changes))


def test_a_pass_builds_its_own_pages_and_stops_at_count(wisphub_sim, settings):
    rows = wisphub_sim.load(230)
    wisphub_sim.state.max_limit = 40  # the server caps the page below what is asked
    client = client_with(settings, page_size=100)
    listed = client.list_clients()
    assert sorted(r["id_servicio"] for r in listed) == sorted(r["id_servicio"] for r in rows)
    # never followed `next` (it says http:// and this server speaks only https)
    assert wisphub_sim.state.stats.count("GET") == -(-230 // 40)


def test_an_empty_tenant_is_a_complete_empty_pass(wisphub_client):
    assert wisphub_client.list_clients() == []


@pytest.mark.slow
def test_stalled_calls_are_retried(wisphub_sim, settings):
    wisphub_sim.load(60)
    wisphub_sim.state.faults.update(stall_every=3, stall_seconds=1.5)
    client = client_with(settings, page_size=10, read_timeout=0.3)
    assert len(client.list_clients()) == 60


def test_server_errors_are_retried_then_the_pass_completes(wisphub_sim, wisphub_client):
    wisphub_sim.load(30)
    wisphub_sim.state.faults.update(fail_next=2, fail_status=503)
    assert len(wisphub_client.list_clients()) == 30


def test_lasting_server_errors_abort_the_pass_with_a_short_reason(wisphub_sim, settings):
    wisphub_sim.load(30)
    wisphub_sim.state.faults.update(fail_every=1, fail_status=500)
    client = client_with(settings, retries=1)
    with pytest.raises(TransientError, match="WispHub answered 500: HTML page") as caught:
        client.list_clients()
    assert "<html" not in str(caught.value).lower()


def test_a_list_that_never_adds_up_is_not_returned(tls, settings):
    """A tenant whose `count` disagrees with its rows (rows moving while paging): an HTTP
    oddity the simulator cannot produce, so a tiny app plays it."""
    from flask import Flask, jsonify

    app = Flask("shifting")

    @app.get("/api/clientes/")
    def clientes():
        return jsonify({"count": 3, "next": None, "previous": None, "results": [row(1), row(2)]})

    with serve(app, tls=tls) as server:
        client = client_with(settings, url=server.url)
        with pytest.raises(IncompletePass, match="did not add up"):
            client.list_clients()


@pytest.mark.slow
def test_get_client_narrows_to_one_row(wisphub_sim, wisphub_client):
    rows = wisphub_sim.load(40)
    wanted = rows[17]
    got = wisphub_client.get_client(wanted["id_servicio"])
    assert got is not None
    assert got["id_servicio"] == wanted["id_servicio"]
    assert got["nombre"] == wanted["nombre"]  # the list serializer, not the detail one


def test_get_client_of_an_unknown_id_is_none(wisphub_sim, wisphub_client):
    wisphub_sim.load(10)
    assert wisphub_client.get_client(987654321) is None


def test_an_ignored_id_filter_is_detected(wisphub_sim, wisphub_client):
    rows = wisphub_sim.load(10)
    wisphub_sim.state.ignored_filters.add("id_servicio")
    with pytest.raises(FilterIgnored, match="ignored the id_servicio filter"):
        wisphub_client.get_client(rows[3]["id_servicio"])


def test_a_wrong_key_says_key_or_host(settings):
    client = WispHubClient(dataclasses.replace(settings.wisphub, secret="nope"))
    with pytest.raises(ConfigError, match="wrong API key or wrong WispHub host"):
        client.list_clients()


def test_a_wrong_host_answering_html_is_a_config_error(settings, bqn_sim):
    client = client_with(settings, url=bqn_sim.server.url)  # not a WispHub at all
    with pytest.raises(ConfigError):
        client.list_clients()


def test_tls_is_verified_by_default(settings):
    client = client_with(settings, ca_bundle=None)
    with pytest.raises(ConfigError, match="TLS failed"):
        client.list_clients()


def test_requests_ca_bundle_is_honoured(settings, tls, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca))
    assert client_with(settings, ca_bundle=None).list_clients() == []


def test_the_key_is_sent_as_api_key_and_one_connection_is_reused(wisphub_sim, settings):
    wisphub_sim.load(50)
    before = wisphub_sim.server.connections_accepted
    client = client_with(settings, page_size=10, concurrency=1)
    client.list_clients()
    client.get_client(1)
    assert wisphub_sim.server.connections_accepted - before == 1
    assert isinstance(client.session, requests.Session)


@pytest.mark.slow
def test_pages_are_read_concurrently_over_a_bounded_pool(wisphub_sim, settings):
    rows = wisphub_sim.load(400)
    wisphub_sim.state.faults.update(latency_ms=50)
    before = wisphub_sim.server.connections_accepted
    client = client_with(settings, page_size=10, concurrency=4)
    started = time.monotonic()
    listed = client.list_clients()
    took = time.monotonic() - started
    assert sorted(r["id_servicio"] for r in listed) == sorted(r["id_servicio"] for r in rows)
    assert wisphub_sim.server.connections_accepted - before <= 4
    # 40 pages at 50 ms each: one at a time would take 2 s
    print(f"40 pages in {took:.2f} s with 4 in flight")
