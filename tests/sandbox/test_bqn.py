"""The BQN simulator over real sockets: POST vs PUT, policies, groups, strict bodies."""

from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import quote, urlsplit

import pytest
import requests

from sandbox import bqn
from tests.sandbox.conftest import BQN_PASSWORD, BQN_USER, Api

pytestmark = pytest.mark.integration
BASIC = "Basic " + base64.b64encode(f"{BQN_USER}:{BQN_PASSWORD}".encode()).decode()


def enc(text: str) -> str:
    """Percent-encode a path id the way Bequant's client does (nothing left safe)."""
    return quote(text, safe="")


def items(api: Api, path: str) -> dict[str, dict]:
    key = {"/subscribers": "subscriberIp", "/policies/rate": "policyName"}.get(
        path, "subscriberGroupName"
    )
    return {item[key]: item for item in api.get(path).json()["items"]}


def raw_request(api: Api, method: str, path: str, headers: list[tuple[str, str]], body: bytes):
    """Send exactly these headers (requests would merge duplicates)."""
    parts = urlsplit(api.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.putrequest(method, parts.path + path)
        for name, value in [*headers, ("Authorization", BASIC)]:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_basic_auth_is_required(bq: Api) -> None:
    assert requests.get(bq.url + "/subscribers", timeout=5).status_code == 401
    wrong = requests.get(bq.url + "/subscribers", auth=(BQN_USER, "nope"), timeout=5)
    assert wrong.status_code == 401
    assert wrong.headers["Content-Type"].startswith("text/plain")
    assert wrong.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(bq.url + "/nowhere", timeout=5).status_code == 401


def test_post_creates_then_fully_replaces(bq: Api) -> None:
    path = "/subscribers/10.10.1.232"
    body = {
        "subscriberId": "Juan Pérez",
        "policyRate": "rate-default",
        "subscriberGroups": ["g1"],
        "quota": {"volume": 1000},
    }
    created = bq.request("POST", path, json=body)
    assert created.status_code == 201
    assert created.json()["policyAssignedBy"] == "rest"

    replaced = bq.request("POST", path, json={"policyRate": "rate-guest"})
    assert replaced.status_code == 200
    item = items(bq, "/subscribers")["10.10.1.232"]
    assert item["subscriberId"] == ""
    assert item["subscriberGroups"] == []
    assert "quota" not in item
    assert item["policyRate"] == "rate-guest"


def test_put_patches_only_the_fields_sent(bq: Api) -> None:
    path = "/subscribers/10.10.1.7"
    bq.request(
        "POST",
        path,
        json={
            "subscriberId": "María",
            "policyRate": "rate-default",
            "subscriberGroups": ["g1"],
            "quota": {"volume": 5},
        },
    )
    response = bq.request("PUT", path, json={"policyRate": "rate-guest"})
    assert response.status_code == 200
    item = bq.get(path).json()
    assert item == {
        "subscriberIp": "10.10.1.7",
        "subscriberId": "María",
        "subscriberGroups": ["g1"],
        "policyRate": "rate-guest",
        "quota": {"volume": 5},
        "policyAssignedBy": "rest",
    }
    assert bq.request("PUT", "/subscribers/10.10.1.8", json={"policyRate": "x"}).status_code == 404


def test_delete_then_404(bq: Api) -> None:
    bq.request("POST", "/subscribers/10.10.1.9", json={"subscriberId": "a"})
    assert bq.request("DELETE", "/subscribers/10.10.1.9").status_code == 204
    assert bq.request("DELETE", "/subscribers/10.10.1.9").status_code == 404
    assert bq.get("/subscribers/10.10.1.9").status_code == 404


def test_unknown_policy_becomes_an_undefined_placeholder(bq: Api) -> None:
    bq.request("POST", "/subscribers/10.10.2.1", json={"policyRate": "Plan_20M"})
    assert items(bq, "/policies/rate")["Plan_20M"] == {"policyName": "Plan_20M"}
    defined = bq.request(
        "PUT",
        "/policies/rate/Plan_20M",
        json={"policyId": "439219", "rateLimitDownlink": {"rate": 20000}},
    )
    assert defined.status_code == 200
    policy = bq.get("/policies/rate/Plan_20M").json()
    assert policy["policyId"] == "439219"
    assert policy["rateLimitDownlink"] == {"rate": 20000, "congestionMgmt": True}
    # deleting a policy still in use leaves the placeholder behind
    assert bq.request("DELETE", "/policies/rate/Plan_20M").status_code == 204
    assert items(bq, "/policies/rate")["Plan_20M"] == {"policyName": "Plan_20M"}


def test_policy_post_replaces_put_patches_and_get_echoes_defaults(bq: Api) -> None:
    full = {
        "policyId": "1",
        "rateLimitDownlink": {"rate": 10000, "burstRate": 12000},
        "rateLimitUplink": {"rate": 5000},
        "flowLimit": 300,
    }
    assert bq.request("POST", "/policies/rate/Plan_10M", json=full).status_code == 201
    shown = bq.get("/policies/rate/Plan_10M").json()
    assert shown["rateLimitDownlink"] == {"rate": 10000, "burstRate": 12000, "congestionMgmt": True}
    assert shown["flowLimit"] == 300

    assert bq.request("PUT", "/policies/rate/Plan_10M", json={"policyId": "2"}).status_code == 200
    assert bq.get("/policies/rate/Plan_10M").json()["flowLimit"] == 300

    replaced = bq.request(
        "POST", "/policies/rate/Plan_10M", json={"rateLimitDownlink": {"rate": 1}}
    )
    assert replaced.status_code == 200
    shown = bq.get("/policies/rate/Plan_10M").json()
    assert shown["flowLimit"] is None
    assert shown["policyId"] == ""
    assert "rateLimitUplink" not in shown
    assert bq.request("PUT", "/policies/rate/Nope", json={"policyId": "x"}).status_code == 404
    assert bq.request("DELETE", "/policies/rate/Plan_10M").status_code == 204
    assert bq.request("DELETE", "/policies/rate/Plan_10M").status_code == 404


def test_static_policy_ignores_writes(bq: Api, bqn_state: bqn.BqnState) -> None:
    before = bq.get("/policies/rate/rate-default").json()
    for method in ("POST", "PUT"):
        response = bq.request(
            method, "/policies/rate/rate-default", json={"rateLimitDownlink": {"rate": 1}}
        )
        assert response.status_code == 200
    assert bq.get("/policies/rate/rate-default").json() == before
    assert bq.request("DELETE", "/policies/rate/rate-default").status_code == 403
    assert "rate-default" in bqn_state.static_policies


def test_rules_subscribers_keep_their_origin(bq: Api) -> None:
    rules = [s for s in items(bq, "/subscribers").values() if s["policyAssignedBy"] == "rules"]
    assert rules
    ip = rules[0]["subscriberIp"]
    bq.request("PUT", f"/subscribers/{ip}", json={"subscriberId": "detected"})
    assert bq.get(f"/subscribers/{ip}").json()["policyAssignedBy"] == "rules"
    bq.request("PUT", f"/subscribers/{ip}", json={"policyRate": "rate-guest"})
    assert bq.get(f"/subscribers/{ip}").json()["policyAssignedBy"] == "rest"

    added = bq.session.put(
        bq.url.removesuffix(bqn.API) + "/_sim/rules/10.99.1.5",
        json={"policyRate": "rate-default"},
        timeout=5,
    )
    assert added.json()["policyAssignedBy"] == "rules"
    assert "10.99.1.5" in items(bq, "/subscribers")


def test_ipv6_network_path_is_percent_encoded(bq: Api) -> None:
    response = bq.request(
        "POST", "/subscribers/" + enc("2001:db8:1:2::"), json={"subscriberId": "v6"}
    )
    assert response.status_code == 201
    assert "2001:db8:1:2::" in items(bq, "/subscribers")
    assert bq.get("/subscribers/" + enc("2001:0db8:0001:0002::")).json()["subscriberId"] == "v6"
    for bad in ("2001:db8:1:2::5", "10.0.0.300", "10.0.0", "10.0.0.0/24", "N/A"):
        assert bq.request("POST", "/subscribers/" + enc(bad), json={}).status_code == 400, bad


def test_body_rules(bq: Api) -> None:
    path = "/subscribers/10.10.3.3"
    ok = [("Content-Type", "application/json; charset=utf-8")]
    body = json.dumps({"subscriberId": "Ñandú"}, ensure_ascii=False).encode()
    assert raw_request(bq, "POST", path, ok, body)[0] == 201
    duplicated = [*ok, ("Content-Type", "application/x-www-form-urlencoded")]
    status, text = raw_request(bq, "POST", path, duplicated, body)
    assert (status, text) == (400, "duplicate Content-Type header")
    assert raw_request(bq, "POST", path, [("Content-Type", "text/plain")], body)[0] == 415
    latin = [("Content-Type", "application/json; charset=latin-1")]
    assert raw_request(bq, "POST", path, latin, body)[0] == 415
    assert raw_request(bq, "POST", path, [], body)[0] == 415
    assert raw_request(bq, "POST", path, ok, b'{"subscriberId": "\xd1"}')[0] == 400
    assert raw_request(bq, "POST", path, ok, b"{not json")[0] == 400
    assert raw_request(bq, "POST", path, ok, b"[]")[0] == 400
    assert bq.get(path).json()["subscriberId"] == "Ñandú"


@pytest.mark.parametrize(
    "body",
    [
        {"block": True},
        {"state": "active"},
        {"policyAssignedBy": "rest"},
        {"policyRate": 5},
        {"subscriberGroups": "g1"},
        {"subscriberIp": "10.10.3.4"},
    ],
)
def test_bad_subscriber_fields_are_rejected(bq: Api, body: dict) -> None:
    response = bq.request("POST", "/subscribers/10.10.3.3", json=body)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/plain")


def test_bad_policy_fields_are_rejected(bq: Api) -> None:
    for body in (
        {"rateLimitDownlink": {"rate": "10M"}},
        {"rateLimitUplink": {"speed": 1}},
        {"policyName": "other"},
        {"flowLimit": -3},
    ):
        assert bq.request("POST", "/policies/rate/P", json=body).status_code == 400, body


def test_groups(bq: Api) -> None:
    assert bqn.ALL_SUBSCRIBERS in items(bq, "/subscriberGroups")
    path = "/subscriberGroups/" + enc("DS-Juan_Pérez")
    body = {
        "policyRate": "Plan_5M",
        "subscriberMembers": ["10.10.1.232", "2001:db8:1:2::"],
        "subscriberRanges": ["10.0.0.0/24"],
        "subscriberGroupType": "tower",
    }
    assert bq.request("POST", path, json=body).status_code == 201
    assert items(bq, "/policies/rate")["Plan_5M"] == {"policyName": "Plan_5M"}
    assert bq.request("PUT", path, json={"subscriberRanges": []}).status_code == 200
    group = bq.get(path).json()
    assert group["subscriberMembers"] == body["subscriberMembers"]
    assert group["subscriberRanges"] == []
    assert bq.request("POST", path, json={}).json()["subscriberGroupType"] == "generic"
    assert bq.request("DELETE", path).status_code == 204
    assert bq.request("DELETE", path).status_code == 404
    assert bq.request("PUT", path, json={}).status_code == 404

    assert bq.request("POST", "/subscriberGroups/" + enc("has space"), json={}).status_code == 400
    assert bq.request("DELETE", "/subscriberGroups/all-subscribers").status_code == 403
    assert bq.request("PUT", "/subscriberGroups/all-subscribers", json={}).status_code == 403
    for bad in (
        {"subscriberMembers": ["10.0.0.300"]},
        {"subscriberRanges": ["10.0.0.1/24"]},
        {"members": []},
    ):
        assert bq.request("POST", "/subscriberGroups/g2", json=bad).status_code == 400


def test_sim_state_and_text_faults(bq: Api, bqn_state: bqn.BqnState) -> None:
    base = bq.url.removesuffix(bqn.API)
    state = requests.get(base + "/_sim/state", timeout=5).json()
    assert state.keys() == {"subscribers", "policies", "groups"}
    assert len(state["subscribers"]) == len(bqn_state.subscribers)

    requests.put(base + "/_sim/faults", json={"fail_next": 1}, timeout=5)
    failed = bq.get("/subscribers")
    assert failed.status_code == 500
    assert failed.headers["Content-Type"].startswith("text/plain")
    assert bq.get("/subscribers").status_code == 200

    bq.request("POST", "/subscribers/10.1.0.1", json={})
    bq.request("DELETE", "/subscribers/10.1.0.1")
    assert bqn_state.stats.writes() == 2
    assert requests.get(base + "/_sim/stats", timeout=5).json()["total"] == 4
