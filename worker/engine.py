"""The sync engine: read both sides, plan, apply. Shared by the CLI and the RQ jobs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from worker.apply import apply_changes
from worker.bqn import BqnClient
from worker.desired import Desired, Entries, Row, as_id, desired_state, is_own_group, map_client
from worker.diff import RULES, Changes, diff_policies, plan_client, plan_full
from worker.guard import guard_deletions
from worker.model import Footprint, Group, Kind, Policy, Skip, Subscriber
from worker.parallel import run_all
from worker.plans import Plan, Speeds, plan_from_wisphub, wanted_policies, with_overrides
from worker.policy_cache import PolicyCache
from worker.progress import Progress, silent
from worker.report import Report
from worker.settings import GuardLimits, MappingRules
from worker.wisphub import WispHubClient

log = logging.getLogger(__name__)
T = TypeVar("T")

# Looks a client's plan up by WispHub plan id (the job's version refreshes on a miss).
PlanLookup = Callable[[int], Plan | None]
# The client whose entry was last applied at each of some IPs.
OwnerLookup = Callable[[Sequence[str]], Mapping[str, int]]


@dataclass(frozen=True)
class FullSync:
    """A full sync's report, the desired state it worked towards and the plans it used."""

    report: Report
    desired: Desired
    plans: list[Plan]


@dataclass(frozen=True)
class ClientSync:
    """A one-client sync's report and the entries the client now has on the BQN.

    `current` is what a caller should remember as "last applied" for the client: the new
    entries when the sync went through, the previous ones when it did not or when the client's
    state could not be read, `None` when the client has no entry any more. `row` is the client as
    WispHub answered (`None`: it has no such client).
    """

    report: Report
    current: Footprint | None
    row: Row | None


def read_plans(wisphub: WispHubClient, overrides: Mapping[str, Speeds]) -> list[Plan]:
    """The plan catalogue: every plan with its speeds from WispHub or the override file."""
    plans = [
        plan_from_wisphub(
            summary, wisphub.plan_detail(int(summary["id"]), str(summary.get("tipo") or ""))
        )
        for summary in wisphub.list_plans()
        if as_id(summary.get("id")) is not None
    ]
    return with_overrides(plans, overrides)


def full_sync(
    wisphub: WispHubClient,
    bqn: BqnClient,
    rules: MappingRules,
    plans: Sequence[Plan],
    *,
    guard: GuardLimits,
    last_pass: int | None = None,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress = silent,
) -> FullSync:
    """Bring the whole BQN in line with a complete WispHub pass.

    The WispHub pass is read first and must be complete (else `IncompletePass` is raised and
    nothing is written); then the BQN is read once and the plan applied, policies first. The
    deletion guard may hold deletions back (see `worker.guard`); `last_pass` is the size of
    the last complete pass, when the caller knows it. `progress` hears how the WispHub pass
    and the operations advance.
    """
    rows = wisphub.list_clients(progress)
    desired = desired_state(rows, rules)
    subscribers, groups = bqn.list_subscribers(), bqn.list_groups()
    changes = plan_full(
        desired, subscribers, bqn.list_policies(), wanted_policies(plans, rules), groups
    )
    managed = sum(sub.assigned_by != RULES for sub in subscribers)
    managed += sum(is_own_group(group.name) for group in groups)
    changes, tripped = guard_deletions(
        changes, managed=managed, last_pass=last_pass, limits=guard, force=force
    )
    if tripped:
        log.warning("deletion guard: %s", tripped)
    log.info("full sync: %d operations for %d clients", len(changes.operations), len(rows))
    report = apply_changes(changes, bqn, dry_run=dry_run, progress=progress)
    report.guard = tripped
    report.plans_without_speeds = plans_without_speeds(plans)
    return FullSync(report, desired, list(plans))


def sync_policies(
    bqn: BqnClient, rules: MappingRules, plans: Sequence[Plan], *, dry_run: bool = False
) -> Report:
    """Put every plan's rate policy (and the block policy) in place on the BQN."""
    actual = bqn.list_policies()
    operations = tuple(diff_policies(wanted_policies(plans, rules), actual))
    report = apply_changes(Changes(operations, unchanged=0), bqn, dry_run=dry_run)
    report.plans_without_speeds = plans_without_speeds(plans)
    return report


def plans_without_speeds(plans: Sequence[Plan]) -> list[dict[str, str]]:
    """The plans left for the operator, with why, for reports."""
    return [
        {"plan": p.nombre, "policy": p.policy_name, "reason": p.problem or "no speeds"}
        for p in plans
        if p.speeds is None
    ]


def sync_client(
    id_servicio: int,
    wisphub: WispHubClient,
    bqn: BqnClient,
    rules: MappingRules,
    plan_of: PlanLookup,
    *,
    previous: Footprint | None = None,
    owners: OwnerLookup | None = None,
    policies: PolicyCache | None = None,
    dry_run: bool = False,
) -> ClientSync:
    """Bring one client in line: re-read it from WispHub and touch only its BQN entries.

    `previous` is what was last applied for this client, when the caller remembers it, so an
    IP change or a removal also clears the old entries. `owners` tells which other client
    holds an IP this one wants; those clients are re-read too, and the latest change wins the
    IP, as in a full sync. The policy the client needs is put in place first; with a
    `policies` cache, a policy seen or written lately is not read again.
    """
    # the client, and what the BQN holds where it was last applied, are read at once
    known = Held()
    row, _ = run_all(
        lambda read: read(),
        [lambda: wisphub.get_client(id_servicio), lambda: known.read(bqn, previous=previous)],
        2,
    )
    mapped = map_client(row, rules) if row is not None else None
    entries = mapped if isinstance(mapped, Entries) else Entries()
    rivals = _rivals(id_servicio, entries, wisphub, owners)
    used = {sub.policy_rate for sub in entries.subscribers}
    used |= {entries.group.policy_rate} if entries.group else set()
    cached = {name: policy for name in used if policies and (policy := policies.get(name))}
    known.read(bqn, entries=entries, policies=used - cached.keys())
    changes = plan_client(
        row,
        _present(known.subscribers.values()),
        rules,
        held_groups=_present(known.groups.values()),
        previous=previous,
        wanted_policies=wanted_policies(_client_plans(row, plan_of), rules),
        actual_policies=[*_present(known.policies.values()), *cached.values()],
        rivals=rivals,
    )
    report = apply_changes(changes, bqn, dry_run=dry_run)
    if policies is not None and not dry_run:
        _remember_policies(policies, known.policies.values(), changes, report)
    unknowable = isinstance(mapped, Skip) and bool(mapped.kept)
    if dry_run or not report.ok or unknowable:
        return ClientSync(report, previous, row)
    if rivals:  # remember only the IPs this client won
        won = desired_state([row, *rivals], rules).subscribers
        kept = tuple(sub for sub in entries.subscribers if won[sub.ip].id_servicio == id_servicio)
        entries = Entries(kept, entries.group)
    return ClientSync(report, footprint(entries), row)


@dataclass
class Held:
    """What the BQN holds at the keys a client job looks at (`None`: nothing there)."""

    subscribers: dict[str, Subscriber | None] = field(default_factory=dict)
    groups: dict[str, Group | None] = field(default_factory=dict)
    policies: dict[str, Policy | None] = field(default_factory=dict)

    def read(
        self,
        bqn: BqnClient,
        *,
        previous: Footprint | None = None,
        entries: Entries | None = None,
        policies: Iterable[str] = (),
    ) -> None:
        """Read, all at once, the keys of `previous` and `entries` and the `policies` not
        read yet."""
        ips = set(previous.ips) if previous else set()
        groups = {previous.group} if previous and previous.group else set()
        if entries is not None:
            ips |= {sub.ip for sub in entries.subscribers}
            groups |= {entries.group.name} if entries.group else set()
        reads = [
            *(
                (self.subscribers, ip, bqn.get_subscriber)
                for ip in sorted(ips - self.subscribers.keys())
            ),
            *((self.groups, name, bqn.get_group) for name in sorted(groups - self.groups.keys())),
            *(
                (self.policies, name, bqn.get_policy)
                for name in sorted(set(policies) - self.policies.keys())
            ),
        ]
        found = run_all(lambda read: read[2](read[1]), reads, bqn.concurrency)
        for (into, key, _), value in zip(reads, found, strict=True):
            into[key] = value


def _remember_policies(
    cache: PolicyCache, read: Iterable[Policy | None], changes: Changes, report: Report
) -> None:
    """Keep the policies read, and those written (as written), for the next jobs."""
    for policy in _present(read):
        cache.put(policy)
    failed = {failure.operation.key for failure in report.failures}
    for op in changes.operations:
        if op.kind is Kind.POLICY and op.key not in failed:
            cache.put(Policy(op.key, dict(op.fields)))


def _rivals(
    id_servicio: int, entries: Entries, wisphub: WispHubClient, owners: OwnerLookup | None
) -> list[Row]:
    """The current rows of the other clients last applied at the IPs this client wants."""
    if owners is None or not entries.subscribers:
        return []
    held_by = owners(sorted(sub.ip for sub in entries.subscribers))
    others = sorted({owner for owner in held_by.values() if owner != id_servicio})
    return _present(map(wisphub.get_client, others))


def footprint(entries: Entries) -> Footprint | None:
    """What to remember as applied for a client with these entries."""
    if not entries.subscribers and entries.group is None:
        return None
    return Footprint(
        subscriber_id=entries.subscribers[0].subscriber_id if entries.subscribers else "",
        ips=tuple(sub.ip for sub in entries.subscribers),
        group=entries.group.name if entries.group else None,
    )


def _present(items: Iterable[T | None]) -> list[T]:
    return [item for item in items if item is not None]


def _client_plans(row: Row | None, plan_of: PlanLookup) -> list[Plan]:
    """The client's plan, when its row names one the catalogue knows."""
    plan_field = row.get("plan_internet") if row is not None else None
    plan_id = as_id(plan_field.get("id")) if isinstance(plan_field, Mapping) else None
    plan = plan_of(plan_id) if plan_id is not None else None
    return [plan] if plan is not None else []
