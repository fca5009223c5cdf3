"""No deletion on absence alone: a WispHub pass that changed while it was paged is read again,
and a client missing from a pass is confirmed with a single read before its entries go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rq.job import Job

from tests.integration.conftest import API, expected_subscribers, managed_state
from tests.rows import row
from worker.queue import client_overrides, store

pytestmark = pytest.mark.integration

PAGE = 10


def later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


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


def test_a_change_made_after_the_first_reconcile_read_wisphub_is_seen_by_the_first_poll(
    web, work, queue, redis, wisphub_sim, bqn_sim, monkeypatch
):
    """Issue 20, item 2: on a fresh Redis the first poll took its pass as a baseline, so a
    client cancelled (unannounced) after the start-up reconcile read WispHub kept its entry
    until a later comparison with the BQN (POLL_BQN_EVERY polls later). Fails if the
    reconcile's pass is not the first poll's baseline."""
    monkeypatch.setenv("POLL_BQN_EVERY", "1000")
    redis.incr(store.POLLS)  # this poll is not one that compares with the BQN
    for key in (1, 2):
        wisphub_sim.state.upsert_client(row(key, f"10.44.0.{key}"))
    assert reconcile(web, work)["status"] == "finished"
    wisphub_sim.state.upsert_client(row(2, "10.44.0.2", estado="Cancelado"))
    polled = poll(queue, redis, work)
    assert polled["first_pass"] is False
    assert polled["changed"] == [2]
    work()
    assert set(managed_state(bqn_sim)) == {"10.44.0.1"}


def test_after_a_forced_mass_removal_the_poller_holds_nothing_back(
    web, work, queue, redis, wisphub_sim, bqn_sim
):
    """Issue 20, item 9: WispHub really lost most clients and a forced reconcile removed them;
    the poller still held the vanished clients poll after poll (a guard trip each), and so
    never applied a later real removal. Fails if the forced pass is not the poller's
    baseline."""
    for key in range(1, 41):
        wisphub_sim.state.upsert_client(row(key, f"10.45.0.{key}"))
    reconcile(web, work)
    poll(queue, redis, work)
    with wisphub_sim.state.lock:
        for key in range(11, 41):
            del wisphub_sim.state.clients[key]
    assert poll(queue, redis, work)["held_back"]  # most clients vanished: held
    job_id = web.post("/api/v1/reconcile", json={"force": True}, headers=API).json["job_id"]
    work()
    assert web.get(f"/api/v1/jobs/{job_id}", headers=API).json["status"] == "finished"
    assert len(managed_state(bqn_sim)) == 10
    wisphub_sim.state.upsert_client(row(10, "10.45.0.10", estado="Cancelado"))  # a real one
    polled = poll(queue, redis, work)
    assert polled["held_back"] is None
    work()
    assert set(managed_state(bqn_sim)) == {f"10.45.0.{key}" for key in range(1, 10)}


def test_a_bulk_cancellation_is_held_by_the_poller_as_by_the_reconcile(
    web, work, queue, redis, wisphub_sim, bqn_sim
):
    """Issue 20, item 12: 35 % of the clients cancelled at once went through the poller (a
    sync each) while the nightly reconcile refused the same deletions. Fails if the poller
    queues their removal, or if the two paths disagree."""
    for key in range(1, 41):
        wisphub_sim.state.upsert_client(row(key, f"10.46.0.{key}"))
    reconcile(web, work)
    poll(queue, redis, work)
    promise = {"estado": "Activo", "until": later(3600), "reason": "promesa de pago"}
    assert web.post("/api/v1/clients/1/override", json=promise, headers=API).status_code == 202
    work()
    before = managed_state(bqn_sim)
    for key in range(1, 15):
        wisphub_sim.state.upsert_client(row(key, f"10.46.0.{key}", estado="Cancelado"))
    polled = poll(queue, redis, work)
    assert polled["held_back"].startswith("14 clients were cancelled at once")
    assert polled["jobs"] == []
    work()
    assert managed_state(bqn_sim) == before
    assert reconcile(web, work)["status"] == "failed"  # the reconcile holds them back too
    assert managed_state(bqn_sim) == before
    # nor does a held cancellation end the client's override (WispHub may be wrong)
    assert [o.id_servicio for o in client_overrides.every(redis)] == [1]

    forced = web.post("/api/v1/reconcile", json={"force": True}, headers=API).json["job_id"]
    work()
    assert web.get(f"/api/v1/jobs/{forced}", headers=API).json["status"] == "finished"
    assert set(managed_state(bqn_sim)) == {f"10.46.0.{key}" for key in range(15, 41)}
    assert client_overrides.every(redis) == []  # a cancellation that went through ends it
    assert poll(queue, redis, work)["held_back"] is None


def test_a_client_whose_reconcile_write_failed_is_synced_by_the_next_poll(
    web, work, queue, redis, wisphub_sim, bqn_sim, monkeypatch
):
    """The reconcile's pass becomes the poller's baseline: fails if a client whose write the
    BQN refused is in it as if applied (the next poll would see no change in it)."""
    monkeypatch.setenv("POLL_BQN_EVERY", "1000")
    redis.incr(store.POLLS)  # no poll here compares with the BQN: only its baseline counts
    wisphub_sim.state.upsert_client(row(1, "10.47.0.1"))
    reconcile(web, work)
    wisphub_sim.state.upsert_client(row(2, "10.47.0.2"))
    bqn_sim.state.faults.update(fail_next=1, fail_status=400, writes_only=True)
    assert reconcile(web, work)["status"] == "failed"
    assert set(managed_state(bqn_sim)) == {"10.47.0.1"}
    assert poll(queue, redis, work)["changed"] == [2]
    work()
    assert set(managed_state(bqn_sim)) == {"10.47.0.1", "10.47.0.2"}
