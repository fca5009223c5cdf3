"""The outcome of a sync: counts, and every skip, conflict and failure with its reason."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from worker.core.diff import Changes
from worker.core.model import Action, Kind, Operation
from worker.core.targets import DEFAULT_TARGET


@dataclass(frozen=True)
class Failure:
    """An operation that did not go through, and why."""

    operation: Operation
    error: str
    transient: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**self.operation.to_dict(), "error": self.error, "transient": self.transient}


@dataclass
class Report:
    """What a sync did (or, with `dry_run`, would do). Subscriber writes are counted; policy
    writes are listed by name in `policies`."""

    dry_run: bool
    clients: int
    unchanged: int
    skips: tuple = ()
    conflicts: tuple = ()
    planned: tuple[Operation, ...] = ()
    created: int = 0
    updated: int = 0
    deleted: int = 0
    policies: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    unused_policies: tuple[str, ...] = ()
    plans_without_speeds: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    guard: str | None = None

    @classmethod
    def of(cls, changes: Changes, *, dry_run: bool) -> Report:
        """An empty report for `changes`, before anything is applied."""
        return cls(
            dry_run=dry_run,
            clients=changes.clients,
            unchanged=changes.unchanged,
            skips=changes.skips,
            conflicts=changes.conflicts,
            planned=changes.operations,
            unused_policies=changes.unused_policies,
        )

    @property
    def ok(self) -> bool:
        """True when every operation went through and the deletion guard did not trip."""
        return not self.failures and self.guard is None

    def record_success(self, op: Operation) -> None:
        """Count an operation the BQN accepted."""
        if op.kind is Kind.POLICY:
            self.policies.append(f"{op.action} {op.key}")
        elif op.action is Action.CREATE:
            self.created += 1
        elif op.action is Action.UPDATE:
            self.updated += 1
        else:
            self.deleted += 1

    def drop(self, op: Operation) -> None:
        """Forget a planned operation that was held back on purpose (not sent, not counted)."""
        self.planned = tuple(planned for planned in self.planned if planned is not op)

    def record_failure(self, op: Operation, error: str, *, transient: bool = True) -> None:
        """Keep an operation that failed, with its reason; `transient` if a retry may help."""
        self.failures.append(Failure(op, error, transient))

    def results(self) -> Iterator[tuple[Operation, Failure | None]]:
        """Each planned operation with its failure, `None` when it went through."""
        failed = {id(failure.operation): failure for failure in self.failures}
        for op in self.planned:
            yield op, failed.get(id(op))

    def for_client(self, id_servicio: int, keys: Collection[str] = ()) -> Report:
        """The part of a several-client sync's report that concerns one client: its
        operations (those naming it, and the deletions at its `keys`, the addresses and group
        it had), skips and IP conflicts (the shared policies are the sync's, not its)."""

        def its(op: Operation) -> bool:
            return op.id_servicio == id_servicio or (op.id_servicio is None and op.key in keys)

        part = Report(
            dry_run=self.dry_run,
            clients=1,
            unchanged=0,
            skips=tuple(skip for skip in self.skips if skip.id_servicio == id_servicio),
            conflicts=tuple(c for c in self.conflicts if id_servicio in (c.winner, *c.losers)),
            planned=tuple(op for op in self.planned if its(op) and op.kind is not Kind.POLICY),
        )
        for op, failure in self.results():
            if op not in part.planned:
                continue
            if failure is None:
                part.record_success(op)
            else:
                part.failures.append(failure)
        return part

    @property
    def retryable(self) -> bool:
        """True when some operation failed in a way a later retry may fix."""
        return any(failure.transient for failure in self.failures)

    def counts(self) -> dict[str, int]:
        """The headline numbers."""
        return {
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "skipped": len(self.skips),
            "failed": len(self.failures),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; planned operations are listed on dry runs only."""
        data: dict[str, Any] = {
            "dry_run": self.dry_run,
            "ok": self.ok,
            "clients": self.clients,
            "planned": len(self.planned),
            "counts": self.counts(),
            "policies": self.policies,
            "skipped": [skip.to_dict() for skip in self.skips],
            "conflicts": [conflict.to_dict() for conflict in self.conflicts],
            "failures": [failure.to_dict() for failure in self.failures],
            "plans_without_speeds": self.plans_without_speeds,
            "unused_policies": list(self.unused_policies),
            "notes": self.notes,
            "guard": self.guard,
        }
        if self.dry_run:
            data["operations"] = [op.to_dict() for op in self.planned]
        return data


def merged(reports: Mapping[str, Report], clients: int) -> Report:
    """One report of the same work done on several targets (by name), for `clients` clients:
    each operation and policy names its target, counts add up, and what every target shares
    (skips, conflicts, notes) is listed once. The one target of a service without a targets
    file (`default`) names none."""
    if list(reports) == [DEFAULT_TARGET]:
        return replace(reports[DEFAULT_TARGET], clients=clients)
    parts = list(reports.values())
    total = Report(
        dry_run=any(part.dry_run for part in parts),
        clients=clients,
        unchanged=sum(part.unchanged for part in parts),
        skips=_once(skip for part in parts for skip in part.skips),
        conflicts=_once(conflict for part in parts for conflict in part.conflicts),
        unused_policies=_once(name for part in parts for name in part.unused_policies),
    )
    planned: list[Operation] = []
    for name, part in reports.items():
        tagged = {id(op): replace(op, target=name) for op in part.planned}
        planned += tagged.values()
        total.created += part.created
        total.updated += part.updated
        total.deleted += part.deleted
        total.policies += [f"{policy} on {name}" for policy in part.policies]
        total.failures += [
            replace(failure, operation=tagged.get(id(failure.operation), failure.operation))
            for failure in part.failures
        ]
        total.notes += [note for note in part.notes if note not in total.notes]
        total.plans_without_speeds += [
            plan for plan in part.plans_without_speeds if plan not in total.plans_without_speeds
        ]
    total.planned = tuple(planned)
    guards = [f"{name}: {part.guard}" for name, part in reports.items() if part.guard]
    total.guard = "; ".join(guards) or None
    return total


def _once(items: Iterator) -> tuple:
    """`items` in order, each once."""
    return tuple(dict.fromkeys(items))


def summary(data: Mapping[str, Any]) -> str:
    """One line for people and logs, from a report's dict form (`Report.to_dict`): of a sync
    run here, or of one a service job returned."""
    counts = ", ".join(f"{value} {name}" for name, value in data["counts"].items())
    planned = data["planned"]
    text = (
        f"{data['clients']} clients read; {planned} operation{'' if planned == 1 else 's'}"
        f"{' planned (dry run)' if data['dry_run'] else ''}: {counts}"
    )
    if data["conflicts"]:
        text += f"; {len(data['conflicts'])} IP conflicts"
    if data["guard"]:
        text += f"; GUARD: {data['guard']}"
    if data["policies"]:
        text += f"; policies: {', '.join(data['policies'])}"
    return text
