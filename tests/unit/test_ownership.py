"""Who holds each address: settling some addresses from fresh rows, what a client job then
remembers, and what a full sync leaves behind. Table-driven cases and properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.bqn_model import apply_to_state
from tests.ops import create, delete, group_op, sub, update
from tests.rows import plan_id, row
from worker.core.desired import desired_state, suspended_policy
from worker.core.diff import diff_subscribers
from worker.core.model import Action, Footprint, Group, Kind, Operation, Policy
from worker.core.ownership import claims_in, footprint_after, remembered, settle
from worker.core.report import Report
from worker.core.rules import MappingRules

RULES = MappingRules()
BLOCK = suspended_policy(RULES)
NEW = Policy(
    "Plan_10M",
    {"policyId": "7", "rateLimitDownlink": {"rate": 10_000}, "rateLimitUplink": {"rate": 2_000}},
)
ANA = sub("10.0.0.7", "Ana", "Plan_10M", id_servicio=7)
BETO = sub("10.0.0.7", "Beto", "Plan_10M", id_servicio=8)
EARLY, LATE = "01/01/2026 00:00:00", "02/01/2026 00:00:00"


@pytest.mark.parametrize(
    ("rows", "addresses", "held", "operations", "claims"),
    [
        pytest.param(
            [row(7, "10.0.0.7", nombre="Ana")],
            ["10.0.0.7"],
            [],
            [create("10.0.0.7", "Ana", "Plan_10M", 7)],
            {"10.0.0.7": (7,)},
            id="new",
        ),
        pytest.param(
            [row(7, "10.0.0.7", nombre="Ana")],
            ["10.0.0.7"],
            [ANA],
            [],
            {"10.0.0.7": (7,)},
            id="in-line",
        ),
        pytest.param(
            [row(7, "10.0.0.7", "Suspendido", nombre="Ana")],
            ["10.0.0.7"],
            [ANA],
            [
                Operation(Action.CREATE, Kind.POLICY, "Wisphub_block", BLOCK.fields),
                update("10.0.0.7", "Ana", "Wisphub_block", 7),
            ],
            {"10.0.0.7": (7,)},
            id="suspended-block-policy-first",
        ),
        pytest.param(
            [row(7, "10.0.0.8", nombre="Ana")],
            ["10.0.0.7", "10.0.0.8"],
            [ANA],
            [create("10.0.0.8", "Ana", "Plan_10M", 7), delete("10.0.0.7")],
            {"10.0.0.8": (7,)},
            id="ip-change-clears-the-old-address",
        ),
        pytest.param(
            [row(7, "10.0.0.8", nombre="Ana"), row(8, "10.0.0.7", nombre="Beto")],
            ["10.0.0.7", "10.0.0.8"],
            [BETO],
            [create("10.0.0.8", "Ana", "Plan_10M", 7)],
            {"10.0.0.7": (8,), "10.0.0.8": (7,)},
            id="old-address-kept-for-the-client-that-claims-it",
        ),
        pytest.param(
            [row(7, "10.0.0.7", "Cancelado", nombre="Ana"), row(9, "10.0.0.7", nombre="Ana")],
            ["10.0.0.7"],
            [sub("10.0.0.7", "Ana", "Plan_10M", id_servicio=9)],
            [],
            {"10.0.0.7": (9,)},
            id="one-person-two-services-the-old-one-cancelled",
        ),
        pytest.param(
            [
                row(8, "10.0.0.9", nombre="Beto", ultimo_cambio=LATE),
                row(7, "10.0.0.7", "Activo", nombre="Ana"),
            ],
            ["10.0.0.7", "10.0.0.9"],
            [BETO],
            [create("10.0.0.9", "Beto", "Plan_10M", 8), update("10.0.0.7", "Ana", "Plan_10M", 7)],
            {"10.0.0.7": (7,), "10.0.0.9": (8,)},
            id="duplicate-undone-gives-the-address-back",
        ),
        pytest.param(
            [row(7, "10.0.0.7", "Cancelado")],
            ["10.0.0.7"],
            [ANA],
            [delete("10.0.0.7")],
            {},
            id="cancelled",
        ),
        pytest.param([], ["10.0.0.7"], [ANA], [delete("10.0.0.7")], {}, id="gone-from-wisphub"),
        pytest.param(
            [row(7, "10.0.0.7", "Cortado")],
            ["10.0.0.7"],
            [ANA],
            [],
            {"10.0.0.7": (7,)},
            id="unknown-estado-kept",
        ),
        pytest.param(
            [row(7, "10.0.0.7")],
            ["10.0.0.7"],
            [sub("10.0.0.7", policy="rate-default", assigned_by="rules")],
            [update("10.0.0.7", "cliente", "Plan_10M", 7)],
            {"10.0.0.7": (7,)},
            id="rules-entry-taken-over",
        ),
        pytest.param(
            [],
            ["10.0.0.7"],
            [sub("10.0.0.7", policy="rate-default", assigned_by="rules")],
            [],
            {},
            id="rules-entry-never-deleted",
        ),
        pytest.param(
            [
                row(7, "10.0.0.7", nombre="Ana", ultimo_cambio=LATE),
                row(8, "10.0.0.7", nombre="Beto"),
            ],
            ["10.0.0.7"],
            [BETO],
            [update("10.0.0.7", "Ana", "Plan_10M", 7)],
            {"10.0.0.7": (7, 8)},
            id="shared-address-to-the-latest-change",
        ),
        pytest.param(
            [
                row(7, "10.0.0.7", nombre="Ana"),
                row(8, "10.0.0.7", nombre="Beto", ultimo_cambio=LATE),
            ],
            ["10.0.0.7"],
            [BETO],
            [],
            {"10.0.0.7": (8, 7)},
            id="shared-address-earlier-change-leaves-the-owner",
        ),
        pytest.param(
            [row(7, "10.0.0.8", nombre="Ana")],
            ["10.0.0.8"],
            [ANA],
            [create("10.0.0.8", "Ana", "Plan_10M", 7)],
            {"10.0.0.8": (7,)},
            id="addresses-not-settled-are-not-touched",
        ),
    ],
)
def test_settle(rows, addresses, held, operations, claims):
    settled = settle(rows, addresses, held, RULES, wanted_policies=[BLOCK])
    assert list(settled.changes.operations) == operations
    assert settled.claims == claims


@pytest.mark.parametrize(
    ("held", "written"),
    [
        ([], [Action.CREATE]),  # missing: put in place before the subscriber
        ([Policy("Plan_10M", {})], [Action.UPDATE]),  # an "undefined" placeholder: completed
        ([Policy("Plan_10M", {**NEW.fields, "rateLimitDownlink": {"rate": 5_000}})], []),
        ([NEW], []),
    ],
    ids=["missing", "placeholder", "other-speeds", "same"],
)
def test_a_client_job_puts_a_policy_in_place_but_never_changes_its_speeds(held, written):
    """Issue 20, item 4: a job that began before a plan refresh holds the old catalogue; it
    rewrote the old speeds over the refresh's. Fails if a client job corrects a policy the BQN
    holds with rates (the plan refresh, the poller and the reconcile do)."""
    settled = settle(
        [row(7, "10.0.0.7", plan="Plan 10M")],
        ["10.0.0.7"],
        [],
        RULES,
        wanted_policies=[NEW],
        actual_policies=held,
    )
    policies = [op for op in settled.changes.operations if op.kind is Kind.POLICY]
    assert [op.action for op in policies] == written


def test_policies_come_from_the_plan_names_by_id():
    client = row(7, "10.0.0.7", nombre="Ana", plan="Plan Twin")
    names = {plan_id("Plan Twin"): "Plan_Twin-2"}
    settled = settle([client], ["10.0.0.7"], [], RULES, names=names)
    assert list(settled.changes.operations) == [create("10.0.0.7", "Ana", "Plan_Twin-2", 7)]


OURS = Group("wisphub-30", ("10.3.0.1",), ("200.1.2.0/30",), "Plan_10M", 30)


def test_a_cancelled_client_loses_its_group():
    cancelled = row(30, "10.3.0.1, 200.1.2.0/30", "Cancelado")
    settled = settle([cancelled], [], [], RULES, groups=["wisphub-30"], held_groups=[OURS])
    assert list(settled.changes.operations) == [Operation(Action.DELETE, Kind.GROUP, "wisphub-30")]


def test_a_client_moving_to_several_addresses_trades_its_subscriber_for_a_group():
    now = row(7, "10.0.0.7, 10.0.0.8", nombre="Ana")
    settled = settle([now], ["10.0.0.7"], [ANA], RULES, groups=["wisphub-7"])
    group = Group("wisphub-7", ("10.0.0.7", "10.0.0.8"), (), "Plan_10M", 7)
    assert list(settled.changes.operations) == [delete("10.0.0.7"), group_op(Action.CREATE, group)]


# What a client job remembers -------------------------------------------------------------


def report_of(settled, failed_keys=()):
    report = Report.of(settled.changes, dry_run=False)
    for op in settled.changes.operations:
        if op.key in failed_keys:
            report.record_failure(op, "BQN unreachable")
        else:
            report.record_success(op)
    return report


MOVED = row(7, "10.0.0.8", nombre="Ana")
WAS = Footprint("Ana", ("10.0.0.7",))


@pytest.mark.parametrize(
    ("rows", "failed", "footprint"),
    [
        pytest.param([MOVED], (), Footprint("Ana", ("10.0.0.8",)), id="moved"),
        pytest.param(
            [MOVED],
            ("10.0.0.7",),
            Footprint("Ana", ("10.0.0.7", "10.0.0.8")),
            id="old-address-kept-when-its-delete-failed",
        ),
        pytest.param(
            [MOVED],
            ("10.0.0.8",),
            Footprint("Ana", ("10.0.0.8",)),
            id="new-address-kept-when-its-write-failed",
        ),
        pytest.param(
            [row(7, "10.0.0.7", "Cancelado", nombre="Ana")], (), None, id="cancelled-forgotten"
        ),
        pytest.param(
            [row(7, "10.0.0.7", "Cancelado", nombre="Ana")],
            ("10.0.0.7",),
            Footprint("Ana", ("10.0.0.7",)),
            id="cancelled-kept-while-its-delete-failed",
        ),
        pytest.param(
            [
                row(7, "10.0.0.8", nombre="Ana"),
                row(8, "10.0.0.8", nombre="Beto", ultimo_cambio=LATE),
            ],
            (),
            Footprint("Ana", ("10.0.0.8",)),
            id="a-lost-shared-address-is-still-claimed",
        ),
    ],
)
def test_footprint_after(rows, failed, footprint):
    settled = settle(rows, ["10.0.0.7", "10.0.0.8"], [ANA], RULES)
    assert footprint_after(7, WAS, settled, report_of(settled, failed)) == footprint


def test_a_group_is_remembered_until_its_delete_goes_through():
    cancelled = row(30, "10.3.0.1, 200.1.2.0/30", "Cancelado")
    settled = settle([cancelled], [], [], RULES, groups=["wisphub-30"], held_groups=[OURS])
    before = Footprint(group="wisphub-30")
    assert footprint_after(30, before, settled, report_of(settled)) is None
    failed = report_of(settled, ["wisphub-30"])
    assert footprint_after(30, before, settled, failed) == Footprint(group="wisphub-30")


# What a full sync leaves -----------------------------------------------------------------


def test_a_full_sync_remembers_winners_losers_and_leftovers():
    rows = [
        row(7, "10.0.0.7", nombre="Ana", ultimo_cambio=LATE),
        row(8, "10.0.0.7", nombre="Beto"),
        row(9, "10.0.0.9", "Cortado", nombre="Caro"),
    ]
    before = {5: Footprint("Dani", ("10.0.0.5",)), 9: Footprint("Caro", ("10.0.0.9",))}
    applied, claims = remembered(
        desired_state(rows, RULES),
        before,
        {"10.0.0.5": (5,), "10.0.0.6": (6,)},
        leftover=["10.0.0.5"],
    )
    assert claims == {"10.0.0.7": (7, 8), "10.0.0.9": (9,), "10.0.0.5": (5,)}
    assert applied == {
        7: Footprint("Ana", ("10.0.0.7",)),
        8: Footprint("", ("10.0.0.7",)),
        9: Footprint("Caro", ("10.0.0.9",)),
        5: Footprint("Dani", ("10.0.0.5",)),
    }


# Properties ------------------------------------------------------------------------------

POOL = [f"10.0.0.{n}" for n in range(1, 7)]
rows_strategy = st.lists(
    st.builds(
        row,
        st.integers(1, 12),
        st.sampled_from([*POOL, "N/A"]),
        st.sampled_from(["Activo", "Suspendido", "Cancelado", "Cortado"]),
        st.sampled_from(["Plan 10M", "Plan 20M"]),
        st.sampled_from(["Ana", "Beto"]),
        st.sampled_from([EARLY, LATE]),
    ),
    max_size=10,
    unique_by=lambda r: r["id_servicio"],
)
held_strategy = st.lists(
    st.builds(
        sub,
        st.sampled_from(POOL),
        st.sampled_from(["Ana", "Beto"]),
        st.sampled_from(["Plan_10M", "Wisphub_block"]),
        st.sampled_from(["rest", "rules"]),
    ),
    max_size=6,
    unique_by=lambda s: s.ip,
)


@given(rows_strategy, held_strategy, st.sets(st.sampled_from(POOL)))
def test_settling_addresses_agrees_with_a_full_sync_there_and_touches_nothing_else(
    rows, held, addresses
):
    desired = desired_state(rows, RULES)
    full, _ = diff_subscribers(desired.subscribers, held, desired.protected)
    settled = settle(rows, addresses, held, RULES)
    assert [op for op in settled.changes.operations if op.kind is Kind.SUBSCRIBER] == [
        op for op in full if op.key in addresses
    ]
    before = {s.ip: s for s in held}
    after = apply_to_state(settled.changes.operations, before)
    assert {ip: s for ip, s in after.items() if ip not in addresses} == {
        ip: s for ip, s in before.items() if ip not in addresses
    }


@given(rows_strategy)
def test_the_rightful_owner_comes_first_and_every_claimant_is_kept(rows):
    desired = desired_state(rows, RULES)
    claims = claims_in(desired, POOL)
    for ip, sub_ in desired.subscribers.items():
        assert claims[ip][0] == sub_.id_servicio
    for row_ in rows:
        if row_["estado"] != "Cancelado" and row_["ip"] in POOL:
            assert row_["id_servicio"] in claims[row_["ip"]]


def test_what_jobs_recorded_during_a_full_sync_is_kept_beside_it():
    """The pass had client 4 at .4; meanwhile 4 moved to .8 and 3 took .4, and their jobs
    recorded it. The full sync must not forget that 4 is at .8 and 3 claims .4."""
    rows = [row(4, "10.0.0.4", nombre="Ana"), row(3, "10.0.0.3", nombre="Beto")]
    live = {4: Footprint("Ana", ("10.0.0.8",)), 3: Footprint("Beto", ("10.0.0.4",))}
    live_claims = {"10.0.0.8": (4,), "10.0.0.4": (3,)}
    applied, claims = remembered(desired_state(rows, RULES), live, live_claims, touched={3, 4})
    assert claims == {"10.0.0.4": (4, 3), "10.0.0.3": (3,), "10.0.0.8": (4,)}
    assert applied == {
        4: Footprint("Ana", ("10.0.0.4", "10.0.0.8")),
        3: Footprint("Beto", ("10.0.0.3", "10.0.0.4")),
    }
