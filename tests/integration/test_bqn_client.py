"""The BQN client against the simulator: writes, encoding, fallbacks, errors, TLS."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import threading
from urllib.parse import urlsplit

import pytest
import trustme

from sandbox import seed
from worker.clients.bqn import BqnClient
from worker.core.errors import ConfigError, TransientError
from worker.core.model import Policy, covers

pytestmark = pytest.mark.integration

FIELDS = {"subscriberId": "José Pérez Ñandú", "policyRate": "Fibra_Óptica_50M"}
SEEDED = seed.bqn_state_extras(1)  # what the `bqn_sim` fixture starts with
SEEDED_SUBSCRIBERS = {
    (item["subscriberIp"], item["policyRate"], "rules") for item in SEEDED["rules_subscribers"]
}
SEEDED_POLICIES = {item["policyName"] for item in SEEDED["static_policies"]}


def listed_subscribers(client: BqnClient) -> set[tuple[str, str, str | None]]:
    return {(s.ip, s.policy_rate, s.assigned_by) for s in client.list_subscribers()}


def test_create_update_delete_round_trip(bqn_sim, bqn_client):
    bqn_client.create_subscriber("10.1.2.3", FIELDS)
    held = bqn_client.get_subscriber("10.1.2.3")
    assert held is not None
    assert (held.subscriber_id, held.policy_rate, held.assigned_by) == (
        "José Pérez Ñandú",
        "Fibra_Óptica_50M",
        "rest",
    )
    bqn_client.update_subscriber("10.1.2.3", {**FIELDS, "policyRate": "Wisphub_block"})
    assert bqn_sim.subscribers()["10.1.2.3"]["policyRate"] == "Wisphub_block"
    bqn_client.delete_subscriber("10.1.2.3")
    assert bqn_client.get_subscriber("10.1.2.3") is None


def test_update_keeps_fields_the_sync_does_not_manage(bqn_sim, bqn_client):
    with bqn_sim.state.lock:
        bqn_sim.state.subscribers["10.1.2.4"] = {
            "subscriberIp": "10.1.2.4",
            "subscriberId": "old",
            "policyRate": "P",
            "subscriberGroups": ["tower-3"],
            "policyAssignedBy": "rest",
        }
    bqn_client.update_subscriber("10.1.2.4", {"subscriberId": "new", "policyRate": "Q"})
    assert bqn_sim.subscribers()["10.1.2.4"]["subscriberGroups"] == ["tower-3"]


def test_update_of_a_vanished_entry_creates_it(bqn_sim, bqn_client):
    bqn_client.update_subscriber("10.1.2.5", FIELDS)
    assert bqn_sim.subscribers()["10.1.2.5"]["subscriberId"] == "José Pérez Ñandú"


def test_delete_of_a_missing_entry_is_already_done(bqn_client):
    bqn_client.delete_subscriber("10.200.0.1")


def test_ipv6_ids_are_percent_encoded(bqn_sim, bqn_client):
    bqn_client.create_subscriber("2001:db8:1:2::", FIELDS)
    assert "2001:db8:1:2::" in bqn_sim.subscribers()
    assert any(s.ip == "2001:db8:1:2::" for s in bqn_client.list_subscribers())
    assert bqn_sim.state.stats.count("POST") == 1


def test_policy_names_are_encoded_and_undefined_ones_read_as_unrated(bqn_sim, bqn_client):
    bqn_client.create_subscriber("10.1.2.6", {"subscriberId": "x", "policyRate": "Plan 5/1 Mbps"})
    policies = {p.name: p for p in bqn_client.list_policies()}
    assert policies["Plan 5/1 Mbps"] == Policy("Plan 5/1 Mbps")
    assert policies["Plan 5/1 Mbps"].undefined
    fields = {
        "policyId": "9",
        "rateLimitDownlink": {"rate": 5000},
        "rateLimitUplink": {"rate": 1000},
    }
    bqn_client.update_policy("Plan 5/1 Mbps", fields)
    held = bqn_client.get_policy("Plan 5/1 Mbps")
    assert held is not None
    assert covers(held.fields, fields)
    assert not held.undefined


def test_static_policies_and_rules_subscribers_are_listed(bqn_client):
    assert {p.name for p in bqn_client.list_policies()} == SEEDED_POLICIES
    assert listed_subscribers(bqn_client) == SEEDED_SUBSCRIBERS


def test_wrong_password_is_a_config_error(settings):
    client = BqnClient(dataclasses.replace(settings.targets[0].bqn, secret="wrong"))
    with pytest.raises(ConfigError, match="refused the REST user or password"):
        client.list_subscribers()


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_errors_are_retried(bqn_sim, bqn_client, status):
    bqn_sim.state.faults.update(fail_next=2, fail_status=status)
    bqn_client.create_subscriber("10.1.2.7", FIELDS)
    assert "10.1.2.7" in bqn_sim.subscribers()


def test_lasting_errors_raise_transient(bqn_sim, settings):
    bqn_sim.state.faults.update(fail_every=1, fail_status=500)
    client = BqnClient(dataclasses.replace(settings.targets[0].bqn, retries=1))
    with pytest.raises(TransientError, match="BQN answered 500"):
        client.create_subscriber("10.1.2.8", FIELDS)


def test_a_refused_connection_is_transient(settings):
    client = BqnClient(
        dataclasses.replace(settings.targets[0].bqn, url="https://127.0.0.1:9/api/v1", retries=0)
    )
    with pytest.raises(TransientError, match="BQN unreachable"):
        client.list_subscribers()


# A TLS record: a fatal alert (2), decode_error (50).
DECODE_ERROR = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32])


def test_a_handshake_cut_short_is_transient_not_a_setting_to_fix(settings):
    """A BQN restarting closes connections in the middle of the TLS handshake: that is an
    outage (retried later), not a refused certificate (a job failed for good for it). Fails if
    every TLS error is taken for a configuration error."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        stop = threading.Event()

        def cut() -> None:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    connection, _ = server.accept()
                except TimeoutError:
                    continue
                connection.recv(4096)  # the ClientHello, answered with a fatal TLS alert,
                connection.sendall(DECODE_ERROR)  # as a BQN's TLS stack did, restarting
                connection.close()

        thread = threading.Thread(target=cut, daemon=True)
        thread.start()
        try:
            url = f"https://127.0.0.1:{port}/api/v1"
            client = BqnClient(dataclasses.replace(settings.targets[0].bqn, url=url, retries=0))
            with pytest.raises(TransientError, match="BQN unreachable"):
                client.list_subscribers()
        finally:
            stop.set()
            thread.join(2)


def test_a_ca_bundle_turns_verification_on(settings, tls, tmp_path):
    verified = BqnClient(dataclasses.replace(settings.targets[0].bqn, ca_bundle=str(tls.ca)))
    assert listed_subscribers(verified) == SEEDED_SUBSCRIBERS
    foreign = tmp_path / "foreign-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(foreign))
    foreign_ca = BqnClient(dataclasses.replace(settings.targets[0].bqn, ca_bundle=str(foreign)))
    with pytest.raises(ConfigError, match="TLS failed"):
        foreign_ca.list_subscribers()


def test_the_bqns_own_certificate_can_be_pinned(settings, tmp_path):
    """As docs/security.md says: fetch the certificate the BQN presents and trust only it,
    though a CA the service never sees issued it."""
    url = urlsplit(settings.targets[0].bqn.url)
    pinned = tmp_path / "bqn.pem"
    pinned.write_text(ssl.get_server_certificate((url.hostname, url.port)))
    client = BqnClient(dataclasses.replace(settings.targets[0].bqn, ca_bundle=str(pinned)))
    assert listed_subscribers(client) == SEEDED_SUBSCRIBERS


def test_hostname_checking_can_be_turned_on(settings, tls):
    named = dataclasses.replace(
        settings.targets[0].bqn,
        ca_bundle=str(tls.ca),
        check_hostname=True,
        url=settings.targets[0].bqn.url.replace("127.0.0.1", "localhost"),
    )
    assert {p.name for p in BqnClient(named).list_policies()} == SEEDED_POLICIES
