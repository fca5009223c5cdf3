"""WispHub internet plans and the BQN rate policies they become (pure: no I/O).

A plan's speeds come from its WispHub detail (`bajada`/`subida`), or from the operator's
override file, which may also fill plans WispHub gives no speed for (PCQ plans, missing or
unreadable details). A plan with no known speed gets no policy: it is left for the operator,
as the original script did, and named in reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from worker.desired import block_policy, policy_name
from worker.model import Policy, covers
from worker.settings import MappingRules
from worker.speeds import SpeedError, parse_speed

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

    @property
    def policy_name(self) -> str:
        """The BQN policy (and subscribers' `policyRate`) name."""
        return policy_name(self.nombre)

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
        reason = "PCQ plans have no speeds in WispHub" if is_pcq(plan.tipo) else "no detail"
        return replace(plan, problem=reason)
    bajada, subida = detail.get("bajada"), detail.get("subida")
    plan = replace(plan, bajada=_shown(bajada), subida=_shown(subida))
    try:
        speeds = Speeds(parse_speed(bajada), parse_speed(subida))
    except SpeedError as exc:
        return replace(plan, problem=str(exc))
    return replace(plan, speeds=speeds, source=WISPHUB)


def with_overrides(plans: Iterable[Plan], overrides: Mapping[str, Speeds]) -> list[Plan]:
    """Plans with the operator's speeds laid over WispHub's (matched by policy name)."""
    result = []
    for plan in plans:
        override = overrides.get(plan.policy_name)
        result.append(plan if override is None else replace(plan, speeds=override, source=OVERRIDE))
    return result


def wanted_policies(plans: Iterable[Plan], rules: MappingRules) -> list[Policy]:
    """The block policy, then one policy per plan with known speeds."""
    policies = [block_policy(rules)]
    policies.extend(policy for plan in plans if (policy := plan.policy()) is not None)
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
