"""Plain data shared by the sync engine: desired and actual BQN entries, and operations.

Nothing here does I/O. Operations are values: the diff produces them, the applier sends them,
and tests apply them to an in-memory state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from worker.core import phrases


class Action(StrEnum):
    """What an operation does to a BQN entry."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Kind(StrEnum):
    """Which BQN collection an operation touches."""

    POLICY = "policy"
    SUBSCRIBER = "subscriber"
    GROUP = "group"


@dataclass(frozen=True)
class Subscriber:
    """A BQN subscriber as the sync wants it (or as the BQN holds it).

    Only `subscriber_id` and `policy_rate` are managed; `assigned_by` is the BQN's read-only
    `policyAssignedBy` and `id_servicio` names the WispHub client the entry comes from.
    """

    ip: str
    subscriber_id: str
    policy_rate: str
    id_servicio: int | None = None
    assigned_by: str | None = None

    def managed_fields(self) -> dict[str, str]:
        """The BQN fields the sync owns, as sent on the wire."""
        return {"subscriberId": self.subscriber_id, "policyRate": self.policy_rate}


@dataclass(frozen=True)
class Group:
    """A BQN subscriber group: several addresses or blocks shaped as one, by one policy; or,
    without a policy, a location group (`worker.core.locations`), which only gathers them.

    The sync names its clients' groups `wisphub-<id_servicio>`.
    """

    name: str
    members: tuple[str, ...] = ()
    ranges: tuple[str, ...] = ()
    policy_rate: str = ""
    id_servicio: int | None = None

    def managed_fields(self) -> dict[str, Any]:
        """The BQN fields the sync owns, as sent on the wire: no policy for a location group
        (one set on the BQN by hand is kept)."""
        fields: dict[str, Any] = {
            "subscriberMembers": list(self.members),
            "subscriberRanges": list(self.ranges),
        }
        if self.policy_rate:
            fields["policyRate"] = self.policy_rate
        return fields

    def same_as(self, other: Group) -> bool:
        """Equal in the managed fields (member order does not matter)."""
        return (
            sorted(self.members) == sorted(other.members)
            and sorted(self.ranges) == sorted(other.ranges)
            and (not self.policy_rate or self.policy_rate == other.policy_rate)
        )


@dataclass(frozen=True)
class Footprint:
    """What the sync last applied for one client: its subscriber entries (one subscriberId
    at one or more IPs) and its group, if it has one."""

    subscriber_id: str = ""
    ips: tuple[str, ...] = ()
    group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"subscriber_id": self.subscriber_id, "ips": list(self.ips), "group": self.group}


@dataclass(frozen=True)
class Policy:
    """A BQN rate policy: its name and body (`policyId`, `rateLimitDownlink`, ...).

    A desired policy's body holds only the fields the sync manages; an actual one holds what
    the BQN showed, defaults and fields set by hand included.
    """

    name: str
    fields: dict[str, Any] = field(default_factory=dict, compare=True)

    @property
    def undefined(self) -> bool:
        """A placeholder the BQN made for a name a subscriber used: it has no rates."""
        return "rateLimitDownlink" not in self.fields and "rateLimitUplink" not in self.fields


def covers(held: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """True when every field in `wanted` has the same value in `held` (nested objects are
    compared on `wanted`'s keys only, so fields set by hand or echoed as defaults are ignored)."""
    for key, value in wanted.items():
        have = held.get(key)
        if isinstance(value, dict):
            if not isinstance(have, dict) or not covers(have, value):
                return False
        elif have != value:
            return False
    return True


def merged(held: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The body to PUT: `wanted`'s fields, with nested objects completed from `held`, so that a
    BQN that replaces whole objects on PUT still keeps burst or ACM settings made by hand."""
    body: dict[str, Any] = {}
    for key, value in wanted.items():
        have = held.get(key)
        body[key] = (
            {**have, **value} if isinstance(value, dict) and isinstance(have, dict) else value
        )
    return body


@dataclass(frozen=True)
class Operation:
    """One write to the BQN, as plain data.

    `fields` is the request body (empty for deletes); `id_servicio` is the WispHub client the
    write is for, when there is one, so reports can name it; `target` is the BQN it was sent
    to, when the service keeps several.
    """

    action: Action
    kind: Kind
    key: str
    fields: dict[str, Any] = field(default_factory=dict)
    id_servicio: int | None = None
    target: str | None = None

    def describe(self) -> str:
        """A one-line, human-readable form for plans and logs (no personal data)."""
        text = f"{self.action} {self.kind} {self.key}"
        if self.kind is not Kind.POLICY and "policyRate" in self.fields:
            text += f" policy={self.fields['policyRate']}"
        if self.id_servicio is not None:
            text += f" (client {self.id_servicio})"
        if self.target is not None:
            text += f" on {self.target}"
        return text

    def named(self) -> str:
        """What the operation does to which entry, in one of `worker.core.phrases`' sentences
        (which a page says in its language): `update subscriber 10.0.0.1`."""
        return _NAMED[self.action, self.kind].format(key=self.key)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "action": str(self.action),
            "kind": str(self.kind),
            "key": self.key,
            "fields": self.fields,
            "id_servicio": self.id_servicio,
        } | ({} if self.target is None else {"target": self.target})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Operation:
        """The operation `to_dict` made `data` of (a failure's dict holds one, among its own
        keys)."""
        return cls(
            Action(data["action"]),
            Kind(data["kind"]),
            data["key"],
            dict(data["fields"]),
            data["id_servicio"],
            data.get("target"),
        )


@dataclass(frozen=True)
class Skip:
    """A WispHub client the sync could not turn into BQN entries, and why.

    `kept` lists the client's addresses when they were valid but its state could not be known:
    the BQN entries there (and the client's group) must be left as they are.
    """

    id_servicio: int | None
    ip: str
    reason: str
    kept: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id_servicio": self.id_servicio,
            "ip": self.ip,
            "reason": self.reason,
            "kept": list(self.kept),
        }


@dataclass(frozen=True)
class Conflict:
    """Several non-cancelled clients claim one IP; `winner` gets it, `losers` are skipped."""

    ip: str
    winner: int
    losers: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ip": self.ip, "winner": self.winner, "losers": list(self.losers)}


# Each operation's sentence (`Operation.named`): the sync never deletes a policy.
_NAMED = {
    (Action.CREATE, Kind.SUBSCRIBER): phrases.CREATE_SUBSCRIBER,
    (Action.UPDATE, Kind.SUBSCRIBER): phrases.UPDATE_SUBSCRIBER,
    (Action.DELETE, Kind.SUBSCRIBER): phrases.DELETE_SUBSCRIBER,
    (Action.CREATE, Kind.POLICY): phrases.CREATE_POLICY,
    (Action.UPDATE, Kind.POLICY): phrases.UPDATE_POLICY,
    (Action.CREATE, Kind.GROUP): phrases.CREATE_GROUP,
    (Action.UPDATE, Kind.GROUP): phrases.UPDATE_GROUP,
    (Action.DELETE, Kind.GROUP): phrases.DELETE_GROUP,
}
