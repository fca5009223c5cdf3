"""The deletion guard: when a full sync may delete, and when it holds deletions back."""

import pytest

from tests.rows import row
from worker.core.changes import fingerprints
from worker.core.diff import Changes
from worker.core.guard import guard_deletions, hold_cancelled, hold_vanished
from worker.core.model import Action, Kind, Operation
from worker.core.rules import GuardLimits, MappingRules

LIMITS = GuardLimits(max_fraction=0.10, floor=3)
UPDATE = Operation(Action.UPDATE, Kind.SUBSCRIBER, "10.0.0.1", {"policyRate": "P"})


def changes(deletions: int, clients: int = 1000) -> Changes:
    deletes = tuple(
        Operation(Action.DELETE, Kind.SUBSCRIBER, f"10.1.0.{n}") for n in range(deletions)
    )
    return Changes((UPDATE, *deletes), clients=clients)


@pytest.mark.parametrize(
    ("deletions", "managed", "clients", "last_pass", "force", "held", "reason"),
    [
        pytest.param(0, 1000, 0, None, False, False, None, id="nothing-to-delete"),
        pytest.param(3, 5, 1000, None, False, False, None, id="within-the-floor"),
        pytest.param(100, 1000, 1000, None, False, False, None, id="at-the-fraction"),
        pytest.param(101, 1000, 1000, None, False, True, "more than 10%", id="over-the-fraction"),
        pytest.param(101, 1000, 1000, None, True, False, None, id="forced"),
        pytest.param(4, 10, 1000, None, False, True, "at most 3", id="small-tenant-over-floor"),
        pytest.param(
            50, 1000, 800, 1000, False, True, "far fewer than the 1000", id="pass-far-shorter"
        ),
        pytest.param(50, 1000, 950, 1000, False, False, None, id="pass-a-little-shorter"),
        pytest.param(2, 1000, 0, None, False, True, "no clients", id="empty-pass"),
        pytest.param(2, 1000, 0, None, True, True, "no clients", id="empty-pass-even-forced"),
    ],
)
def test_guard(deletions, managed, clients, last_pass, force, held, reason):
    planned = changes(deletions, clients)
    result, tripped = guard_deletions(
        planned, managed=managed, last_pass=last_pass, limits=LIMITS, force=force
    )
    if held:
        assert result.operations == (UPDATE,), "every other operation is kept"
        assert tripped.startswith(f"{deletions} deletions held back")
        assert reason in tripped
    else:
        assert result == planned
        assert tripped is None


def snapshot(ids) -> dict[int, str]:
    return {key: f"fp{key}" for key in ids}


@pytest.mark.parametrize(
    ("before", "after", "held", "reason"),
    [
        pytest.param(range(100), range(100), False, None, id="same-clients"),
        pytest.param(range(100), range(97), False, None, id="within-the-floor"),
        pytest.param(range(1000), range(900), False, None, id="at-the-fraction"),
        pytest.param(range(1000), range(899), True, "899 clients", id="over-the-fraction"),
        pytest.param(
            range(1000),
            range(500),
            True,
            "returned 500 clients where the last pass had 1000",
            id="half-a-list",
        ),
        pytest.param(range(2), [], True, "no clients", id="empty-pass-small-tenant"),
        pytest.param(range(100), range(200), False, None, id="new-clients-only"),
    ],
)
def test_the_poller_holds_back_a_pass_that_lost_too_many(before, after, held, reason):
    before, current = snapshot(before), snapshot(after)
    current = {**current, 0: "changed"} if current else current
    kept, tripped = hold_vanished(before, current, LIMITS)
    if held:
        assert reason in tripped
        assert kept == {**before, **current}, "vanished clients keep their old fingerprints"
    else:
        assert tripped is None
        assert kept == current


@pytest.mark.parametrize(
    ("cancelled", "held"),
    [(0, False), (10, False), (11, True), (30, True)],
)
def test_the_poller_holds_a_bulk_cancellation_past_the_guard(cancelled, held):
    """Up to the guard's floor (10 of 40) go through; more are held, their old fingerprints
    kept, and clients changed otherwise are not held with them."""
    rules = MappingRules()
    rows = {key: row(key, f"10.0.0.{key}") for key in range(1, 41)}
    before = fingerprints(rows.values(), rules)
    rows.update(
        {key: row(key, f"10.0.0.{key}", estado="Cancelado") for key in range(1, cancelled + 1)}
    )
    rows[40] = row(40, "10.0.0.40", estado="Suspendido")
    current = fingerprints(rows.values(), rules)
    kept, reason = hold_cancelled(before, current, rows, rules, GuardLimits())
    assert (reason is not None) == held
    expected = {**current, **{k: before[k] for k in range(1, cancelled + 1)}} if held else current
    assert kept == expected
    assert kept[40] == current[40]  # a suspension is not a removal
