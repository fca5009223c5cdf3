"""The HTTP API fuzzed from its OpenAPI document (schemathesis): no input yields a 5xx, and
every answer matches the document."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from rq import Worker
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from tests.integration.conftest import API_TOKEN, WEBHOOK_SECRET

pytestmark = pytest.mark.integration


@pytest.fixture
def ready(queue):
    """A registered worker, so that /readyz can answer 200."""
    worker = Worker([queue], connection=queue.connection)
    worker.register_birth()
    yield
    worker.register_death()


@pytest.mark.slow
def test_no_input_yields_a_server_error(app, ready):
    """Every documented operation, fed generated input (schemathesis strategies driven by
    hypothesis directly: its pytest plugin does not run under this pytest yet)."""
    api = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in api.get_all_operations()]
    mutating = {op.label for op in operations if op.method.upper() == "POST"}
    assert mutating == {
        "POST /webhooks/wisphub",
        "POST /api/v1/clients/{id_servicio}/sync",
        "POST /api/v1/clients/{id_servicio}/override",
        "POST /api/v1/reconcile",
        "POST /api/v1/failures/requeue",
        "POST /api/v1/failures/dismiss",
        "POST /api/v1/pause",
        "POST /api/v1/resume",
        "POST /api/v1/plans/sync",
        "POST /login",
        "POST /logout",
        "POST /status/clients/sync",
        "POST /status/overrides/end",
        "POST /status/failures/requeue",
        "POST /status/failures/dismiss",
        "POST /status/pause",
        "POST /status/resume",
    }

    for operation in operations:
        if operation.path.startswith("/webhooks"):
            # Any one accepted form of the secret lets a notification in, so a wrong
            # X-Webhook-Token beside the right bearer is accepted by design (auth failures
            # are tested one by one in test_service_api).
            fuzz(operation, {"Authorization": f"Bearer {WEBHOOK_SECRET}"}, [ignored_auth])
        elif operation.path.endswith("/override") and operation.method.upper() == "POST":
            # Whether an override's body is good depends on the clock (`until` in the future,
            # within OVERRIDE_MAX_DAYS) and on the plan catalogue (its `policy`), which no
            # schema says: a schema-valid body may rightly answer 400.
            fuzz(operation, {"Authorization": f"Bearer {API_TOKEN}"}, [positive_data_acceptance])
        else:
            fuzz(operation, {"Authorization": f"Bearer {API_TOKEN}"}, [])


def fuzz(operation, headers, excluded):
    """Generated calls of one operation; each answer is checked against the document (status
    documented, schema matched, content type) and must not be a 5xx."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case):
        case.call_and_validate(headers=headers, excluded_checks=excluded)

    check()


def test_the_document_is_served_and_lists_every_route(app, web):
    document = web.get("/openapi.json").json
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    routes = {
        (re.sub(r"<(\w+)>", r"{\1}", rule.rule).replace("{raw_id}", "{id_servicio}"), method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if rule.endpoint != "static"
    }
    assert documented == routes
