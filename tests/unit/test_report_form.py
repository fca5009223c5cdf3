"""A report's dict form says all the CLI prints: the CLI prints a run of its own and a job the
service ran (`worker.handover`) from that form alone."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.ops import create, delete, update
from worker.cli import print_report
from worker.core.model import Action, Conflict, Kind, Operation, Skip
from worker.core.report import Report, summary

operations = st.builds(
    Operation,
    st.sampled_from(Action),
    st.sampled_from(Kind),
    st.text(min_size=1, max_size=20),
    st.dictionaries(st.sampled_from(["policyRate", "subscriberId"]), st.text(max_size=10)),
    st.none() | st.integers(1, 10**6),
    st.none() | st.sampled_from(["core-a", "core-b"]),
)


@given(operations)
def test_an_operation_comes_back_from_its_dict(op: Operation) -> None:
    assert Operation.from_dict(op.to_dict()) == op


def applied() -> Report:
    """A run: three writes planned, two through, one refused."""
    ok_create = create("10.0.0.1", policy="Basic", id_servicio=7)
    ok_delete = delete("10.0.0.9")
    refused = update("10.0.0.2", policy="Gold", id_servicio=8)
    report = Report(
        dry_run=False,
        clients=40,
        unchanged=37,
        skips=(Skip(9, "", "empty IP"),),
        conflicts=(Conflict("10.0.0.5", 11, (12,)),),
        planned=(ok_create, ok_delete, refused),
    )
    report.record_success(ok_create)
    report.record_success(ok_delete)
    report.record_failure(refused, "BQN answered 400", transient=False)
    return report


@pytest.mark.parametrize(
    ("report", "line"),
    [
        (
            applied(),
            "40 clients read; 3 operations: 1 created, 0 updated, 1 deleted, 37 unchanged, "
            "1 skipped, 1 failed; 1 IP conflicts",
        ),
        (
            Report(dry_run=True, clients=2, unchanged=1, planned=(delete("10.0.0.3"),)),
            "2 clients read; 1 operation planned (dry run): 0 created, 0 updated, 0 deleted, "
            "1 unchanged, 0 skipped, 0 failed",
        ),
        (
            Report(dry_run=False, clients=5, unchanged=5, guard="40 of 100 (40 %)"),
            "5 clients read; 0 operations: 0 created, 0 updated, 0 deleted, 5 unchanged, "
            "0 skipped, 0 failed; GUARD: 40 of 100 (40 %)",
        ),
    ],
)
def test_the_summary_line(report: Report, line: str) -> None:
    assert summary(report.to_dict()) == line


def test_the_printed_report_names_every_skip_conflict_and_failure() -> None:
    out = io.StringIO()
    print_report(applied().to_dict(), out)
    assert out.getvalue().splitlines() == [
        "skipped: client 9 ip '': empty IP",
        "conflict: 10.0.0.5 claimed by clients 11 (kept) and 12",
        "failed: update subscriber 10.0.0.2 policy=Gold (client 8): BQN answered 400",
        summary(applied().to_dict()),
    ]


def test_a_dry_run_prints_its_plan() -> None:
    out = io.StringIO()
    plan = (create("10.0.0.1", policy="Basic", id_servicio=7), delete("10.0.0.9"))
    print_report(Report(dry_run=True, clients=1, unchanged=0, planned=plan).to_dict(), out)
    assert out.getvalue().splitlines()[:2] == [
        "plan: create subscriber 10.0.0.1 policy=Basic (client 7)",
        "plan: delete subscriber 10.0.0.9",
    ]
