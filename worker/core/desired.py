"""Desired BQN state from WispHub client rows (pure: no I/O).

`Activo` and `Gratis` clients get their plan's policy, `Suspendido` ones the block policy (or,
with `SUSPENDED_ACTION=throttle`, the throttle policy), `Cancelado` ones nothing. A client with
several addresses or a block gets a subscriber group (or one subscriber per address, or nothing,
as `MULTI_IP_MODE` says). A row that cannot be mapped is skipped with its reason; when the row's
addresses are valid but its state cannot be known (unknown `estado`, no plan), they are
*protected*: whatever the BQN holds there is left alone rather than deleted. When several
clients claim one IP, the latest `ultimo_cambio` wins (tie: the higher `id_servicio`) and every
conflict is kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from worker import defaults
from worker.core import phrases
from worker.core.addresses import AddressError, Addresses, expand, read_addresses
from worker.core.client_overrides import ESTADO
from worker.core.model import Conflict, Group, Policy, Skip, Subscriber
from worker.core.rules import BLOCK, THROTTLE, MappingRules

SHAPED = frozenset({"activo", "gratis"})
BLOCKED = frozenset({"suspendido"})
REMOVED = frozenset({"cancelado"})
CHANGE_FORMATS = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y")
GROUP_PREFIX = "wisphub-"

Row = Mapping[str, Any]
# Policy names by WispHub plan id, when the plan catalogue is known (see `worker.core.plans.named`).
PolicyNames = Mapping[int, str]


@dataclass(frozen=True)
class Desired:
    """What the BQN should hold: subscribers by IP and groups by name, plus what could not be
    mapped and why. Protected IPs and groups belong to clients whose state could not be known:
    whatever the BQN holds there is left alone."""

    subscribers: dict[str, Subscriber]
    groups: dict[str, Group] = field(default_factory=dict)
    skips: tuple[Skip, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    protected: frozenset[str] = frozenset()
    protected_groups: frozenset[str] = frozenset()
    clients: int = 0


def policy_name(plan_name: str) -> str:
    """The BQN rate policy name of a WispHub plan: its `nombre` with spaces as `_`.

    A name made only of dots (`.`, `..`) would be read as a path segment and address another
    BQN path, so its dots become `_` too.
    """
    name = plan_name.strip().replace(" ", "_")
    return "_" * len(name) if name in (".", "..") else name


def suspended_policy(rules: MappingRules) -> Policy:
    """The policy suspended clients are given: zero-rate (block), or the throttle's rates."""
    if rules.suspended_action == THROTTLE:
        name, policy_id, (down, up) = rules.throttle_policy, THROTTLE, rules.suspended_rate
    else:
        name, policy_id, (down, up) = rules.block_policy, BLOCK, (0, 0)
    return Policy(
        name,
        {
            "policyId": policy_id,
            "rateLimitDownlink": {"rate": down},
            "rateLimitUplink": {"rate": up},
        },
    )


# The fields of a WispHub row the sync reads; a list pass keeps only these (rows carry ~54).
ROW_FIELDS = ("id_servicio", "ip", "estado", "plan_internet", "ultimo_cambio", "nombre", "usuario")
# The places a target may select clients by (`worker.core.targets`) and location groups are
# named after (`worker.core.locations`): their id and name are kept.
PLACE_FIELDS = ("router", "zona", "sectorial")


def slim(row: Row) -> Row:
    """`row` with only the fields the sync reads."""
    kept = {name: row[name] for name in ROW_FIELDS if name in row}
    for name in PLACE_FIELDS:
        place = row.get(name)
        if place is not None:
            kept[name] = (
                {"id": place.get("id"), "nombre": place.get("nombre")}
                if isinstance(place, Mapping)
                else place
            )
    return kept


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


@dataclass(frozen=True)
class Entries:
    """What one client should have on the BQN: subscribers, or a group."""

    subscribers: tuple[Subscriber, ...] = ()
    group: Group | None = None


def group_name(id_servicio: int) -> str:
    """The name of the BQN subscriber group the sync keeps for a client."""
    return f"{GROUP_PREFIX}{id_servicio}"


def is_own_group(name: str) -> bool:
    """True for the groups the sync creates (and so may change or delete)."""
    return name.startswith(GROUP_PREFIX) and name[len(GROUP_PREFIX) :].isdecimal()


def map_client(
    row: Row, rules: MappingRules, names: PolicyNames | None = None
) -> Entries | Skip | None:
    """One client's BQN entries; `None` when it should have none; `Skip` when unmappable.

    A `Skip` with `kept` addresses names entries that must be left untouched, because the
    client's state could not be known. `names` gives the policy of each plan id (plans are
    known by id: a renamed plan, or two whose names differ only by a space, keep distinct
    policies); a plan it lacks gets the policy named after its `nombre`.
    """
    id_servicio = client_id(row)
    raw_ip = row.get("ip")
    shown_ip = raw_ip.strip() if isinstance(raw_ip, str) else ""
    if id_servicio is None:
        return Skip(None, shown_ip, phrases.NO_VALID_ID)
    estado_raw = row.get("estado")
    estado = estado_raw.strip().lower() if isinstance(estado_raw, str) else ""
    if estado in REMOVED:
        return None
    try:
        addresses = read_addresses(raw_ip, rules.ipv6_prefix)
    except AddressError as exc:
        return Skip(id_servicio, shown_ip, str(exc))
    override = rules.overrides.get(id_servicio)  # wins over WispHub, but for a cancellation
    if override is not None and override.kind == ESTADO:
        estado = override.value.lower()
    if override is not None and override.policy is not None:
        policy = override.policy
    elif estado in BLOCKED:
        policy = rules.suspended_policy
    elif estado in SHAPED:
        plan = row.get("plan_internet")
        plan_nombre = plan.get("nombre") if isinstance(plan, Mapping) else None
        if not isinstance(plan_nombre, str) or not plan_nombre.strip():
            return Skip(id_servicio, shown_ip, phrases.NO_PLAN, kept=_kept(addresses))
        plan_id = as_id(plan.get("id")) if isinstance(plan, Mapping) else None
        known = names.get(plan_id) if names and plan_id is not None else None
        policy = known or policy_name(plan_nombre)
    else:
        reason = phrases.UNKNOWN_ESTADO.format(estado=estado_raw)
        return Skip(id_servicio, shown_ip, reason, kept=_kept(addresses))
    template = Subscriber(
        "", _subscriber_id(row, rules.subscriber_id_field, id_servicio), policy, id_servicio
    )
    return _entries(template, addresses, rules, shown_ip)


def _entries(
    template: Subscriber, addresses: Addresses, rules: MappingRules, shown_ip: str
) -> Entries | Skip:
    """Subscribers for a single address; for several, what `MULTI_IP_MODE` says."""
    id_servicio = template.id_servicio or 0
    if addresses.single is None and rules.multi_ip_mode == "group":
        name = group_name(id_servicio)
        group = Group(name, addresses.members, addresses.ranges, template.policy_rate, id_servicio)
        return Entries(group=group)
    if addresses.single is None and rules.multi_ip_mode == "skip":
        return Skip(id_servicio, shown_ip, phrases.SEVERAL_ADDRESSES)
    try:
        keys = expand(addresses, defaults.MAX_SUBSCRIBERS_PER_CLIENT)
    except AddressError as exc:
        return Skip(id_servicio, shown_ip, phrases.ONE_PER_ADDRESS.format(reason=exc))
    return Entries(tuple(replace(template, ip=key) for key in keys))


def _kept(addresses: Addresses) -> tuple[str, ...]:
    return (*addresses.members, *addresses.ranges)


def desired_state(
    rows: Iterable[Row], rules: MappingRules, names: PolicyNames | None = None
) -> Desired:
    """The whole desired state from a complete WispHub pass (or from the rows of the clients
    claiming some addresses); `names` as for `map_client`."""
    claims: dict[str, list[tuple[tuple[datetime, int], Subscriber]]] = defaultdict(list)
    groups: dict[str, Group] = {}
    skips: list[Skip] = []
    count = 0
    for row in rows:
        count += 1
        mapped = map_client(row, rules, names)
        if isinstance(mapped, Entries):
            rank = (last_change(row), client_id(row) or 0)
            for sub in mapped.subscribers:
                claims[sub.ip].append((rank, sub))
            if mapped.group is not None:
                groups[mapped.group.name] = mapped.group
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
                Skip(loser, ip, phrases.CLAIMED_LATER.format(winner=winner.id_servicio))
                for loser in losers
            )
    kept = [skip for skip in skips if skip.kept]
    return Desired(
        subscribers=subscribers,
        groups=groups,
        skips=tuple(skips),
        conflicts=tuple(conflicts),
        protected=frozenset(ip for skip in kept for ip in skip.kept),
        protected_groups=frozenset(group_name(skip.id_servicio or 0) for skip in kept),
        clients=count,
    )


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
