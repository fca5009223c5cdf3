"""The deletion guard (pure): a full sync that would delete too much deletes nothing.

Deleting a BQN subscriber cuts a paying family's shaping, so a plan that deletes more than a
fraction of what the sync manages, that comes from a WispHub pass far shorter than the last
complete one, or from an empty pass, keeps every other operation and holds the deletions back
with the reason. `force` (CLI `--force`, API `"force": true`) lets a deliberate purge through;
an empty pass never deletes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from worker.core import phrases
from worker.core.desired import Row, map_client
from worker.core.diff import Changes
from worker.core.model import Action
from worker.core.rules import GuardLimits, MappingRules


def guard_deletions(
    changes: Changes,
    *,
    managed: int,
    last_pass: int | None,
    limits: GuardLimits,
    force: bool = False,
) -> tuple[Changes, str | None]:
    """`changes` without its deletions and the reason, when the guard trips; else unchanged."""
    deletions = sum(op.action is Action.DELETE for op in changes.operations)
    if not deletions:
        return changes, None
    reason = _reason(changes.clients, deletions, managed, last_pass, limits)
    if reason is None or (force and changes.clients > 0):
        return changes, None
    kept = tuple(op for op in changes.operations if op.action is not Action.DELETE)
    return replace(changes, operations=kept), phrases.HELD_BACK.format(
        count=deletions, reason=reason
    )


def allowed_deletions(limits: GuardLimits, managed: int) -> int:
    """How many deletions may go through at once out of `managed` entries."""
    return max(limits.floor, int(limits.max_fraction * managed))


def hold_vanished(
    before: Mapping[int, str], current: Mapping[int, str], limits: GuardLimits
) -> tuple[dict[int, str], str | None]:
    """The poller's side of the guard: when a pass lost more clients than may be deleted at
    once (or all of them), the vanished clients are kept as they were last seen, so no sync is
    queued that would delete them. Returns the snapshot to keep and the reason, if held."""
    vanished = before.keys() - current.keys()
    if not vanished or (current and len(vanished) <= allowed_deletions(limits, len(before))):
        return dict(current), None
    kept = {**current, **{key: before[key] for key in vanished}}
    said = phrases.VANISHED if current else phrases.ALL_VANISHED
    reason = said.format(count=len(current), before=len(before), missing=len(vanished))
    return kept, reason


def hold_cancelled(
    before: Mapping[int, str],
    current: Mapping[int, str],
    rows: Mapping[int, Row],
    rules: MappingRules,
    limits: GuardLimits,
) -> tuple[dict[int, str], str | None]:
    """The poller's side of the guard for clients still listed but cancelled: when more of
    them changed to a state that removes their entries than may be deleted at once, their
    change is held (their fingerprints kept as they were, so no sync is queued that would
    remove them), as a reconcile holds the same deletions back: one rule for every path.
    Returns the snapshot to keep and the reason, if held."""
    removed = [
        key
        for key, now in current.items()
        if before.get(key, now) != now and key in rows and map_client(rows[key], rules) is None
    ]
    allowed = allowed_deletions(limits, len(before))
    if len(removed) <= allowed:
        return dict(current), None
    kept = {**current, **{key: before[key] for key in removed}}
    return kept, phrases.CANCELLED_HELD.format(count=len(removed), allowed=allowed)


def _reason(
    clients: int, deletions: int, managed: int, last_pass: int | None, limits: GuardLimits
) -> str | None:
    allowed = allowed_deletions(limits, managed)
    if clients == 0:
        return phrases.NO_CLIENTS
    if deletions > allowed:
        return phrases.TOO_MANY_DELETIONS.format(
            fraction=limits.max_fraction, managed=managed, allowed=allowed
        )
    shrink = (last_pass or 0) - clients
    if last_pass and shrink > allowed_deletions(limits, last_pass):
        return phrases.FAR_FEWER.format(clients=clients, last_pass=last_pass)
    return None
