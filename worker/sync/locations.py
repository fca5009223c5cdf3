"""Location groups on one BQN, from a complete pass (`worker.core.locations` says what they
are and why only whole passes write them).

Every complete pass works the groups out; the ones whose members differ from what was last
written (`written`: name → digest, kept in Redis by `worker.queue.locations`) are read and
written, so a client moving router moves group within a poll. A pass that compares with the
BQN (`compare`: the reconcile, and the poller every `POLL_BQN_EVERY` passes) reads every group
and corrects any that differs, whatever changed it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from worker.clients.bqn import BqnClient
from worker.clients.parallel import run_all
from worker.core.desired import Row, desired_state
from worker.core.diff import Changes
from worker.core.locations import diff_locations, digest, place
from worker.core.report import Report
from worker.core.rules import MappingRules
from worker.sync.apply import apply_changes


@dataclass(frozen=True)
class LocationSync:
    """What a pass did to the location groups: its report; `written`, the digest of each
    group it wrote or found right (None: a group of ours it deleted, or found gone); the
    names the sync would use held by groups it did not create; per field, the clients whose
    place did not fit; how many groups the pass makes."""

    report: Report
    written: dict[str, str | None]
    foreign: tuple[str, ...]
    left_out: dict[str, int]
    groups: int


def sync_locations(
    bqn: BqnClient,
    rules: MappingRules,
    rows: Sequence[Row],
    written: Mapping[str, str],
    *,
    compare: bool,
    dry_run: bool = False,
) -> LocationSync:
    """Bring the location groups of a complete pass `rows` in line on `bqn`: those whose
    members changed since `written` (every one, read in one list, when `compare`)."""
    placed = place(rows, desired_state(rows, rules), rules.location_groups, rules.groups_per_ip)
    gone = [name for name in written if name not in placed.groups]
    if compare:
        looked = placed.groups
        on_bqn = {group.name: group for group in bqn.list_groups()}
        held = {name: on_bqn.get(name) for name in [*looked, *gone]}
    else:
        looked = {name: g for name, g in placed.groups.items() if written.get(name) != digest(g)}
        names = [*looked, *gone]
        held = dict(
            zip(names, run_all(bqn.get_group, names, bqn.settings.concurrency), strict=True)
        )
    changes = diff_locations(looked, held, written.keys(), gone)
    report = apply_changes(
        Changes(changes.operations, unchanged=changes.unchanged), bqn, dry_run=dry_run
    )
    failed = {failure.operation.key for failure in report.failures}
    now: dict[str, str | None] = {
        name: digest(group)
        for name, group in looked.items()
        if name not in failed and name not in changes.foreign
    }
    now.update({name: None for name in gone if name not in failed})
    return LocationSync(report, now, changes.foreign, placed.left_out, len(placed.groups))
