"""The deletion guard (pure): a full sync that would delete too much deletes nothing.

Deleting a BQN subscriber cuts a paying family's shaping, so a plan that deletes more than a
fraction of what the sync manages, that comes from a WispHub pass far shorter than the last
complete one, or from an empty pass, keeps every other operation and holds the deletions back
with the reason. `force` (CLI `--force`, API `"force": true`) lets a deliberate purge through;
an empty pass never deletes.
"""

from __future__ import annotations

from dataclasses import replace

from worker.diff import Changes
from worker.model import Action
from worker.settings import GuardLimits


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
    return replace(changes, operations=kept), f"{deletions} deletions held back: {reason}"


def _reason(
    clients: int, deletions: int, managed: int, last_pass: int | None, limits: GuardLimits
) -> str | None:
    allowed = max(limits.floor, int(limits.max_fraction * managed))
    if clients == 0:
        return "WispHub returned no clients"
    if deletions > allowed:
        return (
            f"more than {limits.max_fraction:.0%} of the {managed} entries the sync manages "
            f'(at most {allowed} at once; --force or "force": true to go ahead)'
        )
    shrink = (last_pass or 0) - clients
    if last_pass and shrink > max(limits.floor, limits.max_fraction * last_pass):
        return (
            f"WispHub returned {clients} clients, far fewer than the {last_pass} of the last "
            'complete pass (--force or "force": true to go ahead)'
        )
    return None
