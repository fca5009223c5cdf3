"""Desired BQN state from WispHub client rows (pure: no I/O).

`Activo` and `Gratis` clients get their plan's policy, `Suspendido` ones the block policy,
`Cancelado` ones nothing. A row that cannot be mapped is skipped with its reason; when the row's
IP is valid but its state cannot be known (unknown `estado`, no plan), that IP is *protected*:
whatever the BQN holds there is left alone rather than deleted. When several clients claim one
IP, the latest `ultimo_cambio` wins (tie: the higher `id_servicio`) and every conflict is kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker.addresses import subscriber_address
from worker.model import Conflict, Policy, Skip, Subscriber
from worker.settings import MappingRules

SHAPED = frozenset({"activo", "gratis"})
BLOCKED = frozenset({"suspendido"})
REMOVED = frozenset({"cancelado"})
CHANGE_FORMATS = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y")

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Desired:
    """What the BQN should hold: subscribers by IP, plus what could not be mapped and why."""

    subscribers: dict[str, Subscriber]
    skips: tuple[Skip, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    protected: frozenset[str] = frozenset()
    clients: int = 0


def policy_name(plan_name: str) -> str:
    """The BQN rate policy name of a WispHub plan: its `nombre` with spaces as `_`."""
    return plan_name.strip().replace(" ", "_")


def block_policy(rules: MappingRules) -> Policy:
    """The zero-rate policy suspended clients are given."""
    return Policy(
        rules.block_policy,
        {"policyId": "block", "rateLimitDownlink": {"rate": 0}, "rateLimitUplink": {"rate": 0}},
    )


def client_id(row: Row) -> int | None:
    """A row's `id_servicio` as an int, or `None` when it has none."""
    return as_id(row.get("id_servicio"))


def as_id(value: object) -> int | None:
    """An id WispHub sent as a number or as its text; `None` when it is neither."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def map_client(row: Row, rules: MappingRules) -> Subscriber | Skip | None:
    """One client's BQN subscriber; `None` when it should have none; `Skip` when unmappable.

    A `Skip` whose `keep` is set names an IP the BQN entry of which must be left untouched.
    """
    id_servicio = client_id(row)
    raw_ip = row.get("ip")
    shown_ip = raw_ip.strip() if isinstance(raw_ip, str) else ""
    if id_servicio is None:
        return Skip(None, shown_ip, "row without a valid id_servicio")
    estado_raw = row.get("estado")
    estado = estado_raw.strip().lower() if isinstance(estado_raw, str) else ""
    if estado in REMOVED:
        return None
    address = subscriber_address(raw_ip, rules.ipv6_prefix)
    if address.key is None:
        return Skip(id_servicio, shown_ip, address.problem or "no usable IP")
    if estado in BLOCKED:
        policy = rules.block_policy
    elif estado in SHAPED:
        plan = row.get("plan_internet")
        plan_nombre = plan.get("nombre") if isinstance(plan, Mapping) else None
        if not isinstance(plan_nombre, str) or not plan_nombre.strip():
            return Skip(id_servicio, address.key, "no internet plan", keep=True)
        policy = policy_name(plan_nombre)
    else:
        return Skip(id_servicio, address.key, f"unknown estado {estado_raw!r}", keep=True)
    return Subscriber(
        ip=address.key,
        subscriber_id=_subscriber_id(row, rules.subscriber_id_field, id_servicio),
        policy_rate=policy,
        id_servicio=id_servicio,
    )


def desired_state(rows: Iterable[Row], rules: MappingRules) -> Desired:
    """The whole desired state from a complete WispHub pass."""
    claims: dict[str, list[tuple[tuple[datetime, int], Subscriber]]] = defaultdict(list)
    skips: list[Skip] = []
    count = 0
    for row in rows:
        count += 1
        mapped = map_client(row, rules)
        if isinstance(mapped, Subscriber):
            rank = (last_change(row), mapped.id_servicio or 0)
            claims[mapped.ip].append((rank, mapped))
        elif isinstance(mapped, Skip):
            skips.append(mapped)
    subscribers: dict[str, Subscriber] = {}
    conflicts: list[Conflict] = []
    for ip, claimants in claims.items():
        claimants.sort(key=lambda claim: claim[0], reverse=True)
        winner = claimants[0][1]
        subscribers[ip] = winner
        if len(claimants) > 1:
            losers = tuple(sub.id_servicio or 0 for _, sub in claimants[1:])
            conflicts.append(Conflict(ip, winner.id_servicio or 0, losers))
            skips.extend(
                Skip(loser, ip, f"IP also claimed by client {winner.id_servicio}, changed later")
                for loser in losers
            )
    protected = frozenset(skip.ip for skip in skips if skip.keep)
    return Desired(subscribers, tuple(skips), tuple(conflicts), protected, count)


def last_change(row: Row) -> datetime:
    """`ultimo_cambio` (`DD/MM/YYYY HH:MM:SS`, no zone); the oldest time when unreadable."""
    value = row.get("ultimo_cambio")
    if isinstance(value, str):
        for fmt in CHANGE_FORMATS:
            try:
                return datetime.strptime(value.strip(), fmt)  # WispHub sends no zone
            except ValueError:
                continue
    return datetime.min


def _subscriber_id(row: Row, field_name: str, id_servicio: int) -> str:
    """The configured identity field, falling back to `id_servicio` when it is empty."""
    value = row.get(field_name)
    text = str(value).strip() if value is not None and not isinstance(value, bool) else ""
    return text or str(id_servicio)
