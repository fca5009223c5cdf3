"""Temporary overrides (issue 18, item 3), with real workers, a real Redis and the simulators:
an override wins over WispHub through client jobs, notifications, the poller's comparison with
the BQN and a full reconcile; it ends by `DELETE`, by itself at its `until` (within seconds),
or when WispHub cancels the client; bad requests are refused with the reason."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue

from tests.integration.conftest import API, API_TOKEN, english, managed_state, notify
from tests.rows import row
from worker.queue import client_overrides, history, queueing, store

pytestmark = pytest.mark.integration

CLIENT, IP = 191, "10.19.0.1"
PLAN_POLICY = "Online_basico"
RATE_POLICY = f"Wisphub_override_{CLIENT}"


def client(wisphub_sim, estado: str = "Activo") -> None:
    wisphub_sim.state.upsert_client(row(CLIENT, IP, estado=estado, plan="Online_basico"))


def held(bqn_sim) -> str | None:
    """The policy the BQN gives the client's address (`None`: no entry)."""
    entry = managed_state(bqn_sim).get(IP)
    return None if entry is None else entry[1]


def until(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def set_override(web, **body):
    return web.post(f"/api/v1/clients/{CLIENT}/override", json=body, headers=API)


def events(redis, name: str) -> list[dict]:
    return [event for event in history.read(redis, CLIENT) if event["event"] == name]


def poll(queue: Queue, redis, work) -> None:
    redis.set(store.SNAPSHOT_TAKEN, 0)  # the last pass is old: this poll is not skipped
    queue.enqueue(queueing.POLL_CHANGES.path)
    work()


def test_a_rate_override_outlives_jobs_polls_and_a_reconcile_until_deleted(
    web, work, wisphub_sim, bqn_sim, queue, redis
):
    """Fails if a notification, the poller's BQN comparison or a full reconcile puts the
    client back on its plan while the override stands, if the rate is not on the BQN in kbps,
    or if `DELETE` does not bring the plan back; the history says who did what."""
    client(wisphub_sim)
    notify(web, CLIENT)
    work()
    poll(queue, redis, work)  # the poller's first pass: what the next one compares with
    assert held(bqn_sim) == PLAN_POLICY

    answer = set_override(web, rate="50M/10M", until=until(3600), reason="speed test")
    assert answer.status_code == 202, answer.json
    assert answer.json["override"]["rate"] == "50M/10M"
    work()
    assert held(bqn_sim) == RATE_POLICY
    fields = bqn_sim.policies()[RATE_POLICY]
    assert (fields["rateLimitDownlink"]["rate"], fields["rateLimitUplink"]["rate"]) == (
        50_000,
        10_000,
    )
    # another rate replaces it: the client's own policy is rewritten (no cache, no refresh)
    assert set_override(web, rate="20M/5M", until=until(3600), reason="x").status_code == 202
    work()
    fields = bqn_sim.policies()[RATE_POLICY]
    assert (fields["rateLimitDownlink"]["rate"], fields["rateLimitUplink"]["rate"]) == (
        20_000,
        5_000,
    )
    assert set_override(web, rate="50M/10M", until=until(3600), reason="speed test").json

    notify(web, CLIENT)
    work()
    polled = len(events(redis, "queued"))
    poll(queue, redis, work)  # it sees no change, and nothing to heal on the BQN
    assert len(events(redis, "queued")) == polled
    queueing.enqueue_reconcile(queue, dry_run=False)
    work()
    assert held(bqn_sim) == RATE_POLICY
    listed = web.get("/api/v1/overrides", headers=API).json["overrides"]
    assert [item["id_servicio"] for item in listed] == [CLIENT]

    removed = web.delete(f"/api/v1/clients/{CLIENT}/override", headers=API)
    assert removed.status_code == 202, removed.json
    work()
    assert held(bqn_sim) == PLAN_POLICY
    began = events(redis, "override")  # newest first
    assert [(e["kind"], e["value"], e["set_by"]) for e in began] == [
        ("rate", "50M/10M", "api"),
        ("rate", "20M/5M", "api"),
        ("rate", "50M/10M", "api"),
    ]
    ended = events(redis, "override_ended")
    assert [e["why"] for e in ended] == ["removed", "replaced", "replaced"]
    assert ended[0]["by"] == "api"
    assert web.delete(f"/api/v1/clients/{CLIENT}/override", headers=API).status_code == 404


def test_a_promise_to_pay_keeps_a_suspended_client_active_until_it_expires(
    web, work, settle, wisphub_sim, bqn_sim, redis
):
    """Fails if the suspended client is not shaped by its plan while the promise stands, or is
    not blocked again within seconds of `until` with nothing else asked for."""
    client(wisphub_sim, "Suspendido")
    notify(web, CLIENT)
    work()
    assert held(bqn_sim) == "Wisphub_block"

    # far enough ahead for the job below to run before it on a loaded machine
    answer = set_override(web, estado="Activo", until=until(8), reason="promesa de pago")
    assert answer.status_code == 202, answer.json
    ends = time.monotonic() + 8
    work()
    assert held(bqn_sim) == PLAN_POLICY
    settle(timeout=30)  # the expiry job waits in RQ's scheduled registry until `until`
    assert held(bqn_sim) == "Wisphub_block"
    assert time.monotonic() - ends < 7  # blocked again within seconds of `until`
    [ended] = events(redis, "override_ended")
    assert ended["why"] == "expired"
    assert client_overrides.every(redis) == []


def test_an_expired_override_is_ignored_even_if_nothing_ended_it(
    web, work, wisphub_sim, bqn_sim, queue, redis
):
    """Level-triggered: fails if a job applies an override whose `until` has passed because
    its expiry job has not run (no scheduler here), or if the poll leaves it kept."""
    client(wisphub_sim, "Suspendido")
    notify(web, CLIENT)
    work()
    set_override(web, estado="Activo", until=until(5), reason="promesa")
    ends = time.monotonic() + 5
    work()
    assert held(bqn_sim) == PLAN_POLICY
    time.sleep(max(0.0, ends - time.monotonic()) + 0.2)
    notify(web, CLIENT)
    work()
    assert held(bqn_sim) == "Wisphub_block"
    poll(queue, redis, work)
    assert client_overrides.every(redis) == []
    [ended] = events(redis, "override_ended")
    assert ended["why"] == "expired"


def test_a_cancellation_in_wisphub_ends_the_override(web, work, wisphub_sim, bqn_sim, redis):
    """Fails if an override keeps a cancelled client on the BQN, or outlives the
    cancellation."""
    client(wisphub_sim)
    set_override(web, policy="Plan_20_Megas", until=until(3600), reason="upgrade trial")
    work()
    assert held(bqn_sim) == "Plan_20_Megas"
    client(wisphub_sim, "Cancelado")
    notify(web, CLIENT)
    work()
    assert held(bqn_sim) is None
    assert client_overrides.every(redis) == []
    [ended] = events(redis, "override_ended")
    assert ended["why"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"policy": "Online_basico", "reason": "x"}, "until is required"),
        ({"policy": "Online_basico", "until": "2020-01-01T00:00:00Z", "reason": "x"}, "future"),
        ({"policy": "Online_basico", "until": 32 * 86400, "reason": "x"}, "31 days"),
        ({"policy": "Online_basico", "rate": "1M/1M", "until": 60, "reason": "x"}, "one"),
        ({"policy": "Plan_999", "until": 60, "reason": "x"}, "no plan's policy"),
        ({"rate": "lots/more", "until": 60, "reason": "x"}, "rate"),
        ({"estado": "Activo", "until": 60}, "reason"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(web, wisphub_sim, redis, body, words):
    """Fails if a bad override is taken (and kept), or the 400 does not say why. An `until`
    given in seconds is that far from when the test runs (not from when it was collected)."""
    client(wisphub_sim)
    if isinstance(body.get("until"), int):
        body = {**body, "until": until(body["until"])}
    answer = set_override(web, **body)
    assert answer.status_code == 400, answer.json
    assert words in answer.json["message"]
    assert client_overrides.every(redis) == []


def test_unknown_and_cancelled_clients_are_refused(web, wisphub_sim, redis):
    """Fails if an override is kept for a client WispHub does not have (404, as /plan) or
    has cancelled (409)."""
    body = {"estado": "Activo", "until": until(60), "reason": "x"}
    assert set_override(web, **body).status_code == 404
    client(wisphub_sim, "Cancelado")
    assert set_override(web, **body).status_code == 409
    assert client_overrides.every(redis) == []


def test_the_status_page_lists_an_override_and_ends_it(app, work, wisphub_sim, bqn_sim, redis):
    """Fails if the overview or the client's page does not show the override, if its end
    button works without the page's CSRF token, or if it does not end the override (noted in
    the history as removed via the status page) and bring the client back to its plan."""
    page = english(app.test_client())
    assert page.post("/login", data={"token": API_TOKEN}).status_code == 302
    client(wisphub_sim)
    set_override(page, policy="Plan_20_Megas", until=until(3600), reason="trial week")
    work()
    assert held(bqn_sim) == "Plan_20_Megas"
    overview = page.get("/").get_data(as_text=True)
    assert "Temporary overrides" in overview
    assert "policy Plan_20_Megas" in overview
    assert "trial week" in overview
    html = page.get(f"/clients/{CLIENT}").get_data(as_text=True)
    assert 'id="override"' in html
    assert "override: policy Plan_20_Megas until" in html

    form = {"id_servicio": str(CLIENT)}
    assert page.post("/status/overrides/end", data=form).status_code == 403
    assert client_overrides.every(redis) != []
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
    ended = page.post("/status/overrides/end", data={**form, "csrf": csrf})
    assert ended.status_code == 302
    work()
    assert held(bqn_sim) == PLAN_POLICY
    html = page.get(f"/clients/{CLIENT}").get_data(as_text=True)
    assert 'id="override"' not in html
    assert "removed via status-page" in html
    assert "None in force" in page.get("/").get_data(as_text=True)


def test_a_bad_override_is_a_400_even_with_wisphub_down(web, wisphub_sim, redis):
    """The body is checked before WispHub is read: fails if a mistake in it answers 502
    while WispHub is away (the operator would think WispHub the problem)."""
    with wisphub_sim.outage():
        answer = set_override(web, estado="Activo", until=until(60))
    assert answer.status_code == 400, answer.json
    assert "reason" in answer.json["message"]
