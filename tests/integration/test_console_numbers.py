"""Every number on the console right (issue 17): ages on the status page and in `/metrics`, the
reconcile records, a nonexistent client, the page with Redis down, a job's earlier error.
Real Redis, real RQ workers and the HTTPS simulators."""

from __future__ import annotations

import re
import time

import pytest

from sandbox.redis_server import RedisServer
from service.app import create_app
from tests.integration.conftest import API, API_TOKEN, english, notify
from tests.integration.test_metrics import scrape, value
from tests.rows import row
from worker.queue import queueing, store

pytestmark = pytest.mark.integration

# What a browser sends for a page.
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    """Retries a second apart; WispHub and the BQN tried once a call."""
    return {
        **service_env,
        "RETRY_INTERVALS": "1,1,1",
        "WISPHUB_RETRIES": "0",
        "BQN_RETRIES": "0",
    }


def section(html: str, name: str, following: str) -> str:
    """The status page's section `name`, up to the next one."""
    return html[html.index(f'id="{name}"') : html.index(f'id="{following}"')]


def reconciles(web) -> list[dict]:
    return web.get("/api/v1/reconciles", headers=API).json["reconciles"]


# Ages (item 3) ----------------------------------------------------------------------------


def test_the_last_complete_pass_shows_its_age(web, work, wisphub_sim, queue):
    """The age in seconds was read as a Unix time: "Last complete pass 20788 d ago"."""
    wisphub_sim.load(3)
    queue.enqueue(queueing.POLL_CHANGES.path)
    work()
    html = web.get("/", headers=API).get_data(as_text=True)
    assert re.search(r"Last complete pass [0-9] s ago\.", section(html, "poll", "chart"))


def test_a_poll_that_did_not_compare_shows_what_the_last_comparison_found(
    web, work, wisphub_sim, queue, redis, monkeypatch
):
    """With POLL_BQN_EVERY above 1, the page showed only the last poll's summary: a drift the
    poll before found vanished from it at the next poll. Fails if the comparison's drift and
    time are not kept apart from the summary of the polls that do not compare."""
    monkeypatch.setenv("POLL_BQN_EVERY", "2")
    wisphub_sim.load(3)  # clients no sync has put on the BQN: the comparison finds them
    polls = []
    for _ in range(2):
        redis.set(store.SNAPSHOT_TAKEN, 0)  # the last pass is old: the poll is not skipped
        queue.enqueue(queueing.POLL_CHANGES.path)
        work()
        polls.append(web.get("/", headers=API).get_data(as_text=True))
    compared, not_compared = (section(html, "drift", "chart") for html in polls)
    assert "Drift: the BQN differed from WispHub" in compared
    assert "the last that did" not in compared
    assert "This poll did not compare the BQN with WispHub" in not_compared
    assert "Drift: the BQN differed from WispHub" in not_compared
    assert re.search(r"the last that did, [0-9-]+ [0-9:]+ \S+ \([0-9]+ s ago\)", not_compared)


def test_the_oldest_queued_job_s_age_is_counted_in_any_time_zone(web, monkeypatch):
    """RQ 3 answers `get_job_ids(0, 0)` with no job at all: the age was always 0, and the
    queue-stuck alert could never fire. A zone far from UTC catches an age read from a UTC
    time as if it were local (five hours off)."""
    monkeypatch.setenv("TZ", "America/Bogota")
    time.tzset()
    try:
        notify(web, 1)  # no worker runs: it waits
        time.sleep(2.2)
        age = value(scrape(web), "queue_oldest_job_age_seconds")
        html = web.get("/", headers=API).get_data(as_text=True)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert 2 <= age < 60
    assert re.search(r"oldest [2-9] s", section(html, "queue", "client"))


# Reconcile records (item 4) ----------------------------------------------------------------


def test_a_retried_reconcile_keeps_one_record_with_every_key(web, work, settle, wisphub_sim, queue):
    """A failed run lacked `clients` and `counts` (the page said "? clients read"), and each
    retry of the job added a record of its own."""
    wisphub_sim.load(5)
    wisphub_sim.state.faults.update(fail_next=1000, fail_status=503)
    job_id = queueing.enqueue_reconcile(queue, dry_run=False)
    work()
    [failed] = reconciles(web)
    assert failed["job_id"] == job_id
    assert failed["ok"] is False
    assert "503" in failed["error"]
    assert failed["attempts"] == 1
    assert failed["clients"] == 0
    assert failed["report"] is None
    assert set(failed["counts"]) == {
        "created",
        "updated",
        "deleted",
        "unchanged",
        "skipped",
        "failed",
    }
    assert set(failed["counts"].values()) == {0}
    page = section(web.get("/", headers=API).get_data(as_text=True), "reconcile", "poll")
    assert "NOT OK" in page
    assert "0 clients read" in page

    wisphub_sim.state.faults.clear()
    settle()
    [done] = reconciles(web)
    assert done["job_id"] == job_id
    assert done["ok"] is True
    assert done["attempts"] == 2
    assert done["clients"] == 5
    assert set(done) == set(failed)
    page = section(web.get("/", headers=API).get_data(as_text=True), "reconcile", "poll")
    assert "5 clients read" in page
    assert "attempt 2" in page


def test_a_reconcile_every_target_refused_keeps_the_clients_it_read(
    web, work, wisphub_sim, bqn_sim, queue
):
    """The pass was read, then every BQN failed: the record says how many clients were read."""
    wisphub_sim.load(5)
    with bqn_sim.outage():
        queueing.enqueue_reconcile(queue, dry_run=False)
        work()
    [failed] = reconciles(web)
    assert failed["ok"] is False
    assert failed["clients"] == 5
    assert set(failed["counts"].values()) == {0}
    assert failed["targets"]["default"]["ok"] is False


# A nonexistent client, and a plan beside the BQN (item 6) -------------------------------------


def test_the_plan_of_a_client_nobody_has_is_a_404(web, wisphub_sim):
    """It answered "0 clients read … ok"."""
    wisphub_sim.load(3)
    response = web.get("/api/v1/clients/999999/plan", headers=API)
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
    assert "WispHub has no client 999999" in response.json["message"]


def test_a_client_s_plan_shows_the_bqn_s_values_beside_the_new_ones(web, work, wisphub_sim):
    """It showed the new values alone."""
    wisphub_sim.state.upsert_client(row(1, "10.1.0.1", "Activo", "Online_basico", "Ana"))
    notify(web, 1)
    work()
    wisphub_sim.state.update_client(1, plan_internet=451072)  # Online_Free
    answer = web.get("/api/v1/clients/1/plan", headers=API).json
    assert answer["in_wisphub"] is True
    [subscriber] = [e for e in answer["bqn"]["default"] if e["kind"] == "subscriber"]
    assert subscriber == {
        "kind": "subscriber",
        "key": "10.1.0.1",
        "now": {"subscriberId": "Ana", "policyRate": "Online_basico"},
        "after": {"subscriberId": "Ana", "policyRate": "Online_Free"},
        "change": "update",
    }


def test_a_client_gone_from_wisphub_shows_what_its_removal_would_delete(web, work, wisphub_sim):
    wisphub_sim.state.upsert_client(row(2, "10.1.0.2", "Activo", "Online_basico", "Leo"))
    notify(web, 2)
    work()
    wisphub_sim.state.remove_client(2)
    response = web.get("/api/v1/clients/2/plan", headers=API)
    assert response.status_code == 200
    assert response.json["in_wisphub"] is False
    [subscriber] = [e for e in response.json["bqn"]["default"] if e["kind"] == "subscriber"]
    assert subscriber["change"] == "delete"
    assert subscriber["now"]["policyRate"] == "Online_basico"
    assert subscriber["after"] is None


# The page with Redis down (item 8) ---------------------------------------------------------


def test_with_redis_down_a_browser_gets_a_page_and_the_api_json(service_env, tmp_path):
    """The page sent the API's raw JSON to a browser."""
    with RedisServer(tmp_path) as server:
        client = english(create_app({**service_env, "REDIS_URL": server.url}).test_client())
        assert client.post("/login", data={"token": API_TOKEN}).status_code == 302
        server.stop()
        page = client.get("/", headers=BROWSER)
        api = client.get("/api/v1/failures", headers={**API, **BROWSER})
        script = client.get("/", headers=API)
    assert page.status_code == 503
    assert page.mimetype == "text/html"
    assert 'id="unavailable"' in page.get_data(as_text=True)  # its words: test_page_language.py
    assert "script-src" not in page.headers["Content-Security-Policy"]  # the page's own rules
    assert api.status_code == 503
    assert api.json["error"] == "unavailable"
    assert script.status_code == 503
    assert script.json["error"] == "unavailable"


# A job's earlier error (item 8) ------------------------------------------------------------


def test_a_job_that_went_through_at_last_shows_its_error_as_earlier(
    web, work, settle, wisphub_sim, bqn_sim
):
    """A finished job still showed the first attempt's error as `last_error`."""
    wisphub_sim.state.upsert_client(row(8, "10.1.0.8"))
    bqn_sim.state.faults.update(fail_every=1, fail_status=503, writes_only=True)
    [job_id] = notify(web, 8)
    work()
    retrying = web.get(f"/api/v1/jobs/{job_id}", headers=API).json
    assert retrying["status"] == "retrying"
    assert "BQN answered 503" in retrying["last_error"]
    bqn_sim.state.faults.clear()
    settle()
    done = web.get(f"/api/v1/jobs/{job_id}", headers=API).json
    assert done["status"] == "finished"
    assert "last_error" not in done
    assert done["earlier_error"] == {"attempt": 1, "error": retrying["last_error"]}
