"""The seeded demo data: deterministic and as messy as real WispHub tenants."""

from __future__ import annotations

from collections import Counter

from sandbox import seed


def test_same_seed_same_data() -> None:
    assert seed.wisphub_clients(300, seed=5) == seed.wisphub_clients(300, seed=5)
    assert seed.wisphub_clients(300, seed=5) != seed.wisphub_clients(300, seed=6)
    assert seed.bqn_state_extras(2) == seed.bqn_state_extras(2)


def test_realistic_client_rows() -> None:
    rows = seed.wisphub_clients(2000)
    ids = [r["id_servicio"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert ids != list(range(ids[0], ids[0] + len(ids)))  # not contiguous
    assert len({r["usuario"] for r in rows}) == len(rows)
    assert all(r["usuario"].endswith("@" + seed.EMPRESA) for r in rows)
    estados = Counter(r["estado"] for r in rows)
    assert 0.55 < estados["Activo"] / 2000 < 0.65
    assert 0.2 < estados["Cancelado"] / 2000 < 0.3
    assert estados["Suspendido"] > 0
    assert estados["Gratis"] > 0
    assert any(" " in r["nombre"] and any(ord(c) > 127 for c in r["nombre"]) for r in rows)
    assert any(r["nombre"] == r["servicio"] for r in rows)  # slug-style names
    assert all(r[name] for r in rows for name in seed.SENSITIVE_FIELDS)


def test_ip_anomalies() -> None:
    rows = seed.wisphub_clients(2000)
    ips = [r["ip"] for r in rows]
    for value in (*seed.BAD_IPS, *seed.CIDR_IPS):
        assert value in ips
    live = [r for r in rows if r["estado"] != "Cancelado"]
    shared = [ip for ip, n in Counter(r["ip"] for r in live).items() if n > 1]
    assert len(shared) == seed.DUPLICATE_IP_PAIRS
    for ip in shared:
        assert len({r["ultimo_cambio"] for r in live if r["ip"] == ip}) == 2
    placeholders = ("127.0.", "169.254.", "168.0.")
    assert all(r["estado"] == "Cancelado" for r in rows if r["ip"].startswith(placeholders))
    assert sum(r["ip"].startswith(placeholders) for r in rows) > 50
    assert any(r["ip"].startswith("100.64.") for r in live)  # CGNAT subscribers


def test_plans_cover_every_kind() -> None:
    plans = seed.wisphub_plans()
    assert {p["tipo"] for p in plans} == {"PPPoE", "Simple Queue", "PCQ"}
    names = {p["nombre"] for p in plans}
    assert {"Plan 10 Megas", "Fibra Óptica 50M", "Básico 5M", "Online_basico"} <= names


def test_bqn_extras_stay_clear_of_clients() -> None:
    extras = seed.bqn_state_extras()
    client_ips = {r["ip"] for r in seed.wisphub_clients(2000)}
    for subscriber in extras["rules_subscribers"]:
        assert subscriber["policyAssignedBy"] == "rules"
        assert subscriber["subscriberIp"] not in client_ips
    assert "rate-default" in {p["policyName"] for p in extras["static_policies"]}
