"""Send the operations of a set of changes to the BQN, one by one, and report each outcome.

Policies go first; a subscriber whose policy could not be put in place is not written (it would
otherwise get an unlimited "undefined" policy, which for the block policy means a suspended
client browsing free). After several transient failures in a row the BQN is taken to be down
and the rest is reported as not attempted. Credential errors (`ConfigError`) stop everything.
"""

from __future__ import annotations

import logging

from worker.bqn import BqnClient
from worker.diff import Changes
from worker.errors import ApiError, TransientError
from worker.model import Action, Kind, Operation, covers
from worker.report import Report

log = logging.getLogger(__name__)

# Consecutive transient failures after which the remaining operations are not attempted.
GIVE_UP_AFTER = 5


def apply_changes(changes: Changes, bqn: BqnClient, *, dry_run: bool = False) -> Report:
    """Apply `changes` (or, with `dry_run`, only count them) and return the report."""
    report = Report.of(changes, dry_run=dry_run)
    failed_policies: set[str] = set()
    transient_in_a_row = 0
    for op in changes.operations:
        if dry_run:
            report.record_success(op)
            continue
        policy = op.fields.get("policyRate")
        if op.kind is not Kind.POLICY and policy in failed_policies:
            report.record_failure(op, f"not sent: policy {policy} could not be put in place")
            continue
        if transient_in_a_row >= GIVE_UP_AFTER:
            report.record_failure(op, "not attempted: the BQN kept failing")
            continue
        try:
            send(bqn, op)
            if op.kind is Kind.POLICY:
                _check_taken(bqn, op, report)
        except (TransientError, ApiError) as exc:
            transient_in_a_row = transient_in_a_row + 1 if isinstance(exc, TransientError) else 0
            log.warning("failed: %s: %s", op.describe(), exc)
            report.record_failure(op, str(exc), transient=isinstance(exc, TransientError))
            if op.kind is Kind.POLICY:
                failed_policies.add(op.key)
            continue
        transient_in_a_row = 0
        log.info("done: %s", op.describe())
        report.record_success(op)
    return report


def _check_taken(bqn: BqnClient, op: Operation, report: Report) -> None:
    """Read a written policy back: a static policy (configured on the BQN itself) ignores REST
    writes. Its subscribers still use it, with the rates set on the BQN; the report says so."""
    held = bqn.get_policy(op.key)
    if held is None or not covers(held.fields, op.fields):
        report.notes.append(
            f"policy {op.key}: the BQN kept its own settings (a static policy configured on "
            "the BQN?); WispHub's speeds were not applied to it"
        )


def send(bqn: BqnClient, op: Operation) -> None:
    """Carry out one operation on the BQN."""
    writers = {
        Kind.POLICY: (bqn.create_policy, bqn.update_policy, None),
        Kind.SUBSCRIBER: (bqn.create_subscriber, bqn.update_subscriber, bqn.delete_subscriber),
        Kind.GROUP: (bqn.create_group, bqn.update_group, bqn.delete_group),
    }
    create, update, delete = writers[op.kind]
    if op.action is Action.CREATE:
        create(op.key, op.fields)
    elif op.action is Action.UPDATE:
        update(op.key, op.fields)
    elif delete is not None:
        delete(op.key)
    else:
        raise ValueError(f"the sync never deletes a {op.kind}")
