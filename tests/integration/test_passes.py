"""No deletion on absence alone: a WispHub pass that changed while it was paged is read again,
and a client missing from a pass is confirmed with a single read before its entries go."""

from __future__ import annotations

import pytest
from rq.job import Job

from tests.integration.conftest import API, expected_subscribers, managed_state
from tests.rows import row
from worker.queue import store

pytestmark = pytest.mark.integration

PAGE = 10


@pytest.fixture
def service_env(service_env):
    """Small pages read one after another, so a test knows which page a change lands in."""
    return {**service_env, "WISPHUB_PAGE_SIZE": str(PAGE), "WISPHUB_CONCURRENCY": "1"}


def reconcile(web, work):
    job_id = web.post("/api/v1/reconcile", headers=API).json["job_id"]
    work()
    return web.get(f"/api/v1/jobs/{job_id}", headers=API).json


@pytest.mark.slow
@pytest.mark.parametrize("another_created", [False, True], ids=["deleted", "deleted-and-added"])
def test_a_row_deleted_during_a_paged_pass_loses_no_live_client(
    web, work, queue, redis, wisphub_sim, bqn_sim, another_created
):
    """Case 4: WispHub pages by offset in id order, so a row deleted while a reconcile reads
    page 2 shifts every later page by one: one live client is never read. The reconcile used
    to delete that client's subscriber."""
    rows = wisphub_sim.load(4 * PAGE)
    reconcile(web, work)
    state = wisphub_sim.state
    order = [r["id_servicio"] for r in rows]
    victim, skipped = order[3], order[2 * PAGE]  # read on page 1; shifted out of page 3
    assert managed_state(bqn_sim) == expected_subscribers(wisphub_sim.rows())
    skipped_ip = state.get_client(skipped)["ip"]
    assert skipped_ip in managed_state(bqn_sim)

    def between_pages(offset):
        if offset == 2 * PAGE and state.before_page is not None:
            state.before_page = None  # once
            state.remove_client(victim)
            if another_created:  # `count` adds up again: only the single read can tell
                state.upsert_client(row(99_999, "10.62.0.1", nombre="Nuevo"))

    state.before_page = between_pages
    view = reconcile(web, work)
    assert view["status"] == "finished"
    assert skipped_ip in managed_state(bqn_sim), "the live client kept its subscriber"
    if another_created:
        note = f"client {skipped} still claims an entry the pass gave nobody"
        assert note in view["report"]["notes"]
    # the poller compares the next pass with the BQN: what the shifted pass left is healed
    redis.set(store.SNAPSHOT_TAKEN, 0)
    poll = queue.enqueue("worker.jobs.poll_changes")
    work()
    assert Job.fetch(poll.id, connection=redis).return_value()["ok"]
    assert managed_state(bqn_sim) == expected_subscribers(wisphub_sim.rows())


def poll(queue, redis, work):
    """Run the poller once now, and what it queues."""
    if redis.exists(store.SNAPSHOT_TAKEN):
        redis.set(store.SNAPSHOT_TAKEN, 0)  # the last pass is old: this poll is not skipped
    job = queue.enqueue("worker.jobs.poll_changes")
    work()
    return Job.fetch(job.id, connection=redis).return_value()


@pytest.mark.slow
def test_an_entry_nobody_was_ever_seen_claiming_goes_when_two_comparisons_agree(
    work, queue, redis, wisphub_sim, bqn_sim
):
    """An entry the service never saw any client claim (left by the original script, or made
    by hand) has nobody to read again: the first pass of a fresh service removes nothing, and
    the entry goes once a second comparison in a row finds it claimed by nobody."""
    wisphub_sim.state.upsert_client(row(1, "10.62.0.1", nombre="Uno", plan="Online_basico"))
    bqn_sim.add_rest_subscriber("10.62.0.9", "viejo", "Online_basico")
    first = poll(queue, redis, work)
    assert first["first_pass"]
    assert first["drift"]["held_back"]
    assert managed_state(bqn_sim) == {
        "10.62.0.1": ("Uno", "Online_basico"),
        "10.62.0.9": ("viejo", "Online_basico"),
    }
    poll(queue, redis, work)
    assert managed_state(bqn_sim) == {"10.62.0.1": ("Uno", "Online_basico")}
