"""The pure parts of the history, the kept runs, the metrics tally and the status page."""

import json

import pytest
from flask import Flask
from flask_babel import Babel, force_locale

from service import i18n
from service.console import describe_event
from tests.rows import row
from worker import defaults
from worker.clients.http import operation
from worker.core.diff import Changes
from worker.core.model import Action, Kind, Operation, Skip
from worker.core.report import Report
from worker.queue import history, metrics, runs

CREATE = Operation(Action.CREATE, Kind.SUBSCRIBER, "10.0.0.1", {"policyRate": "P"}, 1)
POLICY = Operation(Action.UPDATE, Kind.POLICY, "P", {"rateLimitDownlink": {"rate": 10}})
DELETE = Operation(Action.DELETE, Kind.SUBSCRIBER, "10.0.0.9", {}, 2)


def report(*ops, skips=(), failures=()):
    result = Report.of(Changes(tuple(ops), unchanged=0, skips=skips, conflicts=()), dry_run=False)
    for op in ops:
        if op in failures:
            result.record_failure(op, "BQN answered 400", transient=False)
        else:
            result.record_success(op)
    return result


def test_each_operation_and_skip_becomes_an_event_of_its_client():
    done = report(
        POLICY,
        CREATE,
        DELETE,
        skips=(Skip(3, "", "no IP address"), Skip(5, "10.0.0.5", "IP also claimed by client 4")),
        failures=(DELETE,),
    )
    events = history.report_events(done, "job-1")
    assert [(key, event["event"]) for key, event in events] == [
        (None, "operation"),
        (1, "operation"),
        (2, "operation"),
        (3, "skipped"),
        (5, "skipped"),
    ]
    assert events[1][1] == {
        "event": "operation",
        "job_id": "job-1",
        "action": "create",
        "kind": "subscriber",
        "key": "10.0.0.1",
        "policy": "P",
        "result": "ok",
    }
    assert events[2][1]["result"] == "failed"
    assert events[2][1]["error"] == "BQN answered 400"
    assert events[2][1]["transient"] is False
    assert "policy" not in events[2][1]  # fields without a value are left out
    assert events[4][1]["reason"] == "IP also claimed by client 4"


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (None, {"found": False}),
        (
            row(1, "10.0.0.1", "Suspendido", "Plan 10M"),
            {"found": True, "estado": "Suspendido", "plan": "Plan 10M", "ip": "10.0.0.1"},
        ),
        (row(1, "", "Activo", None), {"found": True, "estado": "Activo", "ip": ""}),
    ],
)
def test_what_wisphub_said_keeps_state_plan_and_ip_only(client, expected):
    event = history.read_from_wisphub("j", client)
    assert event == {"event": "read", "job_id": "j", **expected}
    assert "nombre" not in json.dumps(event) or client is None


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            history.requested("webhook", "j1", coalesced=False),
            "sync asked for via webhook; queued as j1",
        ),
        (history.requested("poll", "j1", coalesced=True), "a waiting job will do it: j1"),
        (history.started("j", 2), "a worker started the job (attempt 2)"),
        (history.read_from_wisphub("j", None), "WispHub has no such client"),
        (history.retrying("j", "BQN unreachable"), "failed for now, will retry: BQN unreachable"),
        (history.failed("j", "BQN answered 400"), "FAILED, waiting in the failures list"),
        (history.finished("j", report(CREATE)), "done: 1 created"),
        (history.finished("j", report()), "done: nothing to change"),
        (history.finished("j", report(CREATE, failures=(CREATE,))), "done: 1 failed (not ok)"),
        (history.event("skipped", reason="no IP address"), "skipped: no IP address"),
    ],
)
def test_each_event_reads_as_a_sentence(event, line):
    assert line in describe_event(event)


def test_long_report_lists_are_cut_and_counted():
    kept = runs.trimmed({"skipped": list(range(120)), "notes": ["a"], "ok": True})
    assert len(kept["skipped"]) == defaults.RUN_LIST_ITEMS
    assert kept["skipped_total"] == 120
    assert kept["notes"] == ["a"]
    assert "notes_total" not in kept


def test_the_tally_keeps_cumulative_buckets():
    tally = metrics.Tally()
    labels = {"service": "bqn", "operation": "GET x"}
    name = "upstream_request_duration_seconds"
    tally.observe(name, 0.04, **labels)
    tally.count("jobs", job="sync_client", outcome="succeeded")
    pending = dict(tally._pending)
    for bound, le in zip(metrics.BUCKETS, metrics.BUCKET_LABELS, strict=True):
        field = metrics.field_name(name, {**labels, "le": le}, "bucket")
        assert pending.get(field, 0) == (1 if bound >= 0.04 else 0)
    assert pending[metrics.field_name(name, labels, "count")] == 1
    assert pending[metrics.field_name(name, labels, "sum")] == pytest.approx(0.04)
    assert pending[metrics.field_name("jobs", {"job": "sync_client", "outcome": "succeeded"})] == 1
    assert metrics.parse_field(metrics.field_name("jobs", {"job": "x"})) == (
        "jobs",
        "",
        {"job": "x"},
    )


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("GET", "/subscribers", "GET subscribers"),
        ("POST", "/subscribers/10.0.0.1", "POST subscribers/{key}"),
        ("PUT", "/policies/rate/Plan_10M", "PUT policies/rate/{key}"),
        ("GET", "/api/clientes/", "GET api/clientes"),
        ("GET", "/api/plan-internet/pppoe/3/", "GET api/plan-internet/{key}"),
        ("GET", "/somewhere", "GET other"),
    ],
)
def test_request_names_keep_ids_out_of_labels(method, path, name):
    collections = ("/subscribers", "/policies/rate", "/api/clientes/", "/api/plan-internet/")
    assert operation(method, path, collections) == name


@pytest.fixture
def spanish():
    """The page's Spanish, as the service's catalog has it."""
    app = Flask(__name__)
    Babel(app, default_translation_directories=str(i18n.TRANSLATIONS))
    with app.app_context(), force_locale("es"):
        yield


def test_an_override_s_reason_is_shown_as_typed(spanish):
    """Fails if the free text an operator typed is taken for a worker sentence and translated
    ("empty IP" would read "IP vacía", a "; " would split it); a skip's reason is translated."""
    assert describe_event(history.event("skipped", reason="empty IP")) == "omitido: IP vacía"
    event = {
        "event": "override",
        "kind": "estado",
        "value": "Activo",
        "until": "2026-12-08T00:00:00+00:00",
        "set_by": "api",
        "reason": "empty IP; no speeds",
    }
    assert "empty IP; no speeds" in describe_event(event)
