"""Suspended clients blocked or throttled (issue 18, item 2), with real workers, a real Redis and
the simulators: throttle mode puts its rate on the BQN in kbps, and switching mode converges
every suspended client through the poller's comparison with the BQN and through a reconcile,
with no notification."""

from __future__ import annotations

import pytest
from rq import Queue

from tests.integration.conftest import managed_state, notify
from tests.rows import row
from worker.queue import queueing, runtime, store

pytestmark = pytest.mark.integration

THROTTLE = {"SUSPENDED_ACTION": "throttle", "SUSPENDED_RATE": "256k/128k"}
ACTIVE, SUSPENDED = (181, "10.18.0.1"), (182, "10.18.0.2")
PLAN_POLICY = "Online_basico"


def clients(wisphub_sim) -> None:
    for (key, ip), estado in ((ACTIVE, "Activo"), (SUSPENDED, "Suspendido")):
        wisphub_sim.state.upsert_client(
            row(key, ip, estado=estado, nombre=f"C{key}", plan="Online_basico")
        )


def policies_held(bqn_sim) -> dict[str, str]:
    """Policy by IP of the two clients, as the BQN holds them."""
    held = managed_state(bqn_sim)
    return {ip: held.get(ip, ("", ""))[1] for ip in (ACTIVE[1], SUSPENDED[1])}


def rates(bqn_sim, policy: str) -> tuple[int, int]:
    fields = bqn_sim.policies()[policy]
    return fields["rateLimitDownlink"]["rate"], fields["rateLimitUplink"]["rate"]


def switch(monkeypatch, env: dict[str, str]) -> None:
    """Restart the workers with other settings (they read them once per process)."""
    for name in ("SUSPENDED_ACTION", "SUSPENDED_RATE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime.runtime.cache_clear()


def poll(queue: Queue, redis, work) -> None:
    redis.set(store.SNAPSHOT_TAKEN, 0)  # the last pass is old: this poll is not skipped
    queue.enqueue(queueing.POLL_CHANGES.path)
    work()  # the poll, then the syncs it queued


def test_throttle_mode_gives_suspended_clients_its_rate_in_kbps(
    web, work, wisphub_sim, bqn_sim, monkeypatch
):
    """Fails if a suspended client is still blocked, or the throttle policy lacks the rate."""
    switch(monkeypatch, THROTTLE)
    clients(wisphub_sim)
    notify(web, ACTIVE[0], SUSPENDED[0])
    work()
    assert policies_held(bqn_sim) == {ACTIVE[1]: PLAN_POLICY, SUSPENDED[1]: "Wisphub_throttle"}
    assert rates(bqn_sim, "Wisphub_throttle") == (256, 128)


def test_switching_mode_converges_by_the_poller_then_back_by_a_reconcile(
    web, work, wisphub_sim, bqn_sim, queue, redis, monkeypatch
):
    """Nothing announces a change of mode: fails if the poller's comparison does not see the
    suspended client on the other policy, or a reconcile leaves it there; the active client
    never moves."""
    clients(wisphub_sim)
    notify(web, ACTIVE[0], SUSPENDED[0])
    work()
    assert policies_held(bqn_sim) == {ACTIVE[1]: PLAN_POLICY, SUSPENDED[1]: "Wisphub_block"}

    switch(monkeypatch, THROTTLE)
    poll(queue, redis, work)
    assert policies_held(bqn_sim) == {ACTIVE[1]: PLAN_POLICY, SUSPENDED[1]: "Wisphub_throttle"}
    assert rates(bqn_sim, "Wisphub_throttle") == (256, 128)

    switch(monkeypatch, {"SUSPENDED_ACTION": "throttle", "SUSPENDED_RATE": "512k/256k"})
    queue.enqueue(queueing.RECONCILE.path)
    work()
    assert rates(bqn_sim, "Wisphub_throttle") == (512, 256)  # a new rate rewrites the policy

    switch(monkeypatch, {})
    queue.enqueue(queueing.RECONCILE.path)
    work()
    assert policies_held(bqn_sim) == {ACTIVE[1]: PLAN_POLICY, SUSPENDED[1]: "Wisphub_block"}
    assert rates(bqn_sim, "Wisphub_block") == (0, 0)
    assert "Wisphub_throttle" in bqn_sim.policies()  # unused now, never deleted


def test_a_block_policy_deleted_by_hand_is_put_back_before_a_client_is_blocked(
    web, work, wisphub_sim, bqn_sim
):
    """Issue 20, item 5: the workers' policy cache still had `Wisphub_block` after it was
    deleted on the BQN, so the next suspended client was written onto a name the BQN then
    showed as an "undefined" placeholder: unlimited. Fails if the suspended clients' policy is
    taken from the cache."""
    clients(wisphub_sim)
    notify(web, ACTIVE[0], SUSPENDED[0])
    work()  # the block policy is written, and kept in the worker's cache
    with bqn_sim.state.lock:
        del bqn_sim.state.policies["Wisphub_block"]
    wisphub_sim.state.upsert_client(
        row(ACTIVE[0], ACTIVE[1], estado="Suspendido", nombre=f"C{ACTIVE[0]}", plan="Online_basico")
    )
    notify(web, ACTIVE[0])
    work()
    assert policies_held(bqn_sim)[ACTIVE[1]] == "Wisphub_block"
    assert rates(bqn_sim, "Wisphub_block") == (0, 0)
