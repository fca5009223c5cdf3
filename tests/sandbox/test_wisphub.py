"""The WispHub simulator over real sockets: paging, filters, serializers, errors, faults."""

from __future__ import annotations

import re
import time

import pytest
import requests

from sandbox import wisphub
from tests.sandbox.conftest import API_KEY, CLIENT_COUNT, Api

pytestmark = pytest.mark.integration


def rows_of(state: wisphub.WispHubState) -> list[dict]:
    with state.lock:
        return list(state.clients.values())


def test_paging_builds_http_links_and_covers_every_row(wh: Api) -> None:
    first = wh.get("/api/clientes/?limit=50").json()
    port = wh.server.port
    assert first["count"] == CLIENT_COUNT
    assert first["next"] == f"http://127.0.0.1:{port}/api/clientes/?limit=50&offset=50"
    assert first["previous"] is None

    seen = []
    for offset in range(0, CLIENT_COUNT, 50):
        page = wh.get(f"/api/clientes/?limit=50&offset={offset}").json()
        seen += [row["id_servicio"] for row in page["results"]]
    assert len(seen) == len(set(seen)) == CLIENT_COUNT
    assert page["next"] is None

    second = wh.get("/api/clientes/?offset=50&limit=50&estado=1").json()
    assert second["previous"] == f"http://127.0.0.1:{port}/api/clientes/?estado=1&limit=50"


def test_rows_come_in_insertion_order_with_about_54_fields(wh: Api, wisphub_state) -> None:
    results = wh.get("/api/clientes/?limit=1000").json()["results"]
    assert [r["id_servicio"] for r in results] == [r["id_servicio"] for r in rows_of(wisphub_state)]
    assert 50 <= len(results[0]) <= 58
    assert results[0]["plan_internet"].keys() == {"id", "nombre"}


def test_default_limit_and_server_side_cap(wh: Api, wisphub_state, monkeypatch) -> None:
    assert len(wh.get("/api/clientes/").json()["results"]) == wisphub.DEFAULT_LIMIT
    monkeypatch.setattr(wisphub_state, "max_limit", 25)
    page = wh.get("/api/clientes/?limit=1000").json()
    assert len(page["results"]) == 25
    assert "limit=25&offset=25" in page["next"]
    assert len(wh.get("/api/clientes/?limit=0").json()["results"]) == wisphub.DEFAULT_LIMIT


@pytest.mark.parametrize(
    "query",
    [
        "id_servicios=15",
        "zona=63850",
        "search=Pérez",
        "saldo=0.00",
        "ultimo_cambio__gte=01/01/2026",
    ],
)
def test_unknown_filters_are_ignored_and_return_everything(wh: Api, query: str) -> None:
    assert wh.get(f"/api/clientes/?{query}&limit=1").json()["count"] == CLIENT_COUNT


def test_exact_filters_narrow_to_one_row(wh: Api, wisphub_state) -> None:
    row = rows_of(wisphub_state)[7]
    for name in ("id_servicio", "usuario", "cedula"):
        page = wh.get("/api/clientes/", params={name: row[name], "limit": 1}).json()
        assert page["count"] == 1
        assert page["results"][0]["id_servicio"] == row["id_servicio"]
    assert wh.get("/api/clientes/?id_servicio=1&limit=1").json()["count"] == 0


def test_estado_filter_takes_codes_only(wh: Api, wisphub_state) -> None:
    rows = rows_of(wisphub_state)
    for code, name in wisphub.ESTADOS.items():
        page = wh.get(f"/api/clientes/?estado={code}&limit=1000").json()
        assert page["count"] == sum(r["estado"] == name for r in rows) > 0
        assert {r["estado"] for r in page["results"]} == {name}
    assert wh.get("/api/clientes/?estado=Activo").json()["count"] == 0


def test_relation_and_text_filters(wh: Api, wisphub_state) -> None:
    rows = rows_of(wisphub_state)
    plan_id = rows[0]["plan_internet"]["id"]
    router_id = rows[0]["router"]["id"]
    by_plan = wh.get(f"/api/clientes/?plan_internet={plan_id}&limit=1000").json()
    assert by_plan["count"] == sum(r["plan_internet"]["id"] == plan_id for r in rows)
    by_router = wh.get(f"/api/clientes/?router={router_id}&limit=1000").json()
    assert by_router["count"] == sum(r["router"]["id"] == router_id for r in rows)

    target = next(
        r for r in rows if " " in r["nombre"].strip() and r["nombre"] != r["nombre"].upper()
    )
    word = target["nombre"].split()[0]
    partial = wh.get("/api/clientes/", params={"nombre": word.upper(), "limit": 1000}).json()
    assert target["id_servicio"] in {r["id_servicio"] for r in partial["results"]}
    exact_case = wh.get("/api/clientes/", params={"nombre__contains": word.upper(), "limit": 1000})
    assert target["id_servicio"] not in {r["id_servicio"] for r in exact_case.json()["results"]}
    slug = target["usuario"].split("@")[0]
    contains = wh.get("/api/clientes/", params={"usuario__contains": slug}).json()
    assert [r["id_servicio"] for r in contains["results"]] == [target["id_servicio"]]


def test_empty_filter_is_ignored_and_bad_number_is_400(wh: Api) -> None:
    assert wh.get("/api/clientes/?id_servicio=&limit=1").json()["count"] == CLIENT_COUNT
    response = wh.get("/api/clientes/?id_servicio=abc")
    assert response.status_code == 400
    assert response.json() == {"id_servicio": [wisphub.NOT_AN_INTEGER]}


def test_detail_uses_a_different_serializer(wh: Api, wisphub_state) -> None:
    row = rows_of(wisphub_state)[3]
    detail = wh.get(f"/api/clientes/{row['id_servicio']}/").json()
    assert detail["nombre"] is None
    assert detail["usuario"] is None
    for name in ("saldo", "estado_facturas", "fecha_corte", "telefono"):
        assert name not in detail
    assert "facturas_pagadas" in detail
    assert detail["ip"] == row["ip"]
    missing = wh.get("/api/clientes/1/")
    assert missing.status_code == 404
    assert missing.text.startswith("<!DOCTYPE html>")


def test_patch_answers_200_but_does_not_persist(wh: Api, wisphub_state) -> None:
    row = next(r for r in rows_of(wisphub_state) if r["estado"] == "Activo")
    response = wh.request(
        "PATCH", f"/api/clientes/{row['id_servicio']}/", json={"estado": "Suspendido"}
    )
    assert response.status_code == 200
    assert response.json()["estado"] == "Suspendido"
    assert wisphub_state.get_client(row["id_servicio"])["estado"] == "Activo"
    assert wisphub_state.stats.writes() == 1


def test_auth_missing_is_403_and_wrong_is_401(wh: Api) -> None:
    url = wh.url + "/api/clientes/"
    missing = requests.get(url, timeout=5)
    assert missing.status_code == 403
    assert missing.json() == {"detail": wisphub.MISSING_CREDENTIALS}
    for header in ("Api-Key wrong", f"Bearer {API_KEY}", f"Token {API_KEY}"):
        wrong = requests.get(url, headers={"Authorization": header}, timeout=5)
        assert wrong.status_code == 401
        assert wrong.json() == {"detail": wisphub.INVALID_KEY}


def test_routing_errors_look_like_django(wh: Api) -> None:
    for path in ("/api/webhooks/", "/api/clientes/abc/", "/"):
        response = wh.get(path)
        assert response.status_code == 404
        assert response.headers["Content-Type"].startswith("text/html")
        assert response.text.startswith("<!DOCTYPE html>")
    redirect = wh.get("/api/clientes?limit=5", allow_redirects=False)
    assert redirect.status_code == 301
    assert redirect.headers["Location"] == "/api/clientes/?limit=5"
    assert wh.request("POST", "/api/clientes/", json={}).status_code == 405
    assert wh.request("DELETE", "/api/plan-internet/").status_code == 405


def test_plan_list_and_details(wh: Api, wisphub_state) -> None:
    plans = wh.get("/api/plan-internet/?limit=100").json()
    assert plans["count"] == len(wisphub_state.plans)
    assert all(p.keys() == {"id", "nombre", "tipo"} for p in plans["results"])
    by_tipo = {p["tipo"]: p["id"] for p in plans["results"]}

    queue = wh.get(f"/api/plan-internet/queue/{by_tipo['Simple Queue']}/").json()
    assert queue.keys() == {"nombre", "precio", "bajada", "subida", "descripcion"}
    pppoe = wh.get(f"/api/plan-internet/pppoe/{by_tipo['PPPoE']}/").json()
    assert "perfil" in pppoe
    assert re.fullmatch(r"\d+[kMG]", pppoe["bajada"])
    for kind in ("queue", "pppoe"):
        assert wh.get(f"/api/plan-internet/{kind}/{by_tipo['PCQ']}/").status_code == 404
    assert wh.get(f"/api/plan-internet/pppoe/{by_tipo['Simple Queue']}/").status_code == 404


def test_renamed_plan_shows_in_client_rows(wh: Api, wisphub_state) -> None:
    plan = dict(next(iter(wisphub_state.plans.values())))
    try:
        wh.request("PUT", f"/_sim/plans/{plan['id']}", json={**plan, "nombre": "Plan Renombrado"})
        page = wh.get(f"/api/clientes/?plan_internet={plan['id']}&limit=1").json()
        assert page["results"][0]["plan_internet"]["nombre"] == "Plan Renombrado"
    finally:
        wisphub_state.set_plan(**plan)


def test_injected_failures_are_html(wh: Api) -> None:
    wh.request("PUT", "/_sim/faults", json={"fail_next": 2, "fail_status": 503})
    for _ in range(2):
        response = wh.get("/api/clientes/?limit=1")
        assert response.status_code == 503
        assert response.text.startswith("<!DOCTYPE html>")
    assert wh.get("/api/clientes/?limit=1").status_code == 200
    wh.request("PUT", "/_sim/faults", json={"fail_every": 3, "fail_status": 500})
    statuses = [wh.get("/api/clientes/?limit=1").status_code for _ in range(6)]
    assert statuses.count(500) == 2


def test_stall_every_nth_request(wh: Api, wisphub_state) -> None:
    wisphub_state.faults.clear()
    wisphub_state.faults.update(stall_every=2, stall_seconds=0.6)
    assert wh.get("/api/plan-internet/").status_code == 200
    with pytest.raises(requests.exceptions.ReadTimeout):
        wh.session.get(wh.url + "/api/plan-internet/", timeout=0.2)
    assert wh.get("/api/plan-internet/").status_code == 200


def test_latency_is_added(wh: Api) -> None:
    wh.request("PUT", "/_sim/faults", json={"latency_ms": 150})
    started = time.monotonic()
    wh.get("/api/clientes/?limit=1")
    assert time.monotonic() - started >= 0.15


def test_stats_count_api_requests_only(wh: Api) -> None:
    wh.get("/api/clientes/?limit=1")
    wh.get("/api/clientes/?limit=2")
    wh.get("/api/nothing/")
    wh.get("/_sim/faults")
    stats = wh.get("/_sim/stats").json()
    assert stats["total"] == 3
    assert stats["writes"] == 0
    assert stats["requests"]["GET /api/clientes/"] == 2
    assert wh.request("POST", "/_sim/stats/reset").json()["total"] == 0


def test_bad_fault_settings_are_rejected(wh: Api) -> None:
    assert wh.request("PUT", "/_sim/faults", json={"fail_nxt": 1}).status_code == 400
    assert wh.request("PUT", "/_sim/faults", json={"fail_status": 200}).status_code == 400
    assert wh.request("PUT", "/_sim/faults", json={"latency_ms": -1}).status_code == 400
    assert wh.get("/_sim/faults").json()["fail_next"] == 0


def test_control_endpoints_change_clients(wh: Api, wisphub_state) -> None:
    row = rows_of(wisphub_state)[0]
    new_id = 990001
    created = wh.request("PUT", f"/_sim/clients/{new_id}", json={**row, "ip": "10.77.0.9"})
    assert created.status_code == 201
    listed = wh.get(f"/api/clientes/?id_servicio={new_id}").json()["results"]
    assert listed[0]["ip"] == "10.77.0.9"
    assert wh.get("/api/clientes/?limit=1000").json()["results"][-1]["id_servicio"] == new_id

    patched = wh.request("PATCH", f"/_sim/clients/{new_id}", json={"estado": "Suspendido"}).json()
    assert patched["estado"] == "Suspendido"
    assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", patched["ultimo_cambio"])
    assert patched["ultimo_cambio"] != row["ultimo_cambio"]
    assert wh.get(f"/_sim/clients/{new_id}").json()["estado"] == "Suspendido"

    assert wh.request("DELETE", f"/_sim/clients/{new_id}").status_code == 204
    assert wh.get(f"/_sim/clients/{new_id}").status_code == 404
    assert wh.request("PATCH", f"/_sim/clients/{new_id}", json={}).status_code == 404
    assert wisphub_state.stats.count() == 2  # control calls are not counted


def test_update_client_resolves_plan_ids(wisphub_state) -> None:
    row = rows_of(wisphub_state)[1]
    plan = next(p for p in wisphub_state.plans.values() if p["id"] != row["plan_internet"]["id"])
    try:
        updated = wisphub_state.update_client(row["id_servicio"], plan_internet=plan["id"])
        assert updated["plan_internet"] == {"id": plan["id"], "nombre": plan["nombre"]}
        with pytest.raises(KeyError):
            wisphub_state.update_client(1, estado="Activo")
    finally:
        wisphub_state.upsert_client(row)


def test_server_errors_are_html_pages(wh: Api, wisphub_state) -> None:
    wisphub_state.upsert_client({"id_servicio": 5, "unserializable": {1, 2}})
    response = wh.get("/api/clientes/5/")
    assert response.status_code == 500
    assert response.text.startswith("<!DOCTYPE html>")


def test_hidden_rows_make_a_short_list_that_agrees_with_its_count(wh: Api) -> None:
    total = wh.get("/api/clientes/?limit=1").json()["count"]
    wh.request("PUT", "/_sim/faults", json={"hide_rows": 0.5})
    page = wh.get("/api/clientes/?limit=1").json()
    assert page["count"] == total - round(total * 0.5)
    wh.request("PUT", "/_sim/faults", json={"hide_rows": 1})
    assert wh.get("/api/clientes/").json() == {
        "count": 0,
        "next": None,
        "previous": None,
        "results": [],
    }
    assert wh.request("PUT", "/_sim/faults", json={"hide_rows": 1.5}).status_code == 400
