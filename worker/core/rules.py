"""The rules the core works by, as plain values: how clients map to subscribers, and how
many deletions the guard lets through. `worker.settings` fills them from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from worker import defaults
from worker.core.client_overrides import Override

SUBSCRIBER_ID_FIELDS = ("nombre", "usuario", "id_servicio")
MULTI_IP_MODES = ("group", "subscribers", "skip")
# What suspended clients get: the zero-rate block policy, or a slow rate policy (so that they
# still reach the payment page, or the BQN's captive portal or notices).
BLOCK, THROTTLE = "block", "throttle"
SUSPENDED_ACTIONS = (BLOCK, THROTTLE)


@dataclass(frozen=True)
class MappingRules:
    """How WispHub clients become BQN subscribers."""

    subscriber_id_field: str = defaults.SUBSCRIBER_ID_FIELD
    block_policy: str = defaults.BLOCK_POLICY
    ipv6_prefix: int = defaults.IPV6_PREFIX
    multi_ip_mode: str = defaults.MULTI_IP_MODE
    suspended_action: str = BLOCK
    throttle_policy: str = defaults.THROTTLE_POLICY
    # (downlink, uplink) in kbps: the throttle policy's rates.
    suspended_rate: tuple[int, int] = (0, 0)
    # The temporary overrides in force, by client (`worker.core.client_overrides`): read from
    # Redis for each job and pass, never from the environment.
    overrides: Mapping[int, Override] = field(default_factory=dict, hash=False)
    # The places whose location groups clients join (`worker.core.locations.FIELDS`), in order,
    # and how many groups the BQN lets one address be in (besides `all-subscribers`).
    location_groups: tuple[str, ...] = ()
    groups_per_ip: int = defaults.GROUPS_PER_IP

    @property
    def suspended_policy(self) -> str:
        """The policy suspended clients are given: the block policy, or the throttle one."""
        return self.throttle_policy if self.suspended_action == THROTTLE else self.block_policy

    @property
    def reserved_policies(self) -> tuple[str, str]:
        """The policy names no plan is given, whichever the suspension mode (switching mode
        must not find a plan holding the other one's name)."""
        return (self.block_policy, self.throttle_policy)


@dataclass(frozen=True)
class GuardLimits:
    """The deletion guard's limits: up to `floor` deletions always pass; beyond, at most
    `max_fraction` of the managed entries, and a WispHub pass may be at most `max_fraction`
    shorter than the last complete one."""

    max_fraction: float = defaults.MAX_DELETE_FRACTION
    floor: int = defaults.DELETE_GUARD_FLOOR
