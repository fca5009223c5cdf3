"""Plans are known by id and their policy names are checked: a rename is seen at once, two
plans never share a policy, and no plan name addresses another BQN path."""

from __future__ import annotations

import pytest
from rq.job import Job

from tests.integration.conftest import API, managed_state, notify
from tests.rows import row
from worker.queue import store

pytestmark = pytest.mark.integration

X, Y = "10.61.0.1", "10.61.0.2"


def add_plan(state, plan_id, nombre, bajada, subida):
    state.set_plan(
        id=plan_id, nombre=nombre, tipo="PPPoE", bajada=bajada, subida=subida, precio="1.00"
    )


def two_clients_on(state, first, second):
    """Two plans (id, nombre, bajada, subida), client 1 (Uno, at X) on the first and client 2
    (Dos, at Y) on the second."""
    for id_servicio, nombre, ip, plan in ((1, "Uno", X, first), (2, "Dos", Y, second)):
        add_plan(state, *plan)
        state.upsert_client(row(id_servicio, ip, nombre=nombre))
        state.update_client(id_servicio, plan_internet=plan[0])


def rates(bqn_sim, name):
    policy = bqn_sim.policies()[name]
    return policy["rateLimitDownlink"]["rate"], policy["rateLimitUplink"]["rate"]


def policy_writes(bqn_sim):
    return sum(
        bqn_sim.state.stats.count(method, "/api/v1/policies/rate/<path:name>")
        for method in ("POST", "PUT")
    )


@pytest.mark.slow
def test_a_plan_renamed_in_wisphub_is_seen_at_once(web, work, wisphub_sim, bqn_sim, queue, redis):
    """Case 5: a plan renamed in WispHub keeps its id; jobs kept the old name from the kept
    catalogue, so the poller moved every client of the plan to a policy the BQN held as
    "undefined" (no rate limit), and the plan list still showed the old name."""
    state = wisphub_sim.state
    state.upsert_client(row(1, X, nombre="Uno", plan="Online_basico"))
    state.upsert_client(row(2, Y, nombre="Dos", plan="Online_basico"))
    notify(web, 1, 2)
    work()
    queue.enqueue("worker.jobs.poll_changes")  # the poller's baseline
    work()
    add_plan(state, 439219, "Online Plus", "10M", "5M")  # the same plan, renamed
    redis.set(store.SNAPSHOT_TAKEN, 0)
    poll = queue.enqueue("worker.jobs.poll_changes")
    work()
    assert Job.fetch(poll.id, connection=redis).return_value()["changed"] == [1, 2]
    assert managed_state(bqn_sim) == {X: ("Uno", "Online_Plus"), Y: ("Dos", "Online_Plus")}
    assert rates(bqn_sim, "Online_Plus") == (10_000, 5_000), "never an undefined policy"
    plans = {p["id"]: p for p in web.get("/api/v1/plans", headers=API).json["plans"]}
    assert (plans[439219]["name"], plans[439219]["policy"]) == ("Online Plus", "Online_Plus")
    assert plans[439219]["bqn"] == "ok"


@pytest.mark.slow
def test_two_plans_whose_names_differ_by_a_space_keep_their_own_speeds(
    web, work, wisphub_sim, bqn_sim
):
    """Case 6: `Plan Twin` and `Plan_Twin` made one policy whose speeds flipped at every
    reconcile; the higher plan id now gets its own, and the report says so."""
    two_clients_on(
        wisphub_sim.state, (500001, "Plan Twin", "10M", "2M"), (500002, "Plan_Twin", "20M", "4M")
    )
    first = web.post("/api/v1/reconcile", headers=API).json["job_id"]
    work()
    report = web.get(f"/api/v1/jobs/{first}", headers=API).json["report"]
    assert managed_state(bqn_sim) == {X: ("Uno", "Plan_Twin"), Y: ("Dos", "Plan_Twin-500002")}
    assert rates(bqn_sim, "Plan_Twin") == (10_000, 2_000)
    assert rates(bqn_sim, "Plan_Twin-500002") == (20_000, 4_000)
    assert any("plan 500002" in note and "Plan_Twin-500002" in note for note in report["notes"])
    writes = policy_writes(bqn_sim)
    web.post("/api/v1/reconcile", headers=API)
    notify(web, 1, 2)
    work()
    assert policy_writes(bqn_sim) == writes, "the speeds no longer flip"
    assert rates(bqn_sim, "Plan_Twin") == (10_000, 2_000)


def test_plans_named_dot_or_dot_dot_address_their_own_policy(
    web, work, wisphub_sim, bqn_sim, redis
):
    """Case 8: plans named `.` and `..` were resolved as path segments: their writes went to
    another BQN path and their clients' jobs retried for an hour."""
    two_clients_on(wisphub_sim.state, (500010, ".", "3M", "1M"), (500011, "..", "6M", "2M"))
    jobs = notify(web, 1, 2)
    work()
    assert [Job.fetch(job_id, connection=redis).get_status() for job_id in jobs] == [
        "finished",
        "finished",
    ]
    assert managed_state(bqn_sim) == {X: ("Uno", "_"), Y: ("Dos", "__")}
    assert rates(bqn_sim, "_") == (3_000, 1_000)
    assert rates(bqn_sim, "__") == (6_000, 2_000)
    assert bqn_sim.state.stats.count(kind="<unmatched>") == 0, "no write went to another path"


@pytest.mark.slow
def test_a_plan_no_client_has_renamed_to_a_twin_is_seen_by_the_next_poll(
    web, work, wisphub_sim, bqn_sim, queue, redis
):
    """Names are decided over the whole catalogue: a plan with no client renamed to another
    plan's name (found by the property test) takes the name if its id is lower, and the poller
    moves the other plan's clients to their own policy at once, not at the next refresh."""
    state = wisphub_sim.state
    state.upsert_client(row(1, X, nombre="Uno", plan="Plan 10 Megas"))  # plan 439305
    notify(web, 1)
    work()
    queue.enqueue("worker.jobs.poll_changes")
    work()
    add_plan(state, 439219, "Plan 10 Megas", "10M", "5M")  # Online_basico, no client, renamed
    redis.set(store.SNAPSHOT_TAKEN, 0)
    queue.enqueue("worker.jobs.poll_changes")
    work()
    assert managed_state(bqn_sim) == {X: ("Uno", "Plan_10_Megas-439305")}
    assert rates(bqn_sim, "Plan_10_Megas-439305") == (10_000, 3_000)
