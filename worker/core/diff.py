"""Diff desired against actual BQN state into operations (pure: no I/O).

Subscribers are keyed by IP and compared on `subscriberId` and `policyRate` only. A BQN
subscriber the desired state lacks is deleted unless its policy was assigned by the BQN's own
`rules` or its IP is protected. Only the sync's own groups (`wisphub-<id_servicio>`) are
created, changed or deleted. Policies are created or corrected, never deleted, and always come
before the subscribers and groups in the returned list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from worker.core.desired import Desired, is_own_group
from worker.core.model import (
    Action,
    Conflict,
    Group,
    Kind,
    Operation,
    Policy,
    Skip,
    Subscriber,
    covers,
    merged,
)

RULES = "rules"


@dataclass(frozen=True)
class Changes:
    """The operations that bring the BQN in line, and what the mapping could not place."""

    operations: tuple[Operation, ...]
    unchanged: int = 0
    clients: int = 0
    skips: tuple[Skip, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    unused_policies: tuple[str, ...] = ()


def diff_subscribers(
    desired: Mapping[str, Subscriber],
    actual: Iterable[Subscriber],
    protected: frozenset[str] = frozenset(),
) -> tuple[list[Operation], int]:
    """Create/update/delete operations for subscribers, and how many already match."""
    held: dict[str, Subscriber] = {}
    for sub in actual:
        held.setdefault(sub.ip, sub)
    operations: list[Operation] = []
    unchanged = 0
    for ip, want in desired.items():
        have = held.get(ip)
        if have is None:
            operations.append(_write(Action.CREATE, want))
        elif (have.subscriber_id, have.policy_rate) != (want.subscriber_id, want.policy_rate):
            operations.append(_write(Action.UPDATE, want))
        else:
            unchanged += 1
    operations.extend(
        Operation(Action.DELETE, Kind.SUBSCRIBER, ip)
        for ip, have in held.items()
        if ip not in desired and ip not in protected and have.assigned_by != RULES
    )
    return operations, unchanged


def diff_groups(
    desired: Mapping[str, Group],
    actual: Iterable[Group],
    protected: frozenset[str] = frozenset(),
) -> tuple[list[Operation], int]:
    """Create/update/delete operations for the sync's own subscriber groups (named
    `wisphub-<id_servicio>`); other groups, `all-subscribers` included, are never touched."""
    held = {group.name: group for group in actual if is_own_group(group.name)}
    operations: list[Operation] = []
    unchanged = 0
    for name, want in desired.items():
        have = held.get(name)
        fields = want.managed_fields()
        if have is None:
            operations.append(Operation(Action.CREATE, Kind.GROUP, name, fields, want.id_servicio))
        elif not want.same_as(have):
            operations.append(Operation(Action.UPDATE, Kind.GROUP, name, fields, want.id_servicio))
        else:
            unchanged += 1
    operations.extend(
        Operation(Action.DELETE, Kind.GROUP, name)
        for name in held
        if name not in desired and name not in protected
    )
    return operations, unchanged


def diff_policies(desired: Iterable[Policy], actual: Iterable[Policy]) -> list[Operation]:
    """Create missing policies and correct the managed fields of differing ones (never delete).

    Only the fields the sync manages are compared, so defaults the BQN echoes and settings made
    by hand (burst, ACM, ...) neither cause writes nor get lost: a correction PUTs the managed
    fields with each rate-limit object completed from what the BQN holds. An "undefined"
    placeholder has no rates, so it differs and is completed.
    """
    held = {policy.name: policy for policy in actual}
    operations = []
    for want in desired:
        have = held.get(want.name)
        if have is None:
            operations.append(Operation(Action.CREATE, Kind.POLICY, want.name, want.fields))
        elif not covers(have.fields, want.fields):
            body = merged(have.fields, want.fields)
            operations.append(Operation(Action.UPDATE, Kind.POLICY, want.name, body))
    return operations


def unused_policies(
    actual_policies: Iterable[Policy],
    desired: Desired,
    actual_subscribers: Iterable[Subscriber],
    keep: Iterable[str],
) -> tuple[str, ...]:
    """BQN policies no subscriber or group will use (listed for the operator, never deleted)."""
    used = used_policies(desired)
    used |= {sub.policy_rate for sub in actual_subscribers if sub.assigned_by == RULES}
    used |= set(keep)
    return tuple(sorted(p.name for p in actual_policies if p.name not in used))


def used_policies(desired: Desired) -> set[str]:
    """The policies the desired subscribers and groups name."""
    return {sub.policy_rate for sub in desired.subscribers.values()} | {
        group.policy_rate for group in desired.groups.values()
    }


def plan_full(
    desired: Desired,
    actual_subscribers: Iterable[Subscriber],
    actual_policies: Iterable[Policy],
    wanted_policies: Iterable[Policy],
    actual_groups: Iterable[Group] = (),
) -> Changes:
    """Everything a full reconcile must do, policies first."""
    actual_subscribers, actual_policies = list(actual_subscribers), list(actual_policies)
    wanted_policies = list(wanted_policies)
    policy_ops = diff_policies(wanted_policies, actual_policies)
    subscriber_ops, unchanged = diff_subscribers(
        desired.subscribers, actual_subscribers, desired.protected
    )
    group_ops, unchanged_groups = diff_groups(
        desired.groups, actual_groups, desired.protected_groups
    )
    return Changes(
        operations=(*policy_ops, *subscriber_ops, *group_ops),
        unchanged=unchanged + unchanged_groups,
        clients=desired.clients,
        skips=desired.skips,
        conflicts=desired.conflicts,
        unused_policies=unused_policies(
            actual_policies, desired, actual_subscribers, (p.name for p in wanted_policies)
        ),
    )


def _write(action: Action, want: Subscriber) -> Operation:
    return Operation(action, Kind.SUBSCRIBER, want.ip, want.managed_fields(), want.id_servicio)
