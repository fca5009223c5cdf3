"""Send the operations of a set of changes to the BQN and report each outcome.

Operations go in phases, one per kind in the order the diff lists them (policies, subscribers,
groups); a phase starts once the one before has ended, so every policy is in place before the
subscribers that use it. Within a phase up to `BQN_CONCURRENCY` operations are in flight at
once, over the client's pooled keep-alive connections. A subscriber whose policy could not be
put in place is not written (it would otherwise get an unlimited "undefined" policy, which for
the block policy means a suspended client browsing free). After several transient failures in
a row the BQN is taken to be down and the rest is reported as not attempted. Credential errors
(`ConfigError`) stop everything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from itertools import groupby

from worker import defaults
from worker.clients.bqn import BqnClient
from worker.clients.parallel import run_all
from worker.core import phrases
from worker.core.diff import Changes
from worker.core.errors import ApiError, TransientError, Unavailable
from worker.core.model import Action, Kind, Operation, covers
from worker.core.progress import Progress, Ticker, silent
from worker.core.report import Report

log = logging.getLogger(__name__)

# Holds a deletion's key while it is sent, and says whether it may still go.
DeletionCheck = Callable[[Operation], AbstractContextManager[bool]]


@dataclass(frozen=True)
class Outcome:
    """How one operation went: `error` is None on success; `note` is for the report."""

    op: Operation
    error: str | None = None
    transient: bool = False
    note: str | None = None
    # not sent, not counted: a deletion the check held back (its note says so), or an
    # operation left to the job that applied its client meanwhile
    kept: bool = False


@dataclass
class Breaker:
    """Counts transient failures in a row, across the threads sending operations."""

    limit: int
    in_a_row: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tripped(self) -> bool:
        with self.lock:
            return self.in_a_row >= self.limit

    def record(self, *, transient_failure: bool) -> None:
        with self.lock:
            self.in_a_row = self.in_a_row + 1 if transient_failure else 0


def apply_changes(
    changes: Changes,
    bqn: BqnClient,
    *,
    dry_run: bool = False,
    progress: Progress = silent,
    check_deletion: DeletionCheck | None = None,
    taken: Callable[[int], bool] | None = None,
) -> Report:
    """Apply `changes` (or, with `dry_run`, only count them) and return the report;
    `progress` hears of each operation done. Each deletion is sent inside `check_deletion`,
    when given, and only if it allows it. An operation for a client `taken` says a job has
    applied since `changes` were worked out is left out (its state is newer than theirs), and
    counted in a note."""
    report = Report.of(changes, dry_run=dry_run)
    if dry_run:
        for op in changes.operations:
            report.record_success(op)
        return report
    breaker = Breaker(defaults.BQN_GIVE_UP_AFTER)
    applied = Ticker(progress, "operations applied", len(changes.operations))
    failed_policies: dict[str, bool] = {}  # name -> whether the failure was transient
    left = 0  # operations left to the jobs that took their clients
    for kind, ops in phases(changes.operations):
        ready = []
        for op in ops:
            policy = op.fields.get("policyRate")
            if kind is not Kind.POLICY and policy in failed_policies:
                report.record_failure(
                    op,
                    phrases.POLICY_NOT_PLACED.format(policy=policy),
                    transient=failed_policies[policy],
                )
                applied.tick()
            else:
                ready.append(op)

        def work(op: Operation) -> Outcome:
            if taken is not None and op.id_servicio is not None and taken(op.id_servicio):
                outcome = Outcome(op, kept=True)
            else:
                outcome = attempt(bqn, op, breaker, check_deletion)
            applied.tick()
            return outcome

        for outcome in run_all(work, ready, bqn.concurrency):
            left += outcome.kept and outcome.note is None
            if outcome.note:
                report.notes.append(outcome.note)
            if outcome.kept:
                report.drop(outcome.op)
                continue
            if outcome.error is None:
                report.record_success(outcome.op)
                continue
            report.record_failure(outcome.op, outcome.error, transient=outcome.transient)
            if kind is Kind.POLICY:
                failed_policies[outcome.op.key] = outcome.transient
    if left:
        report.notes.append(phrases.LEFT_TO_JOBS.format(count=left))
    return report


def phases(operations: Iterable[Operation]) -> Iterator[tuple[Kind, list[Operation]]]:
    """Runs of operations of the same kind, in order."""
    for kind, ops in groupby(operations, key=lambda op: op.kind):
        yield kind, list(ops)


def attempt(
    bqn: BqnClient, op: Operation, breaker: Breaker, check: DeletionCheck | None = None
) -> Outcome:
    """Send one operation unless the BQN is taken to be down (or, for a deletion, `check`
    holds it back); never raises but for `ConfigError` (credentials), which stops the run."""
    if breaker.tripped():
        return Outcome(op, phrases.NOT_ATTEMPTED, transient=True)
    checked = check(op) if check is not None and op.action is Action.DELETE else nullcontext(True)
    with checked as allowed:
        if not allowed:
            log.info("kept: %s (a client claims it now)", op.describe())
            return Outcome(
                op, note=phrases.KEPT_CLAIMED.format(kind=op.kind, key=op.key), kept=True
            )
        try:
            send(bqn, op)
            note = _check_taken(bqn, op) if op.kind is Kind.POLICY else None
        except (TransientError, ApiError) as exc:
            transient = isinstance(exc, TransientError)
            breaker.record(transient_failure=isinstance(exc, Unavailable))
            log.warning("failed: %s: %s", op.describe(), exc)
            return Outcome(op, str(exc), transient=transient)
    breaker.record(transient_failure=False)
    log.info("done: %s", op.describe())
    return Outcome(op, note=note)


def _check_taken(bqn: BqnClient, op: Operation) -> str | None:
    """Read a written policy back: a static policy (configured on the BQN itself) ignores REST
    writes. Its subscribers still use it, with the rates set on the BQN; the report says so."""
    held = bqn.get_policy(op.key)
    if held is None or not covers(held.fields, op.fields):
        return phrases.STATIC_POLICY.format(key=op.key)
    return None


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
