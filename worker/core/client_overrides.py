"""Temporary overrides of what a client gets on the BQN (pure: no I/O).

An operator may, until a given time, give a client another policy (`policy`), a rate of its
own (`rate`, a policy `Wisphub_override_<id>` made for it), or shape it as another `estado`
(`estado: Activo`, a promise to pay: a suspended client keeps its plan). The override wins
over WispHub wherever the client is mapped (`worker.core.desired.map_client` reads it from
`MappingRules.overrides`), except for a client cancelled in WispHub, which is removed all
the same. An override whose `until` has passed is not `active`: whatever reads overrides
drops it, so a client returns to what WispHub says even if nothing removes it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from worker import defaults
from worker.core.model import Policy
from worker.core.speeds import SpeedError, parse_speed

POLICY, RATE, ESTADO = "policy", "rate", "estado"
KINDS = (POLICY, RATE, ESTADO)
# The `estado`s an override may give, as WispHub spells them (`Cancelado` is not one: a
# client is removed only when WispHub cancels it).
ESTADOS = ("Activo", "Suspendido")


class OverrideError(ValueError):
    """A request for an override that cannot be taken; the message says why."""


@dataclass(frozen=True)
class Override:
    """What a client gets instead of what WispHub says, until `until` (aware datetimes)."""

    id_servicio: int
    kind: str
    value: str
    until: datetime
    reason: str
    set_by: str
    set_at: datetime

    @property
    def policy(self) -> str | None:
        """The policy the client's entries get; `None` for an `estado` override (its plan's,
        or the suspended policy, as for that `estado`)."""
        if self.kind == POLICY:
            return self.value
        if self.kind == RATE:
            return rate_policy_name(self.id_servicio)
        return None

    def rate_policy(self) -> Policy | None:
        """The policy a `rate` override needs on the BQN (`None` for the other kinds)."""
        if self.kind != RATE:
            return None
        down, up = read_rate(self.value)
        return Policy(
            rate_policy_name(self.id_servicio),
            {
                "policyId": f"override-{self.id_servicio}",
                "rateLimitDownlink": {"rate": down},
                "rateLimitUplink": {"rate": up},
            },
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as kept in Redis and shown by the API."""
        return {
            "id_servicio": self.id_servicio,
            self.kind: self.value,
            "until": self.until.isoformat(),
            "reason": self.reason,
            "set_by": self.set_by,
            "set_at": self.set_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Override:
        """The inverse of `to_dict`."""
        [kind] = [name for name in KINDS if name in data]
        return cls(
            id_servicio=int(data["id_servicio"]),
            kind=kind,
            value=str(data[kind]),
            until=datetime.fromisoformat(data["until"]),
            reason=str(data["reason"]),
            set_by=str(data["set_by"]),
            set_at=datetime.fromisoformat(data["set_at"]),
        )


def is_rate_policy(name: str) -> bool:
    """True for the name of a rate override's own policy (`rate_policy_name`): no plan is
    given one, or a client's override would rewrite that plan's speeds."""
    prefix = defaults.OVERRIDE_POLICY_PREFIX
    return name.startswith(prefix) and name[len(prefix) :].isdecimal()


def rate_policy_name(id_servicio: int) -> str:
    """The policy a client's `rate` override makes."""
    return f"{defaults.OVERRIDE_POLICY_PREFIX}{id_servicio}"


def read_rate(text: str) -> tuple[int, int]:
    """`"50M/10M"` (download/upload, as plan speeds are written) in kbps; `SpeedError` when
    it cannot be read."""
    down, slash, up = text.partition("/")
    if not slash:
        raise SpeedError(f"a rate is download/upload, such as 50M/10M, not {text!r}")
    return parse_speed(down.strip()), parse_speed(up.strip())


def parse_request(
    body: object,
    id_servicio: int,
    *,
    now: datetime,
    set_by: str,
    policies: Collection[str],
    max_days: int = defaults.OVERRIDE_MAX_DAYS,
) -> Override:
    """The override a request body asks for: exactly one of `policy` (one of `policies`, the
    plans' and the suspended clients'), `rate` or `estado`, with `until` (ISO-8601 with its
    offset, in the future, at most `max_days` ahead) and a short `reason`. `OverrideError`
    says what is wrong."""
    if not isinstance(body, Mapping):
        raise OverrideError('the body must be a JSON object such as {"rate": "50M/10M", ...}')
    unknown = sorted(set(body) - {*KINDS, "until", "reason"})
    if unknown:
        raise OverrideError(f"unknown fields: {', '.join(map(str, unknown))}")
    kinds = [kind for kind in KINDS if kind in body]
    if len(kinds) != 1:
        raise OverrideError("give exactly one of policy, rate or estado")
    [kind] = kinds
    value = _value(kind, body[kind], policies)
    return Override(
        id_servicio=id_servicio,
        kind=kind,
        value=value,
        until=_until(body.get("until"), now, max_days),
        reason=_reason(body.get("reason")),
        set_by=set_by,
        set_at=now,
    )


def _value(kind: str, raw: object, policies: Collection[str]) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise OverrideError(f"{kind} must be a non-empty string")
    value = raw.strip()
    if kind == POLICY and value not in policies:
        raise OverrideError(
            f"policy {value!r} is no plan's policy nor the suspended clients' one "
            "(GET /api/v1/plans lists them)"
        )
    if kind == RATE:
        try:
            read_rate(value)
        except SpeedError as exc:
            raise OverrideError(f"rate: {exc}") from None
    if kind == ESTADO:
        wanted = {name.lower(): name for name in ESTADOS}
        if value.lower() not in wanted:
            raise OverrideError(f"estado must be one of {', '.join(ESTADOS)}, not {value!r}")
        return wanted[value.lower()]
    return value


def _until(raw: object, now: datetime, max_days: int) -> datetime:
    if not isinstance(raw, str):
        raise OverrideError(
            "until is required: an ISO-8601 time with its offset, such as "
            '"2025-07-01T18:00:00-05:00"'
        )
    try:
        until = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise OverrideError(f"until is not an ISO-8601 time: {raw!r}") from None
    if until.utcoffset() is None:
        raise OverrideError(f"until must carry its offset (such as -05:00 or Z): {raw!r}")
    if until <= now:
        raise OverrideError(f"until is not in the future: {raw!r}")
    if until - now > timedelta(days=max_days):
        raise OverrideError(f"until is more than {max_days} days ahead (OVERRIDE_MAX_DAYS)")
    return until


def _reason(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise OverrideError("reason is required: a few words saying why")
    reason = " ".join(raw.split())
    if len(reason) > defaults.OVERRIDE_REASON_CHARS:
        raise OverrideError(f"reason is longer than {defaults.OVERRIDE_REASON_CHARS} characters")
    return reason


def active(overrides: Iterable[Override], now: datetime) -> dict[int, Override]:
    """The overrides still in force at `now`, by client."""
    return {item.id_servicio: item for item in overrides if item.until > now}


def rate_policies(overrides: Iterable[Override]) -> list[Policy]:
    """The policies the `rate` overrides need on the BQN, by name."""
    found = (item.rate_policy() for item in overrides)
    return sorted((policy for policy in found if policy is not None), key=lambda p: p.name)
