"""The sync engine: read both sides, plan, apply. Shared by the CLI and (later) the RQ jobs."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from worker.apply import apply_plan
from worker.bqn import BqnClient
from worker.desired import Desired, Row, desired_state, map_client
from worker.diff import plan_client, plan_full
from worker.model import Skip, Subscriber
from worker.report import Report
from worker.settings import MappingRules
from worker.wisphub import WispHubClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FullSync:
    """A full sync's report and the desired state it worked towards."""

    report: Report
    desired: Desired


@dataclass(frozen=True)
class ClientSync:
    """A one-client sync's report and the entry the client now has on the BQN.

    `current` is what a caller should remember as "last applied" for the client: the new entry
    when the sync went through, the previous one when it did not or when the client's state
    could not be read, `None` when the client has no entry any more. `row` is the client as
    WispHub answered (`None`: it has no such client).
    """

    report: Report
    current: Subscriber | None
    row: Row | None


def full_sync(
    wisphub: WispHubClient, bqn: BqnClient, rules: MappingRules, *, dry_run: bool = False
) -> FullSync:
    """Bring the whole BQN in line with a complete WispHub pass.

    The WispHub pass is read first and must be complete (else `IncompletePass` is raised and
    nothing is written); then the BQN is read once and the plan applied.
    """
    rows = wisphub.list_clients()
    desired = desired_state(rows, rules)
    plan = plan_full(desired, bqn.list_subscribers(), bqn.list_policies(), rules)
    log.info("full sync planned %d operations for %d clients", len(plan.operations), len(rows))
    return FullSync(apply_plan(plan, bqn, dry_run=dry_run), desired)


def sync_client(
    id_servicio: int,
    wisphub: WispHubClient,
    bqn: BqnClient,
    rules: MappingRules,
    *,
    previous: Subscriber | None = None,
    dry_run: bool = False,
) -> ClientSync:
    """Bring one client in line: re-read it from WispHub and touch only its BQN entries.

    `previous` is the entry last applied for this client, when the caller remembers it, so an
    IP change or a removal also clears the old entry.
    """
    row = wisphub.get_client(id_servicio)
    mapped = map_client(row, rules) if row is not None else None
    wanted = mapped if isinstance(mapped, Subscriber) else None
    ips = {sub.ip for sub in (wanted, previous) if sub is not None}
    held = [sub for sub in map(bqn.get_subscriber, sorted(ips)) if sub is not None]
    policies = []
    if wanted is not None and wanted.policy_rate == rules.block_policy:
        policies = [policy for policy in [bqn.get_policy(rules.block_policy)] if policy]
    plan = plan_client(row, held, policies, rules, previous=previous)
    report = apply_plan(plan, bqn, dry_run=dry_run)
    unknowable = isinstance(mapped, Skip) and mapped.keep
    if dry_run or not report.ok or unknowable:
        return ClientSync(report, previous, row)
    return ClientSync(report, wanted, row)
