"""What batches are made of (pure): how a request's clients are split, a pass's rows by client,
and one client's part of a several-client report."""

from hypothesis import given
from hypothesis import strategies as st

from tests.rows import row
from worker.core.changes import rows_by_id
from worker.core.diff import Changes
from worker.core.model import Action, Footprint, Kind, Operation, Skip
from worker.core.report import Report
from worker.queue.batch import _owner, _owners
from worker.queue.queueing import batches


@given(st.lists(st.integers(), unique=True, max_size=600), st.integers(1, 300))
def test_a_request_is_split_into_the_fewest_batches_in_order(ids, size):
    parts = batches(ids, size)
    assert [key for part in parts for key in part] == ids
    assert all(0 < len(part) <= size for part in parts)
    assert len(parts) == -(-len(ids) // size)


def test_batches_are_about_even():
    assert [len(part) for part in batches(list(range(251)), 250)] == [126, 125]
    assert [len(part) for part in batches(list(range(2000)), 250)] == [250] * 8
    assert batches([7], 250) == [[7]]
    assert batches([], 250) == []


def test_rows_by_id_leave_out_rows_without_one():
    rows = [row(1, "10.0.0.1"), {**row(2, "10.0.0.2"), "id_servicio": None}, row(3, "10.0.0.3")]
    assert sorted(rows_by_id(rows)) == [1, 3]


def test_a_clients_part_of_a_report():
    policy = Operation(Action.CREATE, Kind.POLICY, "Plan_10M")
    ana = Operation(Action.UPDATE, Kind.SUBSCRIBER, "10.0.0.1", {"policyRate": "x"}, 1)
    bea = Operation(Action.CREATE, Kind.SUBSCRIBER, "10.0.0.2", {"policyRate": "x"}, 2)
    gone = Operation(Action.DELETE, Kind.SUBSCRIBER, "10.0.0.3", {}, 2)
    skip = Skip(3, "", "no IP")
    report = Report.of(Changes((policy, ana, bea, gone), skips=(skip,)), dry_run=False)
    for op in (policy, ana, gone):
        report.record_success(op)
    report.record_failure(bea, "BQN answered 503", transient=True)

    ana_part, bea_part, other = (report.for_client(key) for key in (1, 2, 3))
    assert report.for_client(3, ["10.0.0.3"]).deleted == 0, "named for client 2"
    unnamed = Operation(Action.DELETE, Kind.SUBSCRIBER, "10.0.0.9")
    report = Report.of(Changes((unnamed,)), dry_run=False)
    report.record_success(unnamed)
    assert report.for_client(4, ["10.0.0.9"]).deleted == 1, "the address it had"
    assert report.for_client(5, ["10.0.0.8"]).deleted == 0
    assert ana_part.ok
    assert (ana_part.updated, ana_part.created, ana_part.deleted) == (1, 0, 0)
    assert not bea_part.ok
    assert bea_part.counts()["deleted"] == 1
    assert bea_part.counts()["failed"] == 1
    assert other.counts()["skipped"] == 1
    assert other.planned == ()


def test_a_deletion_belongs_to_the_client_that_had_the_address():
    owners = _owners(
        {1: Footprint("Ana", ("10.0.0.1",), None), 2: None},
        {1: Footprint("Ana", ("10.0.0.5",), None), 2: Footprint("Bea", ("10.0.0.2",), "g-2")},
    )
    assert owners == {"10.0.0.1": 1, "10.0.0.5": 1, "10.0.0.2": 2, "g-2": 2}
    moved = Operation(Action.DELETE, Kind.SUBSCRIBER, "10.0.0.1")
    assert _owner(moved, owners) == 1
    assert _owner(Operation(Action.DELETE, Kind.GROUP, "g-2"), owners) == 2
    assert _owner(Operation(Action.DELETE, Kind.SUBSCRIBER, "10.9.9.9"), owners) is None
    named = Operation(Action.CREATE, Kind.SUBSCRIBER, "10.0.0.2", {}, 7)
    assert _owner(named, owners) == 7, "an operation naming its client keeps it"
