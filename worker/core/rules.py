"""The rules the core works by, as plain values: how clients map to subscribers, and how
many deletions the guard lets through. `worker.settings` fills them from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from worker import defaults

SUBSCRIBER_ID_FIELDS = ("nombre", "usuario", "id_servicio")
MULTI_IP_MODES = ("group", "subscribers", "skip")


@dataclass(frozen=True)
class MappingRules:
    """How WispHub clients become BQN subscribers."""

    subscriber_id_field: str = defaults.SUBSCRIBER_ID_FIELD
    block_policy: str = defaults.BLOCK_POLICY
    ipv6_prefix: int = defaults.IPV6_PREFIX
    multi_ip_mode: str = defaults.MULTI_IP_MODE


@dataclass(frozen=True)
class GuardLimits:
    """The deletion guard's limits: up to `floor` deletions always pass; beyond, at most
    `max_fraction` of the managed entries, and a WispHub pass may be at most `max_fraction`
    shorter than the last complete one."""

    max_fraction: float = defaults.MAX_DELETE_FRACTION
    floor: int = defaults.DELETE_GUARD_FLOOR
