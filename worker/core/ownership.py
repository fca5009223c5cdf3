"""Who holds each BQN address, decided from fresh WispHub rows (pure: no I/O).

A BQN subscriber is keyed by its address, so the address is the unit the sync decides by. For
a set of addresses, the rows of every client known to claim them, read again just now, say who
rightfully holds each one: the non-cancelled claimant with the latest `ultimo_cambio` (tie: the
higher `id_servicio`), as in a full sync. An address that no fresh row claims has no rightful
owner and its entry goes; one claimed by a client whose state could not be read is left alone.

The claimants found are kept (`Settlement.claims`, rightful owner first) so that the next job
touching an address knows whom to read again before writing or deleting there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from worker.core.client_overrides import is_rate_policy
from worker.core.desired import Desired, PolicyNames, Row, desired_state
from worker.core.diff import Changes, diff_groups, diff_policies, diff_subscribers
from worker.core.model import Action, Footprint, Group, Operation, Policy, Subscriber
from worker.core.report import Report
from worker.core.rules import MappingRules

# Each address's claimants, its rightful owner (if any) first.
Claims = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class Settlement:
    """What brings some addresses (and groups) in line, and who claims each address now."""

    changes: Changes
    claims: dict[str, tuple[int, ...]]
    desired: Desired
    addresses: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


def claims_in(desired: Desired, addresses: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """Each address's claimants in `desired`: the winner first, then the clients that lost it,
    then the clients whose state could not be read that hold it; no entry when nobody does."""
    found: dict[str, list[int]] = defaultdict(list)
    for ip, sub in desired.subscribers.items():
        if sub.id_servicio is not None:
            found[ip].append(sub.id_servicio)
    for conflict in desired.conflicts:
        found[conflict.ip].extend(conflict.losers)
    for skip in desired.skips:
        for ip in skip.kept:
            if skip.id_servicio is not None and skip.id_servicio not in found[ip]:
                found[ip].append(skip.id_servicio)
    return {ip: tuple(found[ip]) for ip in addresses if found.get(ip)}


def settle(
    rows: Iterable[Row],
    addresses: Collection[str],
    held: Iterable[Subscriber],
    rules: MappingRules,
    *,
    names: PolicyNames | None = None,
    groups: Collection[str] = (),
    held_groups: Iterable[Group] = (),
    wanted_policies: Iterable[Policy] = (),
    actual_policies: Iterable[Policy] = (),
) -> Settlement:
    """The operations that give each of `addresses` (and each of the sync's `groups`) the
    entry `rows` say it should have; `held` and `held_groups` are what the BQN holds there now.

    `rows` must include every client known to claim one of the addresses, read just now: an
    address none of them claims is deleted. The policies the written entries use are put in
    place first, when they are among `wanted_policies`.
    """
    desired = desired_state(rows, rules, names)
    wanted = {ip: sub for ip, sub in desired.subscribers.items() if ip in addresses}
    subscriber_ops, unchanged = diff_subscribers(
        wanted, [sub for sub in held if sub.ip in addresses], desired.protected
    )
    wanted_groups = {name: group for name, group in desired.groups.items() if name in groups}
    group_ops, unchanged_groups = diff_groups(
        wanted_groups,
        [group for group in held_groups if group.name in groups],
        desired.protected_groups,
    )
    used = {sub.policy_rate for sub in wanted.values()}
    used |= {group.policy_rate for group in wanted_groups.values()}
    policy_ops = missing_policies(
        diff_policies([p for p in wanted_policies if p.name in used], actual_policies),
        actual_policies,
    )
    changes = Changes(
        operations=(*policy_ops, *subscriber_ops, *group_ops),
        unchanged=unchanged + unchanged_groups,
        clients=desired.clients,
        skips=desired.skips,
        conflicts=tuple(c for c in desired.conflicts if c.ip in addresses),
    )
    return Settlement(
        changes,
        claims_in(desired, addresses),
        desired,
        tuple(sorted(addresses)),
        tuple(sorted(groups)),
    )


def missing_policies(
    operations: Iterable[Operation], actual_policies: Iterable[Policy]
) -> list[Operation]:
    """Of the policy writes a client job would make, those that put a missing policy in place:
    a create, or the completion of an "undefined" placeholder. Correcting the speeds of a
    plan's policy the BQN holds belongs to the plan refresh, the poller and the reconcile, which
    read the plan catalogue as it is now: a job that began before a refresh holds the old one,
    and would write the old speeds back (issue 20, item 4). A rate override's own policy is
    its client's alone, its rate read with the override: the job writes it as it is."""
    held = {policy.name: policy for policy in actual_policies}
    return [
        op
        for op in operations
        if op.action is Action.CREATE
        or is_rate_policy(op.key)
        or (op.key in held and held[op.key].undefined)
    ]


def footprint_after(
    id_servicio: int,
    previous: Footprint | None,
    settlement: Settlement,
    report: Report,
) -> Footprint | None:
    """What to remember of a client after a job settled some addresses and groups for it: the
    addresses it claims now, plus any where an operation failed (the BQN may still hold its
    old entry there, so the next job looks again); its group likewise."""
    failed = {failure.operation.key for failure in report.failures}
    ips = tuple(
        ip
        for ip in settlement.addresses
        if id_servicio in settlement.claims.get(ip, ()) or ip in failed
    )
    desired = settlement.desired
    wanted_group = next((name for name in settlement.groups if name in desired.groups), None)
    kept_group = (
        previous.group
        if previous is not None
        and previous.group is not None
        and (previous.group in failed or previous.group in desired.protected_groups)
        else None
    )
    group = wanted_group or kept_group
    if not ips and group is None:
        return None
    own = [
        sub.subscriber_id for sub in desired.subscribers.values() if sub.id_servicio == id_servicio
    ]
    subscriber_id = own[0] if own else (previous.subscriber_id if previous else "")
    return Footprint(subscriber_id=subscriber_id, ips=ips, group=group)


def remembered(
    desired: Desired,
    before: Mapping[int, Footprint],
    before_claims: Claims,
    *,
    leftover: Iterable[str] = (),
    leftover_groups: Iterable[str] = (),
    touched: Collection[int] = (),
) -> tuple[dict[int, Footprint], dict[str, tuple[int, ...]]]:
    """What to remember after a full sync of `desired`: each client's footprint and each
    address's claimants. `before` and `before_claims` are what is kept now (the claimants of
    the addresses below at least).

    `leftover` are the addresses the BQN still holds that `desired` gives nobody (a deletion
    held back by the guard, refused, or not confirmed): their claimants stay, so the next job
    there reads them again; `leftover_groups` likewise. The clients jobs `touched` while the
    sync ran may have moved since its pass: what those jobs recorded is kept beside it."""
    claims = claims_in(desired, {*desired.subscribers, *desired.protected})
    kept = [ip for ip in leftover if ip not in claims]
    kept += [ip for key in touched if key in before for ip in before[key].ips]
    for ip in kept:
        extra = [key for key in before_claims.get(ip, ()) if key not in claims.get(ip, ())]
        if extra:
            claims[ip] = (*claims.get(ip, ()), *extra)
    ips: dict[int, list[str]] = defaultdict(list)
    for ip in sorted(claims):
        for id_servicio in claims[ip]:
            ips[id_servicio].append(ip)
    groups = {g.id_servicio: g.name for g in desired.groups.values() if g.id_servicio is not None}
    kept_groups = set(leftover_groups) | desired.protected_groups
    for id_servicio, footprint in before.items():
        keep = footprint.group in kept_groups or id_servicio in touched
        if footprint.group and keep and id_servicio not in groups:
            groups[id_servicio] = footprint.group
    names = {
        sub.id_servicio: sub.subscriber_id
        for sub in desired.subscribers.values()
        if sub.id_servicio is not None
    }
    applied = {}
    for id_servicio in ips.keys() | groups.keys():
        previous = before.get(id_servicio)
        subscriber_id = names.get(id_servicio) or (previous.subscriber_id if previous else "")
        applied[id_servicio] = Footprint(
            subscriber_id, tuple(ips.get(id_servicio, ())), groups.get(id_servicio)
        )
    return applied, claims
