"""WispHub internet plans and the BQN rate policies they become (pure: no I/O).

A plan's speeds come from its WispHub detail (`bajada`/`subida`), or from the operator's
override file, which may also fill plans WispHub gives no speed for (PCQ plans, missing or
unreadable details). A plan with no known speed gets no policy: it is left for the operator,
as the original script did, and named in reports.

Plans are known by id. A plan's policy is named after its `nombre` as the freshest client rows
show it (a rename is seen at once), and when two plans would make one policy name (`Plan Twin`
and `Plan_Twin`) the lowest plan id keeps it and each other plan gets `-<id>` appended, so
their speeds never overwrite each other; the block policy's name is never given to a plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from worker.core import phrases
from worker.core.client_overrides import is_rate_policy, rate_policies
from worker.core.desired import PolicyNames, Row, as_id, policy_name, suspended_policy
from worker.core.model import Policy, covers
from worker.core.rules import MappingRules
from worker.core.speeds import SpeedError, parse_speed

WISPHUB, OVERRIDE, NONE = "wisphub", "override", "none"


@dataclass(frozen=True)
class Speeds:
    """Rates in kbps; the optional burst applies to the download direction."""

    downlink_kbps: int
    uplink_kbps: int
    burst_rate_kbps: int | None = None
    burst_threshold_kbps: int | None = None
    burst_duration_s: int | None = None

    def rate_limits(self) -> dict[str, dict[str, int]]:
        """The BQN `rateLimitDownlink`/`rateLimitUplink` objects."""
        downlink = {"rate": self.downlink_kbps}
        burst = {
            "burstRate": self.burst_rate_kbps,
            "burstThreshold": self.burst_threshold_kbps,
            "burstDuration": self.burst_duration_s,
        }
        downlink.update({key: value for key, value in burst.items() if value is not None})
        return {"rateLimitDownlink": downlink, "rateLimitUplink": {"rate": self.uplink_kbps}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Speeds:
        """The inverse of `to_dict`."""
        return cls(
            downlink_kbps=int(data["download_kbps"]),
            uplink_kbps=int(data["upload_kbps"]),
            burst_rate_kbps=data.get("burst_rate_kbps"),
            burst_threshold_kbps=data.get("burst_threshold_kbps"),
            burst_duration_s=data.get("burst_duration_s"),
        )

    def to_dict(self) -> dict[str, int | None]:
        """JSON-ready form."""
        return {
            "download_kbps": self.downlink_kbps,
            "upload_kbps": self.uplink_kbps,
            "burst_rate_kbps": self.burst_rate_kbps,
            "burst_threshold_kbps": self.burst_threshold_kbps,
            "burst_duration_s": self.burst_duration_s,
        }


@dataclass(frozen=True)
class Plan:
    """A WispHub plan: what WispHub says, and the speeds the sync will use."""

    id: int
    nombre: str
    tipo: str = ""
    bajada: str | None = None
    subida: str | None = None
    speeds: Speeds | None = None
    source: str = NONE
    problem: str | None = None
    # The policy name `named` gave the plan; empty: the name its `nombre` makes.
    assigned_policy: str = ""

    @property
    def policy_name(self) -> str:
        """The BQN policy (and subscribers' `policyRate`) name."""
        return self.assigned_policy or policy_name(self.nombre)

    def policy(self) -> Policy | None:
        """The rate policy this plan needs, or `None` when its speeds are unknown."""
        if self.speeds is None:
            return None
        return Policy(self.policy_name, {"policyId": str(self.id), **self.speeds.rate_limits()})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """The inverse of `to_dict` (for the catalogue kept in Redis)."""
        speeds = data.get("speeds")
        return cls(
            id=int(data["id"]),
            nombre=str(data["name"]),
            tipo=str(data.get("tipo") or ""),
            bajada=data["wisphub_speeds"]["bajada"],
            subida=data["wisphub_speeds"]["subida"],
            speeds=None if speeds is None else Speeds.from_dict(speeds),
            source=str(data.get("source") or NONE),
            problem=data.get("problem"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "name": self.nombre,
            "policy": self.policy_name,
            "tipo": self.tipo,
            "wisphub_speeds": {"bajada": self.bajada, "subida": self.subida},
            "speeds": None if self.speeds is None else self.speeds.to_dict(),
            "source": self.source,
            "problem": self.problem,
        }


def plan_from_wisphub(summary: Mapping[str, Any], detail: Mapping[str, Any] | None) -> Plan:
    """A plan from its list entry (`id`, `nombre`, `tipo`) and its detail, if it has one."""
    plan = Plan(
        id=int(summary["id"]),
        nombre=str(summary.get("nombre") or summary["id"]),
        tipo=str(summary.get("tipo") or ""),
    )
    if detail is None:
        reason = phrases.PCQ_PLAN if is_pcq(plan.tipo) else phrases.NO_DETAIL
        return replace(plan, problem=reason)
    bajada, subida = detail.get("bajada"), detail.get("subida")
    plan = replace(plan, bajada=_shown(bajada), subida=_shown(subida))
    try:
        speeds = Speeds(parse_speed(bajada), parse_speed(subida))
    except SpeedError as exc:
        return replace(plan, problem=str(exc))
    return replace(plan, speeds=speeds, source=WISPHUB)


def with_overrides(plans: Iterable[Plan], overrides: Mapping[str, Speeds]) -> list[Plan]:
    """Plans with the operator's speeds laid over WispHub's: matched by the plan's exact name
    (so `Plan Twin` and `Plan_Twin` may have their own), else by the policy name it makes."""
    by_policy: dict[str, Speeds] = {}
    for name, speeds in overrides.items():
        by_policy.setdefault(policy_name(name), speeds)
    result = []
    for plan in plans:
        override = overrides.get(plan.nombre.strip()) or by_policy.get(policy_name(plan.nombre))
        result.append(plan if override is None else replace(plan, speeds=override, source=OVERRIDE))
    return result


def renamed(plans: Iterable[Plan], rows: Iterable[Row]) -> list[Plan]:
    """The catalogue with each plan named as client rows name it (rows are read after the
    catalogue, so a rename shows there first), plus the plans rows name that it lacks (without
    speeds: left for the operator until the catalogue is read again)."""
    shown: dict[int, str] = {}
    for row in rows:
        plan = row.get("plan_internet")
        plan_id = as_id(plan.get("id")) if isinstance(plan, Mapping) else None
        nombre = plan.get("nombre") if isinstance(plan, Mapping) else None
        if plan_id is not None and isinstance(nombre, str) and nombre.strip():
            shown[plan_id] = nombre
    result = [replace(plan, nombre=shown.get(plan.id, plan.nombre)) for plan in plans]
    known = {plan.id for plan in result}
    result += [
        Plan(plan_id, nombre, problem=phrases.NOT_LISTED_YET)
        for plan_id, nombre in sorted(shown.items())
        if plan_id not in known
    ]
    return result


def named(plans: Iterable[Plan], reserved: Iterable[str] = ()) -> list[Plan]:
    """`plans` with distinct policy names: in plan id order, each takes the name its `nombre`
    makes, or, when an earlier plan (or a `reserved` name, or a rate override's policy name)
    has it, that name with `-<id>`."""
    taken = set(reserved)
    result = []
    for plan in sorted(plans, key=lambda p: p.id):
        name = policy_name(plan.nombre)
        while name in taken or is_rate_policy(name):
            name = f"{name}-{plan.id}"
        taken.add(name)
        result.append(replace(plan, assigned_policy=name))
    return result


def resolved(plans: Iterable[Plan], rows: Iterable[Row], rules: MappingRules) -> list[Plan]:
    """The plans to sync `rows` with: named as the rows show them, with distinct policies."""
    return named(renamed(plans, rows), rules.reserved_policies)


def policy_names(plans: Iterable[Plan]) -> PolicyNames:
    """Each plan's policy name by plan id."""
    return {plan.id: plan.policy_name for plan in plans}


def name_collisions(plans: Iterable[Plan]) -> list[str]:
    """A note for each plan whose policy is not the name its `nombre` makes."""
    return [
        f"plan {plan.id} ({plan.nombre!r}) makes the policy name {policy_name(plan.nombre)}, "
        f"already used by another plan or the block policy: its policy is {plan.policy_name}"
        for plan in plans
        if plan.policy_name != policy_name(plan.nombre)
    ]


def wanted_policies(plans: Iterable[Plan], rules: MappingRules) -> list[Policy]:
    """The suspended clients' policy, one policy per plan with known speeds, then the policy
    of each `rate` override in force (`worker.core.client_overrides`)."""
    policies = [suspended_policy(rules)]
    policies.extend(policy for plan in plans if (policy := plan.policy()) is not None)
    policies.extend(rate_policies(rules.overrides.values()))
    return policies


def policy_state(plan: Plan, held: Policy | None) -> str:
    """How the BQN holds a plan's policy: `ok`, `different`, `undefined`, `missing`, or, for a
    plan without known speeds, `left for the operator`."""
    wanted = plan.policy()
    if wanted is None:
        return "left for the operator"
    if held is None:
        return "missing"
    if held.undefined:
        return "undefined"
    return "ok" if covers(held.fields, wanted.fields) else "different"


def is_pcq(tipo: str) -> bool:
    """PCQ plans: WispHub exposes no speeds for them."""
    return tipo.strip().lower() == "pcq"


def detail_kinds(tipo: str) -> list[str]:
    """Detail endpoints to try for a plan `tipo`, in order (`pppoe`, `queue`; none for PCQ)."""
    kind = tipo.strip().lower()
    if kind == "pcq":
        return []
    if kind == "pppoe":
        return ["pppoe", "queue"]
    return ["queue", "pppoe"]


def _shown(value: Any) -> str | None:
    return None if value is None else str(value)
