"""The failures list's life cycle, with real workers, a real Redis and the simulators: failures
read in words, leave the list when a person dismisses them, and resolve by themselves once what
they failed to do has gone through since (a client's later sync, the rest of a batch's clients,
a full reconcile)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from rq import Queue
from rq.job import Job, JobStatus

from tests.integration.conftest import API, API_TOKEN, BQN_PASSWORD, managed_state, notify
from tests.integration.test_status_page import basic, csrf_of
from tests.rows import row
from worker.queue import failures
from worker.rqworker import PromptStop

pytestmark = pytest.mark.integration

WRONG = "not-the-password"


def ip(key: int) -> str:
    return f"10.71.{key // 250}.{key % 250}"


def clients(wisphub_sim, *ids: int) -> list[int]:
    for key in ids:
        wisphub_sim.state.upsert_client(row(key, ip(key), nombre=f"C{key}", plan="Online_basico"))
    return list(ids)


def listing(web) -> dict:
    answer = web.get("/api/v1/failures", headers=API)
    assert answer.status_code == 200
    return answer.json


def all_of(html: str) -> dict:
    """What the page's "all" buttons send: the failures listed, and the newest one's place."""
    return {
        "csrf": csrf_of(html),
        "upto": re.search(r'name="upto" value="([^"]+)"', html).group(1),
        "listed": sorted(set(re.findall(r'name="listed" value="([^"]+)"', html))),
    }


def events(web, key: int) -> list[dict]:
    return web.get(f"/api/v1/clients/{key}/history", headers=API).json["events"]


def test_a_failure_reads_in_words(web, work, wisphub_sim, bqn_sim):
    """Fails with the module path (`worker.core.errors.ConfigError: …`) or the function's path
    (`worker.jobs.sync_plans()`) in the list; and if the next plan sync that goes through
    leaves the failed one listed, or resolves the clients' failures with it."""
    clients(wisphub_sim, 70, 71)
    bqn_sim.state.password = WRONG  # the BQN's REST password was changed on the BQN
    notify(web, 70)
    notify(web, 70, 71)  # coalesced for 70: one batch of the other
    web.post("/api/v1/plans/sync", headers=API)
    work()
    found = {f["description"]: f for f in listing(web)["failures"]}
    assert set(found) == {"sync of client 70", "batch of 1 client", "plan sync"}
    for failure in found.values():
        assert failure["error"].startswith("BQN answered 401: the BQN refused the REST user")
        assert "worker." not in failure["error"]
        assert "ConfigError" not in failure["error"]

    bqn_sim.state.password = BQN_PASSWORD  # fixed: the next plan sync goes through
    plans = web.post("/api/v1/plans/sync", headers=API).json["job_id"]
    work()
    after = listing(web)
    assert {f["description"] for f in after["failures"]} == {
        "sync of client 70",
        "batch of 1 client",
    }
    assert [(c["description"], c["by"]) for c in after["cleared"]] == [("plan sync", plans)]


def test_dismissing_one_then_all(web, work, wisphub_sim, bqn_sim, queue, redis):
    """Fails if a dismissed job stays in the failed registry (the gauge and its alert stay
    up), if an unknown id is not reported, if the clients' histories are not told, or if
    what a dismissed failure owed is not forgotten."""
    clients(wisphub_sim, 72, 73, 74)
    bqn_sim.state.password = WRONG
    first, second, third = notify(web, 72)[0], notify(web, 73)[0], notify(web, 74)[0]
    work()
    assert listing(web)["count"] == 3

    one = web.post("/api/v1/failures/dismiss", json={"job_ids": [first, "nope"]}, headers=API)
    assert one.status_code == 200
    assert one.json == {"dismissed": [first], "not_failed": ["nope"]}
    left = listing(web)
    assert left["count"] == 2
    assert queue.failed_job_registry.count == 2
    [cleared] = left["cleared"]
    assert (cleared["job_id"], cleared["cleared"], cleared["by"]) == (first, "dismissed", "api")
    assert cleared["description"] == "sync of client 72"
    assert events(web, 72)[0] == {**events(web, 72)[0], "event": "dismissed", "via": "api"}
    assert not redis.exists(failures.OWES_PREFIX + first)

    again = web.post("/api/v1/failures/dismiss", json={"job_ids": [first]}, headers=API).json
    assert again == {"dismissed": [], "not_failed": [first]}, "already dismissed"

    rest = web.post("/api/v1/failures/dismiss", json={}, headers=API)
    assert sorted(rest.json["dismissed"]) == sorted([second, third])
    after = listing(web)
    assert (after["count"], after["failures"]) == (0, [])
    assert [item["job_id"] for item in after["cleared"]][-1] == first
    assert queue.failed_job_registry.count == 0


@pytest.mark.parametrize(
    "body", [{"job_ids": "abc"}, {"job_ids": [1, 2]}, [1], {"job_ids": ["a b"]}]
)
def test_dismiss_checks_its_body(web, body):
    assert web.post("/api/v1/failures/dismiss", json=body, headers=API).status_code == 400


def test_a_failure_resolves_once_its_client_syncs_fine(web, work, wisphub_sim, bqn_sim, queue):
    """The BQN's password was wrong, then fixed: the client's next sync resolves the failure.
    Fails if a success leaves earlier failures of its client listed, or if an unrelated
    client's success resolves them."""
    clients(wisphub_sim, 80, 81, 82)
    bqn_sim.state.password = WRONG
    failed = {key: notify(web, key)[0] for key in (80, 81)}
    work()
    assert listing(web)["count"] == 2

    bqn_sim.state.password = BQN_PASSWORD  # the operator put the right one back
    [other] = notify(web, 82)
    work()
    assert listing(web)["count"] == 2, "client 82's sync resolves nothing of 80's or 81's"

    [fixed] = notify(web, 80)
    work()
    left = listing(web)
    assert [f["job_id"] for f in left["failures"]] == [failed[81]]
    assert queue.failed_job_registry.count == 1
    [cleared] = left["cleared"]
    assert (cleared["job_id"], cleared["cleared"], cleared["by"]) == (failed[80], "resolved", fixed)
    latest = events(web, 80)[0]
    assert (latest["event"], latest["job_id"], latest["by"]) == ("resolved", failed[80], fixed)
    assert other != fixed
    assert "10.71.0.80" in managed_state(bqn_sim)


def test_a_batch_failure_resolves_once_every_client_it_left_syncs(
    web, work, wisphub_sim, bqn_sim, queue
):
    """A batch refused for good for three clients: one client syncing fine is not enough;
    the other two, in a batch of their own, are. Fails if a batch failure resolves on its
    first client's success, or never through a batch's settled clients."""
    ids = clients(wisphub_sim, 90, 91, 92)
    bqn_sim.state.faults.update(fail_every=1, fail_status=400, writes_only=True)
    [batch] = set(notify(web, *ids))
    work()
    [failure] = listing(web)["failures"]
    assert (failure["job_id"], failure["clients"]) == (batch, ids)
    assert failure["description"] == "batch of 3 clients"

    bqn_sim.state.faults.clear()
    notify(web, 90)
    work()
    assert [f["job_id"] for f in listing(web)["failures"]] == [batch], "91 and 92 still owed"

    [later] = set(notify(web, 91, 92))
    work()
    after = listing(web)
    assert after["count"] == 0
    assert (after["cleared"][0]["job_id"], after["cleared"][0]["by"]) == (batch, later)
    for key in ids:
        assert any(e["event"] == "resolved" and e["job_id"] == batch for e in events(web, key))
    assert len(managed_state(bqn_sim)) == 3


def test_a_full_reconcile_resolves_the_failures_older_than_its_start(
    web, work, wisphub_sim, bqn_sim, queue
):
    """Fails if a reconcile that went through on every target leaves older failures listed,
    or resolves one that failed after it started."""
    clients(wisphub_sim, 95)
    bqn_sim.state.faults.update(fail_every=1, fail_status=400, writes_only=True)
    [failed] = notify(web, 95)
    work()
    assert listing(web)["count"] == 1
    stand_in = queue.enqueue("worker.jobs.reconcile")  # a reconcile that started before it
    queue.remove(stand_in)
    assert failures.resolve_all(stand_in, before=time.time() - 3600) == []
    assert listing(web)["count"] == 1

    bqn_sim.state.faults.clear()
    reconcile = web.post("/api/v1/reconcile", headers=API).json["job_id"]
    work()
    after = listing(web)
    assert after["count"] == 0
    assert (after["cleared"][0]["job_id"], after["cleared"][0]["by"]) == (failed, reconcile)
    assert any(e["event"] == "resolved" and e["by"] == reconcile for e in events(web, 95))


def test_the_page_dismisses_one_failure_or_all(web, work, wisphub_sim, bqn_sim):
    """Fails without the per-row and "Dismiss all" buttons, or if they skip the CSRF check."""
    clients(wisphub_sim, 96, 97, 98)
    bqn_sim.state.password = WRONG
    for key in (96, 97, 98):
        notify(web, key)
    work()
    auth = basic(API_TOKEN)
    html = web.get("/", headers=auth).get_data(as_text=True)
    assert "Failures (3)" in html
    assert "BQN answered 401" in html
    assert "worker.core.errors" not in html
    assert 'id="dismiss-all"' in html
    job_id = re.search(r'name="job_id" value="([^"]+)"', html).group(1)
    stale = web.post("/status/failures/dismiss", data={"job_id": job_id}, headers=auth)
    assert stale.status_code == 403
    one = web.post(
        "/status/failures/dismiss", data={"job_id": job_id, "csrf": csrf_of(html)}, headers=auth
    )
    assert one.status_code == 302
    html = web.get("/", headers=auth).get_data(as_text=True)
    assert "Failures (2)" in html
    assert re.search(r"Cleared lately:.*dismissed via status-page", html, re.S)
    clients(wisphub_sim, 99)
    notify(web, 99)  # fails after the page was drawn: "Dismiss all" on it leaves it
    work()
    web.post("/status/failures/dismiss", data=all_of(html), headers=auth)
    html = web.get("/", headers=auth).get_data(as_text=True)
    assert "Failures (1)" in html
    assert "sync of client 99" in html
    wrong = {**all_of(html), "upto": "nan"}
    assert web.post("/status/failures/dismiss", data=wrong, headers=auth).status_code == 400
    web.post("/status/failures/dismiss", data=all_of(html), headers=auth)
    html = web.get("/", headers=auth).get_data(as_text=True)
    assert "No failed jobs." in html


def test_a_failure_requeued_by_two_requests_at_once_runs_again_once(
    app, web, work, wisphub_sim, bqn_sim
):
    """Fails if each of several requests at once (a double click on "Requeue all", two
    operators) queues the failed job again: it must leave the list before it is queued."""
    clients(wisphub_sim, 95)
    bqn_sim.state.password = WRONG
    [job_id] = notify(web, 95)[:1]
    work()
    assert listing(web)["count"] == 1
    together = threading.Barrier(6)

    def requeue(_: int) -> list:
        client = app.test_client()
        together.wait()
        answer = client.post("/api/v1/failures/requeue", json={"job_ids": [job_id]}, headers=API)
        return answer.json["requeued"]

    with ThreadPoolExecutor(6) as pool:
        requeued = [item for answer in pool.map(requeue, range(6)) for item in answer]
    assert [item["failed_job_id"] for item in requeued] == [job_id]


class SucceedsFirst(PromptStop):
    """A worker that, as a job fails, runs `meanwhile` before RQ lists the failure: the newer
    job of the same client that another worker ran in that gap (the failed job's client lock
    was already free)."""

    meanwhile: Callable[[], None] = staticmethod(lambda: None)

    def handle_job_failure(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        self.meanwhile()
        super().handle_job_failure(job, queue, *args, **kwargs)


def test_a_failure_listed_after_its_client_synced_resolves_on_the_next_success(
    web, work, wisphub_sim, bqn_sim, queue
):
    """A client job fails; before RQ lists it, a newer job of its client goes through. Fails
    if that success drops the debt of the not-yet-listed failure (it would stay listed for
    good, its client synced), or resolves it before it is listed."""
    clients(wisphub_sim, 85)
    bqn_sim.state.password = WRONG
    [failed] = notify(web, 85)

    def newer_goes_through() -> None:
        bqn_sim.state.password = BQN_PASSWORD
        [newer] = notify(web, 85)
        job = queue.fetch_job(newer)
        queue.remove(job)
        assert job.perform().get("ok") is not False  # its whole lifecycle, as a worker runs it
        assert failures.place(queue, failed) is None, "not listed yet"

    worker = SucceedsFirst([queue], connection=queue.connection)
    worker.meanwhile = newer_goes_through
    worker.work(burst=True)
    assert [f["job_id"] for f in listing(web)["failures"]] == [failed]

    [later] = notify(web, 85)
    work()
    after = listing(web)
    assert after["count"] == 0
    assert queue.failed_job_registry.count == 0
    assert (after["cleared"][0]["job_id"], after["cleared"][0]["by"]) == (failed, later)


def test_a_debt_no_listed_failure_will_owe_is_dropped(queue, redis):
    """Fails if a debt stays owed by a job RQ queued again (its own retries) or by the job
    paying it, or if a running job's debt is dropped (it may be listed as failed next)."""
    running, retried, payer = (queue.enqueue("worker.jobs.sync_client", 86) for _ in range(3))
    running.set_status(JobStatus.STARTED)
    debt = failures.client_debt(86)
    for job in (running, retried, payer):
        failures.noted(redis, job)
    assert failures.went_through(payer, [debt]) == []
    assert redis.smembers(failures.OWED_PREFIX + debt) == {running.id.encode()}
