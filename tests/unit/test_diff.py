"""Diffing desired against actual BQN state: table-driven cases and properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.bqn_model import apply_to_state
from tests.ops import create, delete, group_op, policy, sub, update
from tests.rows import row
from worker.core.desired import desired_state, suspended_policy
from worker.core.diff import diff_groups, diff_policies, diff_subscribers, plan_full
from worker.core.model import Action, Group, Kind, Operation, Policy, Subscriber
from worker.core.rules import MappingRules

RULES = MappingRules()
BLOCK = suspended_policy(RULES)


@pytest.mark.parametrize(
    ("desired", "actual", "protected", "operations", "unchanged"),
    [
        pytest.param([sub("1.1.1.1")], [], set(), [create("1.1.1.1")], 0, id="missing-created"),
        pytest.param([sub("1.1.1.1")], [sub("1.1.1.1")], set(), [], 1, id="equal-untouched"),
        pytest.param(
            [sub("1.1.1.1", policy="Q")],
            [sub("1.1.1.1")],
            set(),
            [update("1.1.1.1", policy="Q")],
            0,
            id="policy-changed",
        ),
        pytest.param(
            [sub("1.1.1.1", sid="b")],
            [sub("1.1.1.1")],
            set(),
            [update("1.1.1.1", sid="b")],
            0,
            id="name-changed",
        ),
        pytest.param([], [sub("1.1.1.1")], set(), [delete("1.1.1.1")], 0, id="extra-deleted"),
        pytest.param([], [sub("1.1.1.1", assigned_by="rules")], set(), [], 0, id="rules-kept"),
        pytest.param(
            [],
            [sub("1.1.1.1", assigned_by=None)],
            set(),
            [delete("1.1.1.1")],
            0,
            id="unknown-origin-deleted",
        ),
        pytest.param([], [sub("1.1.1.1")], {"1.1.1.1"}, [], 0, id="protected-kept"),
        pytest.param(
            [sub("1.1.1.1")],
            [sub("1.1.1.1", policy="rate-default", assigned_by="rules")],
            set(),
            [update("1.1.1.1")],
            0,
            id="rules-entry-billing-knows-is-updated",
        ),
        pytest.param(
            [sub("1.1.1.1")],
            [sub("1.1.1.1"), sub("1.1.1.1", policy="Z")],
            set(),
            [],
            1,
            id="duplicate-actual-first-wins",
        ),
    ],
)
def test_diff_subscribers(desired, actual, protected, operations, unchanged):
    wanted = {s.ip: s for s in desired}
    assert diff_subscribers(wanted, actual, frozenset(protected)) == (operations, unchanged)


@pytest.mark.parametrize(
    ("actual", "operations"),
    [
        pytest.param(
            [],
            [Operation(Action.CREATE, Kind.POLICY, "Wisphub_block", BLOCK.fields)],
            id="missing",
        ),
        pytest.param([BLOCK], [], id="present"),
        pytest.param(
            [Policy("Wisphub_block")],
            [Operation(Action.UPDATE, Kind.POLICY, "Wisphub_block", BLOCK.fields)],
            id="undefined-placeholder-completed",
        ),
        pytest.param(
            [policy("Wisphub_block", "block", 1000, 0)],
            [Operation(Action.UPDATE, Kind.POLICY, "Wisphub_block", BLOCK.fields)],
            id="wrong-rate-corrected",
        ),
        pytest.param([BLOCK, policy("Other", "9", 5, 5)], [], id="others-never-deleted"),
        pytest.param(
            [policy("Wisphub_block", "block", 0, 0, flowLimit=None)],
            [],
            id="echoed-defaults-ignored",
        ),
    ],
)
def test_diff_policies(actual, operations):
    assert diff_policies([BLOCK], actual) == operations


def test_full_plan_puts_policies_first():
    desired = desired_state([row(1, "10.0.0.1", "Suspendido")], RULES)
    plan = plan_full(desired, [sub("10.9.9.9")], [], [BLOCK])
    assert [(op.action, op.kind) for op in plan.operations] == [
        (Action.CREATE, Kind.POLICY),
        (Action.CREATE, Kind.SUBSCRIBER),
        (Action.DELETE, Kind.SUBSCRIBER),
    ]


# Properties ----------------------------------------------------------------------------

ips = st.sampled_from([f"10.0.0.{n}" for n in range(1, 16)] + ["2001:db8::1", "N/A", ""])
estados = st.sampled_from(["Activo", "Suspendido", "Cancelado", "Gratis", "Cortado"])
names = st.text(min_size=0, max_size=6)
plans = st.one_of(st.none(), st.sampled_from(["Plan 10M", "Básico 5M", "Online_basico"]))
stamps = st.sampled_from(["01/01/2026 00:00:00", "02/01/2026 00:00:00", "bad"])

rows_strategy = st.lists(
    st.builds(row, st.integers(1, 40), ips, estados, plans, names, stamps),
    max_size=25,
    unique_by=lambda r: r["id_servicio"],
)
actual_strategy = st.lists(
    st.builds(
        Subscriber,
        ip=st.sampled_from([f"10.0.0.{n}" for n in range(1, 20)] + ["2001:db8::"]),
        subscriber_id=names,
        policy_rate=st.sampled_from(["Plan_10M", "Wisphub_block", "rate-default", ""]),
        assigned_by=st.sampled_from(["rest", "rules", None]),
    ),
    max_size=25,
)


def diff_and_apply(rows, actual):
    """The desired state, the BQN as first held (first entry per IP wins), and the BQN after
    the diff's operations."""
    desired = desired_state(rows, RULES)
    held = {}
    for s in actual:
        held.setdefault(s.ip, s)
    operations, _ = diff_subscribers(desired.subscribers, actual, desired.protected)
    return desired, held, apply_to_state(operations, held)


@given(rows_strategy, actual_strategy)
def test_applying_the_diff_yields_the_desired_state(rows, actual):
    desired, held, after = diff_and_apply(rows, actual)

    managed = {
        ip: (s.subscriber_id, s.policy_rate) for ip, s in after.items() if ip in desired.subscribers
    }
    assert managed == {
        ip: (s.subscriber_id, s.policy_rate) for ip, s in desired.subscribers.items()
    }
    for ip, before in held.items():
        if ip not in desired.subscribers and (
            before.assigned_by == "rules" or ip in desired.protected
        ):
            assert after[ip] == before, "rules and protected entries are never touched"
        elif ip not in desired.subscribers:
            assert ip not in after


@given(rows_strategy, actual_strategy)
def test_a_second_diff_is_empty(rows, actual):
    desired, _, after = diff_and_apply(rows, actual)
    assert diff_subscribers(desired.subscribers, after.values(), desired.protected)[0] == []


@given(rows_strategy, actual_strategy)
def test_every_ip_gets_at_most_one_operation(rows, actual):
    desired = desired_state(rows, RULES)
    plan = plan_full(desired, actual, [], [BLOCK])
    keys = [op.key for op in plan.operations if op.kind is Kind.SUBSCRIBER]
    assert len(keys) == len(set(keys))


# Groups --------------------------------------------------------------------------------

OURS = Group("wisphub-30", ("10.3.0.1",), ("200.1.2.0/30",), "Plan_10M", 30)


@pytest.mark.parametrize(
    ("desired", "actual", "protected", "operations", "unchanged"),
    [
        pytest.param([OURS], [], set(), [group_op(Action.CREATE, OURS)], 0, id="created"),
        pytest.param([OURS], [OURS], set(), [], 1, id="equal"),
        pytest.param(
            [OURS],
            [Group("wisphub-30", ("10.3.0.1",), ("200.1.2.0/30",), "Plan_10M")],
            set(),
            [],
            1,
            id="id-is-not-compared",
        ),
        pytest.param(
            [OURS],
            [Group("wisphub-30", ("10.3.0.9",), ("200.1.2.0/30",), "Plan_10M")],
            set(),
            [group_op(Action.UPDATE, OURS)],
            0,
            id="members-changed",
        ),
        pytest.param(
            [OURS],
            [Group("wisphub-30", ("10.3.0.1",), ("200.1.2.0/30",), "Wisphub_block")],
            set(),
            [group_op(Action.UPDATE, OURS)],
            0,
            id="policy-changed",
        ),
        pytest.param(
            [], [OURS], set(), [Operation(Action.DELETE, Kind.GROUP, "wisphub-30")], 0, id="removed"
        ),
        pytest.param([], [OURS], {"wisphub-30"}, [], 0, id="protected"),
        pytest.param(
            [],
            [Group("all-subscribers"), Group("tower-3", ("10.0.0.1",)), Group("wisphub-x")],
            set(),
            [],
            0,
            id="foreign-groups-never-touched",
        ),
    ],
)
def test_diff_groups(desired, actual, protected, operations, unchanged):
    wanted = {g.name: g for g in desired}
    assert diff_groups(wanted, actual, frozenset(protected)) == (operations, unchanged)
