"""Level-triggered healing: the poller compares WispHub with the BQN itself, so a drift made by
hand on the BQN (a subscriber deleted or given another policy, a policy's rates changed, an
entry no client claims) is gone within two poll intervals, told apart in history and metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import API, BqnSim, WispHubSim, differences, managed_state
from tests.integration.processes import Processes, eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLL_INTERVAL = 3
ORPHAN, BY_RULES = "10.99.250.1", "10.99.250.2"


@pytest.fixture
def tenant(wisphub_sim: WispHubSim) -> list[dict]:
    """Forty clients in WispHub before the service starts."""
    return wisphub_sim.load(40)


@pytest.fixture
def stack(service_env: dict[str, str], redis, tenant) -> Iterator[Processes]:
    env = {
        **service_env,
        "POLL_INTERVAL": str(POLL_INTERVAL),
        "PLAN_REFRESH_INTERVAL": "0",
        "RECONCILE_ON_START": "0",
    }
    processes = Processes(env, ["web", "worker", "worker", "scheduler"])
    try:
        eventually(processes.ready, "the web process")
        yield processes
    finally:
        processes.stop()


def drift_corrected(stack: Processes) -> dict[str, float]:
    """`drift_corrected_total` by kind, as `/metrics` shows it."""
    text = requests.get(f"{stack.url}/metrics", headers=API, timeout=5).text
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "wisphub_bqn_sync_drift_corrected_total"
    }


@pytest.mark.timeout(180)
def test_drift_made_by_hand_on_the_bqn_is_gone_within_two_poll_intervals(
    stack, tenant, wisphub_sim: WispHubSim, bqn_sim: BqnSim
):
    # a fresh service: the poller's first pass finds the whole tenant missing on the BQN
    eventually(lambda: not differences(wisphub_sim, bqn_sim), "the first pass to heal all")
    held = managed_state(bqn_sim)
    first = len({r["id_servicio"] for r in tenant if r["ip"] in held})
    eventually(lambda: drift_corrected(stack).get("client") == first, "the first pass counted")
    before = drift_corrected(stack)
    active = [r for r in tenant if held.get(r["ip"]) and held[r["ip"]][1] != "Wisphub_block"]
    deleted, repoliced = active[0], active[1]
    plan_policy = held[active[2]["ip"]][1]
    state = bqn_sim.state
    with state.lock:  # an operator's afternoon on the BQN, all at once
        del state.subscribers[deleted["ip"]]
        state.subscribers[repoliced["ip"]]["policyRate"] = "Wisphub_block"
        state.policies[plan_policy]["rateLimitDownlink"]["rate"] = 1
        state.subscribers[ORPHAN] = {
            "subscriberIp": ORPHAN,
            "subscriberId": "nadie",
            "policyRate": plan_policy,
            "policyAssignedBy": "rest",
        }
    state.add_rules_subscriber(BY_RULES, "rate-default")
    made = time.monotonic()
    eventually(
        lambda: [d for d in differences(wisphub_sim, bqn_sim) if ORPHAN not in d] == [],
        "the subscribers and the policy to be put back",
    )
    took = time.monotonic() - made
    print(f"drift corrected {took:.2f} s after it was made (POLL_INTERVAL {POLL_INTERVAL} s)")
    assert took <= 2 * POLL_INTERVAL
    # an entry no client was ever seen claiming goes once two comparisons in a row agree
    eventually(lambda: not differences(wisphub_sim, bqn_sim), "the unclaimed entry to go")
    took = time.monotonic() - made
    print(f"unclaimed entry removed {took:.2f} s after it was made")
    assert took <= 3 * POLL_INTERVAL
    assert BY_RULES in bqn_sim.subscribers(), "entries of the BQN's own rules stay"
    expected = {"client": 2, "address": 1, "policy": 1}

    def counted() -> dict[str, float]:
        after = drift_corrected(stack)
        return {kind: after[kind] - before.get(kind, 0) for kind in after}

    eventually(lambda: counted() == expected, f"drift_corrected_total to count {expected}")
    history = requests.get(
        f"{stack.url}/api/v1/clients/{deleted['id_servicio']}/history", headers=API, timeout=5
    ).json()["events"]
    assert [e.get("via") for e in history if e["event"] == "queued"][:2] == ["drift", "drift"]
