"""Correct under concurrency: random sequences of WispHub changes over a small pool of shared
IPs (moves, swaps, duplicates, cancels, re-activations, deletions, name sharing, plan renames),
applied by the Procfile's processes with three workers, against simulators with latency and
lost answers. After each sequence the BQN equals what WispHub says within seconds and stays so,
with no reconcile: through notifications alone, through the poller alone, and through both;
and with two sites' BQNs, each holding exactly the clients of its addresses."""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytest
import requests
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from rq import Queue
from rq.job import Job

from tests.integration.conftest import (
    BQN_PASSWORD,
    BQN_USER,
    HOOK,
    SECOND_BQN_PASSWORD,
    BqnSim,
    WispHubSim,
    differences,
    targets_env,
    write_targets,
)
from tests.integration.processes import Processes, eventually
from tests.rows import row
from worker.settings import ServiceSettings

pytestmark = [pytest.mark.integration, pytest.mark.faults]

WORKERS = 3
POOL = [f"10.70.0.{n}" for n in range(1, 6)]
CLIENTS = list(range(1, 8))
PLANS = [439219, 439305, 451072]  # Online_basico, Plan 10 Megas, Online Free
NAMES = ["Ana Pérez", "Beto", "Carolina"]
RENAMES = ["Plan Twin", "Plan_Twin", "Online Plus", "."]
ESTADOS = ["Activo", "Suspendido", "Cancelado", "Gratis"]
# Seconds the BQN may take to say what WispHub says after a sequence (a bound, not a speed).
CONVERGED_WITHIN = 30

clients, ips = st.sampled_from(CLIENTS), st.sampled_from(POOL)
client_steps = [
    st.tuples(st.just("move"), clients, ips),
    st.tuples(st.just("swap"), clients, clients),
    st.tuples(st.just("duplicate"), clients, clients),
    st.tuples(st.just("estado"), clients, st.sampled_from(ESTADOS)),
    st.tuples(st.just("plan"), clients, st.sampled_from(PLANS)),
    st.tuples(st.just("nombre"), clients, st.sampled_from(NAMES)),
    st.tuples(st.just("delete"), clients),
    st.tuples(st.just("create"), clients, ips, st.sampled_from(NAMES), st.sampled_from(PLANS)),
    st.tuples(st.just("pause"), st.sampled_from([0.05, 0.3])),
]
rename = st.tuples(st.just("rename"), st.sampled_from(PLANS), st.sampled_from(RENAMES))


def apply_step(wisphub: WispHubSim, step: tuple) -> set[int]:
    """Make one change in WispHub as its operators would; return the clients it changed."""
    state, kind = wisphub.state, step[0]
    if kind == "pause":
        time.sleep(step[1])
        return set()
    if kind == "rename":
        plan = dict(state.plans[step[1]])
        state.set_plan(**{**plan, "nombre": step[2]})
        return {r["id_servicio"] for r in wisphub.rows() if r["plan_internet"]["id"] == step[1]}
    if kind == "create":
        state.upsert_client(row(step[1], step[2], nombre=step[3]))
        state.update_client(step[1], plan_internet=step[4])
        return {step[1]}
    if kind == "delete":
        state.remove_client(step[1])
        return {step[1]}
    present = [key for key in step[1:3] if isinstance(key, int) and key in CLIENTS]
    if any(state.get_client(key) is None for key in present):
        return set()
    if kind == "swap":
        first, second = state.get_client(step[1]), state.get_client(step[2])
        state.update_client(step[1], ip=second["ip"])
        state.update_client(step[2], ip=first["ip"])
        return {step[1], step[2]}
    if kind == "duplicate":  # the second client is given the first one's IP by mistake
        state.update_client(step[2], ip=state.get_client(step[1])["ip"])
        return {step[2]}
    field = {"move": "ip", "estado": "estado", "plan": "plan_internet", "nombre": "nombre"}[kind]
    state.update_client(step[1], **{field: step[2]})
    return {step[1]}


@contextmanager
def started(
    env: dict[str, str], poll: int, wisphub_sim: WispHubSim, bqns: Sequence[BqnSim]
) -> Iterator[Processes]:
    """Web, three workers and the scheduler, polling every `poll` seconds (0: never); BQN
    writes are slow and one in nine loses its answer."""
    env = {
        **env,
        "POLL_INTERVAL": str(poll),
        "PLAN_REFRESH_INTERVAL": "0",
        "RECONCILE_ON_START": "0",
        "RETRY_INTERVALS": "1,1,1,2,2,2,5,5",
        "BQN_TIMEOUT": "1",
        "BQN_RETRIES": "2",
        "BQN_BACKOFF": "0.05",
    }
    wisphub_sim.state.faults.update(latency_ms=5)
    for bqn in bqns:
        bqn.state.faults.update(latency_ms=10, lose_every=9, stall_seconds=1.5, writes_only=True)
    processes = Processes(env, ["web", *["worker"] * WORKERS, "scheduler"])
    try:
        eventually(processes.ready, "the web process")
        yield processes
    finally:
        processes.stop()


@pytest.fixture
def stack(
    request: pytest.FixtureRequest,
    service_env: dict[str, str],
    redis,
    wisphub_sim: WispHubSim,
    bqn_sim: BqnSim,
) -> Iterator[Processes]:
    """The processes keeping one BQN, polling every `request.param` seconds."""
    with started(service_env, request.param, wisphub_sim, [bqn_sim]) as processes:
        yield processes


# Two sites over the same pool of addresses: a move within the pool may move a client from one
# site's BQN to the other's.
SITES = {
    "site-a": ipaddress.ip_network("10.70.0.0/30"),
    "site-b": ipaddress.ip_network("10.70.0.4/30"),
}


def at(site: str) -> Callable[[dict], bool]:
    """Whether a client's row puts it at `site` (written apart from the service's selectors)."""

    def takes(row: dict) -> bool:
        try:
            return ipaddress.ip_address(row["ip"]) in SITES[site]
        except ValueError:
            return False

    return takes


@pytest.fixture
def sites_stack(
    request: pytest.FixtureRequest,
    service_env: dict[str, str],
    redis,
    wisphub_sim: WispHubSim,
    bqn_sim: BqnSim,
    second_bqn: BqnSim,
    tmp_path,
) -> Iterator[Processes]:
    """The processes keeping site-a (`bqn_sim`) and site-b (`second_bqn`)."""
    targets = [
        {"name": name, "url": bqn.server.url, "user": BQN_USER, "password": password,
         "networks": [str(SITES[name])]}
        for name, bqn, password in (
            ("site-a", bqn_sim, BQN_PASSWORD),
            ("site-b", second_bqn, SECOND_BQN_PASSWORD),
        )
    ]  # fmt: skip
    env = targets_env(service_env, write_targets(tmp_path, targets))
    with started(env, request.param, wisphub_sim, [bqn_sim, second_bqn]) as processes:
        yield processes


def check(
    stack: Processes,
    wisphub: WispHubSim,
    bqns: Sequence[Kept],
    redis,
    sequence: list,
    *,
    notify: float,
    rng: random.Random,
    together: bool = False,
) -> float:
    """Apply `sequence`, notifying each change with probability `notify` (`together`: all of
    them in one notification at the end); wait until each BQN says what WispHub says of the
    clients it takes, and check they still do a moment later. Returns the seconds it took
    after the last change."""
    session = requests.Session()
    held: set[int] = set()
    for step in sequence:
        changed = apply_step(wisphub, step)
        if changed and rng.random() < notify:
            held |= set(changed)
        if held and not together:
            _notify(session, stack, held)
            held = set()
    if held:  # a burst: every change of the sequence in one notification (a batch job)
        _notify(session, stack, held)
    began = time.monotonic()
    while apart(wisphub, bqns) or syncing(redis):
        stack.check_alive()
        if time.monotonic() - began > CONVERGED_WITHIN:
            raise AssertionError(f"not converged after {sequence}: {apart(wisphub, bqns)}")
        time.sleep(0.1)
    took = time.monotonic() - began
    time.sleep(1)
    assert not apart(wisphub, bqns), f"converged, then changed again after {sequence}"
    failed = Queue(ServiceSettings.queue_name, connection=redis).failed_job_registry
    assert failed.count == 0, f"failed jobs after {sequence}"
    return took


SYNCS = ("worker.jobs.sync_client", "worker.jobs.sync_clients", "worker.jobs.sync_address")


def syncing(redis) -> bool:
    """Whether a sync job waits or runs: it may yet apply a state WispHub has since left (a
    sequence can end where it began, so the BQN may match before the jobs are done)."""
    queue = Queue(ServiceSettings.queue_name, connection=redis)
    ids = [
        *queue.get_job_ids(),
        *queue.started_job_registry.get_job_ids(),
        *queue.scheduled_job_registry.get_job_ids(),
    ]
    jobs = Job.fetch_many(ids, connection=redis)
    return any(job is not None and job.func_name in SYNCS for job in jobs)


# A BQN and the clients it takes (`None`: every one).
Kept = tuple[BqnSim, Callable[[dict], bool] | None]


def apart(wisphub: WispHubSim, bqns: Sequence[Kept]) -> list[str]:
    """Where the BQNs differ from WispHub, each for the clients it takes."""
    return [found for bqn, takes in bqns for found in differences(wisphub, bqn, takes)]


@pytest.mark.timeout(420)
@pytest.mark.parametrize(
    ("stack", "notify", "together", "steps"),
    [
        pytest.param(0, 1.0, False, st.one_of(client_steps), id="notifications-alone"),
        pytest.param(0, 1.0, True, st.one_of(client_steps), id="notified-in-bursts"),
        pytest.param(1, 0.0, False, st.one_of([*client_steps, rename]), id="poller-alone"),
        pytest.param(2, 0.5, False, st.one_of([*client_steps, rename]), id="both"),
    ],
    indirect=["stack"],
)
def test_any_sequence_of_changes_converges(
    stack, notify, together, steps, wisphub_sim, bqn_sim, redis
):
    converges(stack, wisphub_sim, [(bqn_sim, None)], redis, notify, together, steps)


@pytest.mark.timeout(420)
@pytest.mark.parametrize("sites_stack", [2], indirect=True)
def test_any_sequence_of_changes_converges_on_two_sites(
    sites_stack, wisphub_sim, bqn_sim, second_bqn, redis
):
    """Each site's BQN holds exactly its clients, moves between the sites included; half the
    changes notified, the poller finding the rest."""
    sites = [(bqn_sim, at("site-a")), (second_bqn, at("site-b"))]
    converges(sites_stack, wisphub_sim, sites, redis, 0.5, False, st.one_of(client_steps))


def converges(
    stack: Processes,
    wisphub: WispHubSim,
    bqns: Sequence[Kept],
    redis,
    notify: float,
    together: bool,
    steps: st.SearchStrategy,
) -> None:
    """Start every client, then check random sequences of `steps` (`check`)."""
    rng = random.Random(12)
    start = [
        ("create", key, POOL[key % len(POOL)], NAMES[key % len(NAMES)], PLANS[key % len(PLANS)])
        for key in CLIENTS
    ]
    check(stack, wisphub, bqns, redis, start, notify=1.0, rng=rng)
    times: list[float] = []

    @given(st.lists(steps, min_size=1, max_size=8))
    @settings(
        max_examples=8,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
    )
    def sequence_converges(sequence):
        took = check(
            stack, wisphub, bqns, redis, sequence, notify=notify, rng=rng, together=together
        )
        times.append(took)

    sequence_converges()
    print(f"converged {len(times)} times; slowest {max(times):.2f} s after the last change")


def _notify(session: requests.Session, stack: Processes, ids: set[int]) -> None:
    response = session.post(
        f"{stack.url}/webhooks/wisphub", json={"id_servicio": sorted(ids)}, headers=HOOK, timeout=10
    )
    assert response.status_code == 202, response.text


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stack", [0], indirect=True)
def test_two_clients_swapping_ips_both_keep_their_subscriber(stack, wisphub_sim, bqn_sim, redis):
    """Case 2: client 1 moves A→B while client 2 moves B→A, both notified, with several
    workers and no poller. Each job read both IPs, then deleted its old IP without looking
    again, after the other job had written there: one or both subscribers were lost in 6 of
    6 rounds."""
    rng = random.Random(2)
    start = [("create", 1, POOL[0], "Uno", PLANS[0]), ("create", 2, POOL[1], "Dos", PLANS[1])]
    one = [(bqn_sim, None)]
    check(stack, wisphub_sim, one, redis, start, notify=1.0, rng=rng)
    for _ in range(6):
        check(stack, wisphub_sim, one, redis, [("swap", 1, 2)], notify=1.0, rng=rng)
