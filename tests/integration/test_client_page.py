"""The status page's search box and a client's page (issue 17), rendered by the app against a
real Redis, real RQ workers and the HTTPS simulators."""

from __future__ import annotations

import re

import pytest

from service.app import create_app
from tests.integration.conftest import API, english, notify
from tests.integration.test_search import CLIENTS, PLAN, poll
from tests.rows import row
from worker.queue import queueing

pytestmark = pytest.mark.integration


def page(web, path, status=200):
    response = web.get(path, headers=API)
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def goes_to(web, path):
    """Where `path` redirects to (it must)."""
    response = web.get(path, headers=API)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return response.headers["Location"]


def section(html, name):
    """The page's `<section id=name>`, to its end."""
    start = html.index(f'<section id="{name}"')
    return html[start : html.index("</section>", start)]


def hits(html):
    return [int(key) for key in re.findall(r'<tr class="hit" id="hit-(\d+)">', html)]


def hand_set(bqn_sim, ip, policy):
    """Change a subscriber's policy on the BQN, as a person would in its console."""
    with bqn_sim.state.lock:
        bqn_sim.state.subscribers[ip]["policyRate"] = policy
        bqn_sim.state.reference_policy(policy)


@pytest.fixture
def polled(wisphub_sim, queue, redis, work):
    """The search's clients in WispHub, synced, and indexed by a poll."""
    for client in CLIENTS:
        wisphub_sim.state.upsert_client(client)
    poll(queue, redis, work)


# The search box ---------------------------------------------------------------------------


def test_the_box_finds_clients_by_name_with_or_without_accents_ip_and_cedula(web, polled):
    """Fails if the box still wants an id_servicio ("must be a positive whole number"), if
    accents or case matter, if one hit does not go straight to its page, if several are not
    listed, or if the cédula shows anywhere."""
    assert "must be a positive whole number" not in page(web, "/clients?q=jose+perez")
    for typed in ("jose perez", "JOSÉ PÉREZ", "pérez josé"):
        html = page(web, f"/clients?q={typed}")
        assert hits(html) == [101, 103]
        listed = section(html, "results")
        for shown in ("José Pérez", "PEREZ JOSE ANTONIO", "10.10.1.5", "Suspendido", PLAN):
            assert shown in listed
    for typed, key in (
        ("peralta", 102),
        ("Péralta", 102),  # an accent the name does not have
        ("perez jose antonio", 103),
        ("10.10.1.5", 101),
        ("jperez@isp", 101),
        ("1.234.567.890", 101),
        ("1234567890", 101),
        ("104", 104),
    ):
        assert goes_to(web, f"/clients?q={typed}") == f"/clients/{key}", typed
    assert hits(page(web, "/clients?q=10.10.1.")) == [101, 102]
    found_by_cedula = page(web, "/clients/101")
    assert "José Pérez" in found_by_cedula
    for shown in (found_by_cedula, page(web, "/clients?q=jose")):
        assert "1234567890" not in shown
        assert "1.234.567.890" not in shown


def test_a_hit_says_what_the_bqn_holds_and_how_the_last_sync_went(web, polled, bqn_sim):
    """Fails if a hit leaves out where the client is on the BQN or its last sync."""
    html = page(web, "/clients?q=jose")
    first = html[html.index('id="hit-101"') : html.index('id="hit-102"')]
    assert re.search(r'<span class="good">ok</span> \d+ s ago', first)
    assert "10.10.1.5" in first
    nothing = page(web, "/clients?q=nadie")
    assert 'id="no-hits"' in nothing


def test_before_the_first_pass_an_id_still_works(web, wisphub_sim):
    """Fails if the box finds nothing at all before the poller's first pass."""
    wisphub_sim.state.upsert_client(row(5, "10.1.0.5", nombre="Leo"))
    assert 'id="not-indexed"' in page(web, "/")
    assert goes_to(web, "/clients?q=5") == "/clients/5"
    assert "<h2>Leo <span" in page(web, "/clients/5")
    html = page(web, "/clients?q=leo")
    assert 'id="not-indexed"' in html
    assert hits(html) == []


# A client's page --------------------------------------------------------------------------


def test_the_client_page_marks_what_the_bqn_holds_differently(web, work, wisphub_sim, bqn_sim):
    """Fails if the page leaves out a section, shows WispHub without the BQN beside it, or
    does not mark the value someone changed by hand on the BQN."""
    wisphub_sim.state.upsert_client(row(1, "10.1.0.1", "Activo", "Online_basico", "Ana Gómez"))
    notify(web, 1)
    work()
    html = page(web, "/clients/1")
    for name in ("summary", "compare", "applied-section", "client-history"):
        assert f'<section id="{name}"' in html, name
    summary = section(html, "summary")
    for shown in ("Ana Gómez", "10.1.0.1", "Activo", PLAN, 'id="sync-now"', "what-would-change"):
        assert shown in summary
    assert re.search(r"\d+ Mbps down / [\d.]+ [kM]bps up", summary)
    assert 'id="in-step"' in section(html, "compare")
    assert "≠ differs" not in html
    assert "BQN: create subscriber 10.1.0.1 with policy Online_basico: done" in html

    hand_set(bqn_sim, "10.1.0.1", "Hand_Set")
    writes = bqn_sim.writes()
    compare = section(page(web, "/clients/1"), "compare")
    assert 'id="differ"' in compare
    [differs] = re.findall(r'<tr class="differs">(.*?)</tr>', compare, re.S)
    assert "policyRate" in differs
    assert differs.index("Hand_Set") < differs.index("Online_basico")  # the BQN's, then WispHub's
    assert "≠ differs" in differs
    assert re.search(r'<tr class="same">\s*<td rowspan="2">subscriber', compare)  # the name: same
    assert bqn_sim.writes() == writes, "looking at the page wrote to the BQN"


def test_what_would_change_shows_the_plan_and_writes_nothing(web, wisphub_sim, bqn_sim, queue):
    """Fails if "what would change" writes to the BQN, queues a job, or says nothing."""
    wisphub_sim.state.upsert_client(row(31, "10.31.0.1", "Suspendido", nombre="Lía"))
    html = page(web, "/clients/31/plan")
    changes = section(html, "changes")
    assert "create subscriber <code>10.31.0.1</code> with policy Wisphub_block" in changes
    assert "nothing was written" in changes
    assert "a sync would create it" in section(html, "compare")
    assert bqn_sim.writes() == 0
    assert queue.count == 0
    assert 'id="no-history"' in html
    assert 'id="changes"' not in page(web, "/clients/31")


def test_an_unknown_client_is_a_404_page_in_words(web, wisphub_sim):
    """Fails if a client nobody has shows an empty page that looks fine ("0 clients read")."""
    wisphub_sim.load(3)
    html = page(web, "/clients/999999", status=404)
    assert "WispHub has no client with id_servicio 999999" in html
    assert 'id="sync-now"' not in html
    assert "is not an id_servicio" in page(web, "/clients/abc", status=404)


def test_a_client_gone_from_wisphub_shows_what_its_removal_would_delete(web, work, wisphub_sim):
    wisphub_sim.state.upsert_client(row(2, "10.1.0.2", "Activo", "Online_basico", "Leo"))
    notify(web, 2)
    work()
    wisphub_sim.state.remove_client(2)
    html = page(web, "/clients/2")
    assert "WispHub has no client 2 any more" in html
    assert "a sync would delete it" in section(html, "compare")


# The overview: live, drift, plans -----------------------------------------------------------


def test_only_the_overview_reloads_itself(web, service_env, polled):
    """Fails if the overview does not reload itself, or if a page someone types in (a client,
    a search) reloads under their hands."""
    assert web.get("/", headers=API).headers["Refresh"] == "10"
    stopped = web.get("/?refresh=off", headers=API)
    assert "Refresh" not in stopped.headers
    assert 'id="start-refresh"' in stopped.get_data(as_text=True)
    for path in ("/clients/101", "/clients?q=jose", "/clients/101/plan", "/login"):
        assert "Refresh" not in web.get(path, headers=API).headers, path
    quick = english(create_app({**service_env, "STATUS_REFRESH_SECONDS": "3"}).test_client())
    assert quick.get("/", headers=API).headers["Refresh"] == "3"
    never = english(create_app({**service_env, "STATUS_REFRESH_SECONDS": "0"}).test_client())
    assert "Refresh" not in never.get("/", headers=API).headers


def test_the_poller_s_drift_shows_on_the_overview(web, polled, bqn_sim, queue, redis, work):
    """Fails if drift the poller found and corrected is not said in words."""
    poll(queue, redis, work)
    assert "No drift: the BQN matched WispHub." in section(page(web, "/"), "poll")
    hand_set(bqn_sim, "10.10.1.5", "Hand_Set")
    poll(queue, redis, work)
    drift = section(page(web, "/"), "poll")
    assert re.search(r"Drift: the BQN differed from WispHub</span> for 1 clients", drift)


def test_failures_name_their_client_and_link_to_its_page(web, polled, wisphub_sim, bqn_sim, work):
    """Fails if a failure lists only a number (issue 17, item 1)."""
    bqn_sim.state.faults.update(fail_every=1, fail_status=400, writes_only=True)
    wisphub_sim.state.update_client(102, estado="Suspendido")
    notify(web, 102)
    work()
    failures = section(page(web, "/"), "failures")
    assert '<a href="/clients/102">Josefina Peralta</a>' in failures


def test_the_plans_show_their_policy_state_on_the_bqn(web, work, queue, bqn_sim, service_env):
    """Fails if the overview leaves out the plans, or shows a state it did not read from the
    BQN (a policy changed by hand)."""
    assert "No plan catalogue is kept yet" in section(page(web, "/"), "plans")
    queueing.enqueue_plan_sync(queue)
    work()
    plans = section(page(web, "/"), "plans")
    states = dict(re.findall(r'<tr id="plan-(\d+)">.*?class="policy-([a-z-]+)', plans, re.S))
    assert "ok" in states.values()
    assert set(states.values()) <= {"ok", "left-for-the-operator"}
    listed = web.get("/api/v1/plans", headers=API).json["plans"]
    assert {str(p["id"]): p["bqn"].replace(" ", "-") for p in listed} == states
    [changed] = [p for p in listed if p["bqn"] == "ok"][:1]
    with bqn_sim.state.lock:
        bqn_sim.state.policies[changed["policy"]]["rateLimitDownlink"] = {"rate": 1}
    again = english(create_app(service_env).test_client())  # another process: nothing kept yet
    plans = section(again.get("/", headers=API).get_data(as_text=True), "plans")
    row_of = plans[plans.index(f'id="plan-{changed["id"]}"') :]
    assert row_of.split("</tr>")[0].count('class="policy-different') == 1


def test_with_the_bqn_down_the_pages_still_answer(polled, service_env):
    """Fails if a BQN that cannot be reached breaks the client page or the overview, or if
    they hide that it could not be read."""
    down = {**service_env, "BQN_URL": "127.0.0.1:9", "BQN_RETRIES": "0"}
    web = english(create_app(down).test_client())
    html = page(web, "/clients/101")
    assert "BQN unreachable" in section(html, "summary")
    assert "As WispHub's last complete pass had it" in section(html, "summary")
    assert "José Pérez" in html
    assert 'id="compare"' not in html
    assert "BQN unreachable" in section(page(web, "/"), "plans")
