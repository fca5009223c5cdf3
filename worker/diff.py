"""Diff desired against actual BQN state into operations (pure: no I/O).

Subscribers are keyed by IP and compared on `subscriberId` and `policyRate` only. A BQN
subscriber the desired state lacks is deleted unless its policy was assigned by the BQN's own
`rules` or its IP is protected. Policies are created or corrected, never deleted, and always
come before the subscribers in the returned list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from worker.desired import Desired, Row, block_policy, desired_state
from worker.model import Action, Conflict, Kind, Operation, Policy, Skip, Subscriber
from worker.settings import MappingRules

RULES = "rules"


@dataclass(frozen=True)
class Plan:
    """The operations that bring the BQN in line, and what the mapping could not place."""

    operations: tuple[Operation, ...]
    unchanged: int = 0
    clients: int = 0
    skips: tuple[Skip, ...] = ()
    conflicts: tuple[Conflict, ...] = ()


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


def diff_policies(desired: Iterable[Policy], actual: Iterable[Policy]) -> list[Operation]:
    """Create missing policies and correct the managed fields of differing ones (never delete).

    A policy the BQN lists without rates (an "undefined" placeholder) differs, so it is
    completed with PUT; fields the sync does not manage (burst, ACM, ...) are left as they are.
    """
    held = {policy.name: policy for policy in actual}
    operations = []
    for want in desired:
        have = held.get(want.name)
        if have is None:
            operations.append(
                Operation(Action.CREATE, Kind.POLICY, want.name, want.managed_fields())
            )
        elif have.managed_fields() != want.managed_fields():
            operations.append(
                Operation(Action.UPDATE, Kind.POLICY, want.name, want.managed_fields())
            )
    return operations


def plan_full(
    desired: Desired,
    actual_subscribers: Iterable[Subscriber],
    actual_policies: Iterable[Policy],
    rules: MappingRules,
) -> Plan:
    """Everything a full reconcile must do, policies first."""
    policy_ops = diff_policies([block_policy(rules)], actual_policies)
    subscriber_ops, unchanged = diff_subscribers(
        desired.subscribers, actual_subscribers, desired.protected
    )
    return Plan(
        operations=(*policy_ops, *subscriber_ops),
        unchanged=unchanged,
        clients=desired.clients,
        skips=desired.skips,
        conflicts=desired.conflicts,
    )


def plan_client(
    row: Row | None,
    held: Iterable[Subscriber],
    actual_policies: Iterable[Policy],
    rules: MappingRules,
    *,
    previous: Subscriber | None = None,
) -> Plan:
    """What brings one client in line.

    `row` is the client's current WispHub row (`None`: WispHub no longer has it); `held` is what
    the BQN holds at the IPs the client has or last had; `previous` is the entry last applied
    for it. An entry at another IP is deleted only when it is still the one last applied
    (same IP and subscriberId): another client may have taken that IP since.
    """
    desired = desired_state([row] if row is not None else [], rules)
    wanted_ip = next(iter(desired.subscribers), None)
    relevant = [
        sub
        for sub in held
        if sub.ip == wanted_ip
        or (
            previous is not None
            and sub.ip == previous.ip
            and sub.subscriber_id == previous.subscriber_id
        )
    ]
    subscriber_ops, unchanged = diff_subscribers(desired.subscribers, relevant, desired.protected)
    blocks = any(op.fields.get("policyRate") == rules.block_policy for op in subscriber_ops)
    policy_ops = diff_policies([block_policy(rules)], actual_policies) if blocks else []
    return Plan(
        operations=(*policy_ops, *subscriber_ops),
        unchanged=unchanged,
        clients=desired.clients,
        skips=desired.skips,
    )


def _write(action: Action, want: Subscriber) -> Operation:
    return Operation(action, Kind.SUBSCRIBER, want.ip, want.managed_fields(), want.id_servicio)
