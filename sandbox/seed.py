"""Deterministic, realistic demo data for the simulators (same seed, same data).

WispHub clients carry everything a robust sync has to survive: names with accents and
spaces or in slug form, plans with spaces and accents, all four `estado` values,
cancelled rows with WispHub's placeholder IPs, bad IPs, duplicate IPs and CIDR-ish
values. Every sensitive field holds a fake but distinctive value (see
`SENSITIVE_FIELDS`) so tests can check that none of them ever reaches a log.
"""

from __future__ import annotations

import ipaddress
import random
import string
import unicodedata
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sandbox.bqn import BqnState
from sandbox.wisphub import DATE_FORMAT, WispHubState

EMPRESA = "internet-online"
SENSITIVE_FIELDS = (
    "password_servicio",
    "password_cpe",
    "password_router_wifi",
    "password_ssid_router_wifi",
    "usuario_router_wifi",
    "coordenadas",
    "cedula",
    "rfc",
    "email",
    "telefono",
    "direccion",
)
# Values given to a few non-cancelled rows (only when count >= ANOMALY_MIN_COUNT).
BAD_IPS = ("", "N/A", "192.168.1.300", "10.0.0")
CIDR_IPS = ("200.1.2.0/29", "10.1.1.1, 10.1.1.2")
DUPLICATE_IP_PAIRS = 3
ANOMALY_MIN_COUNT = 50
# Rules subscribers live here; no client pool overlaps it.
RULES_NETWORK = ipaddress.ip_network("10.99.0.0/24")

_ESTADOS = ("Activo", "Suspendido", "Cancelado", "Gratis")
_ESTADO_WEIGHTS = (60, 10, 25, 5)
_NOW = datetime(2026, 4, 30, 11, 8, 11)

# (id, nombre, tipo, bajada, subida, precio, weight for clients)
_PLANS = (
    (439219, "Online_basico", "PPPoE", "10M", "5M", "65000.00", 20),
    (451072, "Online Free", "PPPoE", "5M", "2M", "0.00", 3),
    (439305, "Plan 10 Megas", "Simple Queue", "10M", "3M", "55000.00", 18),
    (439318, "Plan 20 Megas", "Simple Queue", "20M", "5M", "75000.00", 14),
    (440102, "Fibra Óptica 50M", "PPPoE", "50M", "25M", "120000.00", 12),
    (440117, "Fibra Óptica 1G", "PPPoE", "1G", "500M", "350000.00", 2),
    (441250, "Básico 5M", "Simple Queue", "5M", "1M", "40000.00", 15),
    (441263, "Hogar 512k", "Simple Queue", "512k", "256k", "25000.00", 4),
    (442890, "Comunitario PCQ", "PCQ", "30M", "10M", "30000.00", 12),
)

# (router id, router name, zona id, zona name, client address pool, weight)
_SITES = (
    (63679, "LA ESTRELLA", 63850, "LA ESTRELLA", "172.16.0.0/16", 30),
    (63702, "Nodo Centro", 63811, "Centro", "10.10.0.0/16", 25),
    (64011, "Torre San José", 64102, "San José", "100.64.0.0/16", 20),
    (64188, "OLT Fibra Norte", 64210, "Norte", "10.20.0.0/16", 15),
    (64203, "Sectorial Los Pinos", 64230, "Los Pinos", "192.168.0.0/16", 10),
)
_BROKEN_ROUTER = 64011  # shows `falla_general` like a site with an outage

_TECNICOS = ((812, "Andrés Muñoz"), (815, "Sofía Ríos"), (829, "Julián Peña"))
_CIUDADES = (("Medellín", "La Estrella"), ("Medellín", "Belén"), ("Itagüí", "Santa María"))
_FIRST_NAMES = (
    "José", "María", "Andrés", "Jesús", "Sofía", "Lucía", "Óscar", "Camila", "Nicolás",
    "Valentina", "Julián", "Ramón", "Inés", "Héctor", "Ángela", "Martín", "Daniela",
    "Sebastián", "Verónica", "Iván", "Raúl", "Mónica", "Elena", "Luis", "Ana",
    "Juan Pablo", "María José", "Carlos", "Beatriz", "Tomás",
)  # fmt: skip
_LAST_NAMES = (
    "Pérez", "Godoy", "Urrea", "Gómez", "Rodríguez", "Martínez", "Hernández", "López",
    "González", "Sánchez", "Ramírez", "Díaz", "Muñoz", "Álvarez", "Castaño", "Ortiz",
    "Peña", "Zúñiga", "Ibáñez", "Restrepo", "Giraldo", "Cárdenas", "Núñez", "Quintero",
    "Ríos", "Echeverría",
)  # fmt: skip
_STREETS = ("Calle", "Carrera", "Diagonal", "Transversal", "Avenida")
_ANTENNAS = ("LiteBeam M5", "PowerBeam AC", "SXT Lite5", "ONU Huawei HG8145")
_WIFI_ROUTERS = ("TP-Link Archer C6", "Tenda F3", "MikroTik hAP ac2", "Huawei HG8145V5")


def wisphub_plans() -> list[dict[str, Any]]:
    """The tenant's plans, with speeds and price (PPPoE, Simple Queue and PCQ)."""
    return [
        {
            "id": plan_id,
            "nombre": nombre,
            "tipo": tipo,
            "bajada": bajada,
            "subida": subida,
            "precio": precio,
            "descripcion": f"Plan {bajada}/{subida}",
            "perfil": nombre,
        }
        for plan_id, nombre, tipo, bajada, subida, precio, _ in _PLANS
    ]


def wisphub_clients(count: int, seed: int = 1) -> list[dict[str, Any]]:
    """`count` client rows (~54 fields each) in list-serializer shape.

    With `count >= ANOMALY_MIN_COUNT` some non-cancelled rows get BAD_IPS, CIDR_IPS and
    DUPLICATE_IP_PAIRS shared IPs (with different `ultimo_cambio`); smaller sets are clean
    apart from cancelled placeholder IPs.
    """
    rng = random.Random(seed)
    pools = {site[0]: _hosts(site[4], rng) for site in _SITES}
    used: set[str] = set()
    rows = []
    id_servicio = 11
    for _ in range(count):
        id_servicio += rng.choice((1, 1, 1, 2, 3, 7))
        rows.append(_client(rng, id_servicio, pools, used))
    if count >= ANOMALY_MIN_COUNT:
        _add_anomalies(rng, rows)
    return rows


def bqn_state_extras(seed: int = 1) -> dict[str, list[dict[str, Any]]]:
    """What a BQN already holds before any sync: static policies and rules subscribers.

    Returns `{"static_policies": [...], "rules_subscribers": [...]}`; the rules
    subscribers sit in RULES_NETWORK, which no seeded WispHub client uses.
    """
    rng = random.Random(seed)
    static_policies = [
        {
            "policyName": "rate-default",
            "policyId": "default",
            "rateLimitDownlink": {"rate": 2000, "congestionMgmt": True},
            "rateLimitUplink": {"rate": 1000, "congestionMgmt": True},
        },
        {
            "policyName": "rate-guest",
            "policyId": "guest",
            "rateLimitDownlink": {"rate": 512, "congestionMgmt": False},
            "rateLimitUplink": {"rate": 256, "congestionMgmt": False},
        },
    ]
    hosts = rng.sample(list(RULES_NETWORK.hosts()), 4)
    rules_subscribers = [
        {
            "subscriberIp": str(host),
            "policyRate": "rate-guest" if index == 0 else "rate-default",
            "policyAssignedBy": "rules",
        }
        for index, host in enumerate(sorted(hosts))
    ]
    return {"static_policies": static_policies, "rules_subscribers": rules_subscribers}


def load_wisphub(state: WispHubState, count: int, seed: int = 1) -> None:
    """Fill a WispHub state with `wisphub_plans()` and `wisphub_clients(count, seed)`."""
    for plan in wisphub_plans():
        state.set_plan(**plan)
    for row in wisphub_clients(count, seed):
        state.upsert_client(row)


def load_bqn(state: BqnState, seed: int = 1) -> None:
    """Give a BQN state its static policies and rules subscribers."""
    extras = bqn_state_extras(seed)
    for policy in extras["static_policies"]:
        state.add_static_policy(policy)
    for subscriber in extras["rules_subscribers"]:
        state.add_rules_subscriber(subscriber["subscriberIp"], subscriber["policyRate"])


def slug(text: str) -> str:
    """`"María Godoy Urrea"` → `"maria_godoy_urrea"`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "_".join(ascii_text.lower().split())


def _hosts(network: str, rng: random.Random) -> Iterator[str]:
    """Addresses handed out in order with small gaps, skipping .0, .1 (gateway), .255."""
    for address in ipaddress.ip_network(network).hosts():
        if address.packed[-1] not in (0, 1, 255) and rng.random() > 0.2:
            yield str(address)


def _gateway(ip: str) -> str:
    return str(ipaddress.ip_network(f"{ip}/24", strict=False).network_address + 1)


def _placeholder(ip: str, used: set[str]) -> str:
    """The address WispHub writes when a client is cancelled with "Liberar IP"."""
    octets = ip.split(".")
    if octets[0] == "10":
        prefix = "127.0"
    elif octets[:2] == ["192", "168"]:
        prefix = "169.254"
    else:
        prefix = "168.0"
    candidate = f"{prefix}.{octets[2]}.{octets[3]}"
    if candidate in used:
        candidate = f"100.64.{200 + int(octets[2]) % 50}.{octets[3]}"
    return candidate


def _stamp(moment: datetime) -> str:
    return moment.strftime(DATE_FORMAT)


def _token(rng: random.Random, length: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=length))


def _person(rng: random.Random, id_servicio: int) -> tuple[str, str]:
    """(nombre as typed in the panel, slug used for usuario/servicio)."""
    surnames = rng.sample(_LAST_NAMES, rng.choice((1, 2, 2)))
    full = " ".join([rng.choice(_FIRST_NAMES), *surnames])
    person_slug = f"{id_servicio:04d}{slug(full)}"
    style = rng.random()
    if style < 0.2:
        return person_slug, person_slug
    if style < 0.25:
        return full.upper(), person_slug
    if style < 0.28:
        return f"{full} ", person_slug  # a trailing space typed in the panel
    return full, person_slug


def _client(
    rng: random.Random,
    id_servicio: int,
    pools: dict[int, Iterator[str]],
    used: set[str],
) -> dict[str, Any]:
    nombre, person_slug = _person(rng, id_servicio)
    estado = rng.choices(_ESTADOS, weights=_ESTADO_WEIGHTS)[0]
    plan = rng.choices(_PLANS, weights=[p[-1] for p in _PLANS])[0]
    site = rng.choices(_SITES, weights=[s[-1] for s in _SITES])[0]
    router_id, router_name, zona_id, zona_name = site[:4]
    ip = next(pools[router_id])
    ip_local = _gateway(ip) if plan[2] == "PPPoE" else ""
    if estado == "Cancelado" and rng.random() < 0.6:
        ip = _placeholder(ip, used)
    used.add(ip)
    changed = _NOW - timedelta(seconds=rng.randrange(400 * 86400))
    installed = changed - timedelta(seconds=rng.randrange(900 * 86400))
    cut = _NOW + timedelta(days=rng.randrange(1, 31))
    tecnico = rng.choice(_TECNICOS)
    ciudad, localidad = rng.choice(_CIUDADES)
    phones = [f"+57 3{rng.randrange(10, 50)} {rng.randrange(1000000, 9999999)}"]
    if rng.random() < 0.2:
        phones.append(f"604 {rng.randrange(2000000, 4999999)}")
    owes = estado == "Suspendido" or (estado == "Activo" and rng.random() < 0.15)
    wifi_name = f"WIFI-{person_slug[4:16].upper()}"
    return {
        "id_servicio": id_servicio,
        "nombre": nombre,
        "usuario": f"{person_slug}@{EMPRESA}",
        "servicio": person_slug,
        "ip": ip,
        "ip_local": ip_local,
        "estado": estado,
        "plan_internet": {"id": plan[0], "nombre": plan[1]},
        "ultimo_cambio": _stamp(changed),
        "router": {
            "id": router_id,
            "nombre": router_name,
            "falla_general": router_id == _BROKEN_ROUTER,
            "falla_general_descripcion": (
                "Corte de fibra en el troncal" if router_id == _BROKEN_ROUTER else ""
            ),
        },
        "zona": {"id": zona_id, "nombre": zona_name},
        "sectorial": None,
        "fecha_instalacion": _stamp(installed),
        "fecha_corte": f"{cut.day}/{cut.month:02d}/{cut.year}",
        "saldo": plan[5] if owes else "0.00",
        "estado_facturas": "Pendiente de pago" if owes else "Pagadas",
        "telefono": ",".join(phones),
        "email": f"{slug(nombre).replace('_', '.')[:24]}.{id_servicio}@correo.example",
        "cedula": str(100_000_000 + id_servicio * 48_271_013 % 900_000_000),  # unique
        "rfc": "".join(rng.choices(string.ascii_uppercase, k=4))
        + installed.strftime("%y%m%d")
        + _token(rng, 3).upper(),
        "direccion": (
            f"{rng.choice(_STREETS)} {rng.randrange(1, 120)} # {rng.randrange(1, 99)}-"
            f"{rng.randrange(1, 99)}, {localidad}"
        ),
        "coordenadas": f"{6.17 + rng.random() / 10:.6f},{-75.64 + rng.random() / 10:.6f}",
        "password_servicio": f"srv-{_token(rng, 12)}",
        "password_cpe": f"cpe-{_token(rng, 12)}",
        "password_router_wifi": f"rtr-{_token(rng, 12)}",
        "password_ssid_router_wifi": f"ssid-{_token(rng, 12)}",
        "usuario_router_wifi": f"admin-{_token(rng, 8)}",
        "ssid_router_wifi": wifi_name,
        "ip_router_wifi": "192.168.0.1",
        "mac_cpe": _mac(rng),
        "mac_router_wifi": _mac(rng),
        "modelo_antena": rng.choice(_ANTENNAS),
        "modelo_router_wifi": rng.choice(_WIFI_ROUTERS),
        "tecnico": {"id": tecnico[0], "nombre": tecnico[1]},
        "ciudad": ciudad,
        "localidad": localidad,
        "comentarios": rng.choice(("", "", "Cliente referido", "Cambio de antena 2025")),
        "precio_plan": plan[5],
        "descuento": "0.00",
        "forma_contratacion": rng.choice(("Mensual", "Anual")),
        "dia_pago": cut.day,
        "fecha_cancelacion": _stamp(changed) if estado == "Cancelado" else None,
        "fecha_suspension": _stamp(changed) if estado == "Suspendido" else None,
        "notificaciones_sms": rng.random() < 0.7,
        "notificaciones_email": rng.random() < 0.5,
        "firewall": estado == "Suspendido",
        "interfaz_lan": rng.choice(("ether2", "ether3", "sfp1", "vlan100")),
        "tipo_conexion": plan[2],
        "estado_instalacion": "Instalado",
        "is_preinstallation": False,
        "usuario_rb": person_slug,
        "cliente_rb": person_slug,
        "asesor": None,
    }


def _mac(rng: random.Random) -> str:
    return ":".join(f"{rng.randrange(256):02X}" for _ in range(6))


def _add_anomalies(rng: random.Random, rows: list[dict[str, Any]]) -> None:
    live = [row for row in rows if row["estado"] != "Cancelado"]
    picked = rng.sample(live, len(BAD_IPS) + len(CIDR_IPS) + 2 * DUPLICATE_IP_PAIRS)
    for row, ip in zip(picked, BAD_IPS + CIDR_IPS, strict=False):
        row["ip"] = ip
    pairs = picked[len(BAD_IPS) + len(CIDR_IPS) :]
    for first, second in zip(pairs[::2], pairs[1::2], strict=True):
        second["ip"] = first["ip"]
        if second["ultimo_cambio"] == first["ultimo_cambio"]:
            later = datetime.strptime(first["ultimo_cambio"], DATE_FORMAT) + timedelta(hours=1)
            second["ultimo_cambio"] = _stamp(later)
