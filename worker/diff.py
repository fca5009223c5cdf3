"""Diff desired against actual BQN state into operations (pure: no I/O).

Subscribers are keyed by IP and compared on `subscriberId` and `policyRate` only. A BQN
subscriber the desired state lacks is deleted unless its policy was assigned by the BQN's own
`rules` or its IP is protected. Policies are created or corrected, never deleted, and always
come before the subscribers in the returned list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from worker.desired import Desired, Row, desired_state
from worker.model import (
    Action,
    Conflict,
    Kind,
    Operation,
    Policy,
    Skip,
    Subscriber,
    covers,
    merged,
)
from worker.settings import MappingRules

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
    desired: Mapping[str, Subscriber],
    actual_subscribers: Iterable[Subscriber],
    keep: Iterable[str],
) -> tuple[str, ...]:
    """BQN policies no subscriber will use (listed for the operator, never deleted)."""
    used = {sub.policy_rate for sub in desired.values()}
    used |= {sub.policy_rate for sub in actual_subscribers if sub.assigned_by == RULES}
    used |= set(keep)
    return tuple(sorted(p.name for p in actual_policies if p.name not in used))


def plan_full(
    desired: Desired,
    actual_subscribers: Iterable[Subscriber],
    actual_policies: Iterable[Policy],
    wanted_policies: Iterable[Policy],
) -> Changes:
    """Everything a full reconcile must do, policies first."""
    actual_subscribers, actual_policies = list(actual_subscribers), list(actual_policies)
    wanted_policies = list(wanted_policies)
    policy_ops = diff_policies(wanted_policies, actual_policies)
    subscriber_ops, unchanged = diff_subscribers(
        desired.subscribers, actual_subscribers, desired.protected
    )
    return Changes(
        operations=(*policy_ops, *subscriber_ops),
        unchanged=unchanged,
        clients=desired.clients,
        skips=desired.skips,
        conflicts=desired.conflicts,
        unused_policies=unused_policies(
            actual_policies,
            desired.subscribers,
            actual_subscribers,
            (p.name for p in wanted_policies),
        ),
    )


def plan_client(
    row: Row | None,
    held: Iterable[Subscriber],
    rules: MappingRules,
    *,
    previous: Subscriber | None = None,
    wanted_policies: Iterable[Policy] = (),
    actual_policies: Iterable[Policy] = (),
) -> Changes:
    """What brings one client in line.

    `row` is the client's current WispHub row (`None`: WispHub no longer has it); `held` is what
    the BQN holds at the IPs the client has or last had; `previous` is the entry last applied
    for it. An entry at another IP is deleted only when it is still the one last applied
    (same IP and subscriberId): another client may have taken that IP since. The policy the
    client's entry uses is put in place first, when it is among `wanted_policies`.
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
    used = {sub.policy_rate for sub in desired.subscribers.values()}
    policy_ops = diff_policies([p for p in wanted_policies if p.name in used], actual_policies)
    return Changes(
        operations=(*policy_ops, *subscriber_ops),
        unchanged=unchanged,
        clients=desired.clients,
        skips=desired.skips,
    )


def _write(action: Action, want: Subscriber) -> Operation:
    return Operation(action, Kind.SUBSCRIBER, want.ip, want.managed_fields(), want.id_servicio)
