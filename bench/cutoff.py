"""Cut-off day: many clients change at once, and how long the service takes to put all of them
on the BQN, with what it costs per changed client. Prints one table.

    python -m bench.cutoff [--clients 10000] [--changed 2000] [--latency 20] [--workers 1]

The Procfile's processes (web, `--workers` workers, the scheduler with `POLL_INTERVAL` 10 s)
run against the simulators with `--latency` ms added to every request. Once the start-up
reconcile has put the BQN in line:

- unannounced: `--changed` active clients are suspended in WispHub at once, with no
  notification; timed from the last change until the BQN blocks all of them (the poller must
  find them);
- notified: the same clients are reactivated and notified in requests of 100 ids; timed from
  the last request until the BQN gives all of them their plans back.

Each row counts the BQN and WispHub requests the simulators served and the Redis commands the
server processed during the phase, per changed client. Both paths run in turn, each with its
own Redis and processes: one job per client (`BATCH_SIZE=1`, the baseline) and batches (the
default `BATCH_SIZE`).
"""

from __future__ import annotations

import argparse
import ipaddress
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import requests
from redis import Redis

from bench.stack import (
    START_SECONDS,
    Simulator,
    bqn,
    cpu_share,
    machine,
    redis_server,
    sync_env,
    table,
    wisphub,
)
from sandbox.processes import Processes
from worker import defaults
from worker.clients.wisphub import WispHubClient
from worker.settings import Settings

SECRET, TOKEN = "bench-webhook-secret", "bench-api-token-0001"
POLL_SECONDS = 10
NOTIFICATION_IDS = 100
CONVERGE_SECONDS = 900
# The paths measured, each in its own run of the processes: the baseline first.
PATHS = (("one job per client", 1), ("batches", defaults.BATCH_SIZE))
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cutoff")
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=2_000)
    parser.add_argument("--latency", type=int, default=20, help="added ms per request")
    parser.add_argument(
        "--workers", type=int, default=1, help="the Procfile's worker processes (each a pool)"
    )
    args = parser.parse_args(argv)
    rows = []
    with wisphub(args.clients) as wisphub_sim, bqn() as bqn_sim:
        for path, batch_size in PATHS:
            with redis_server() as redis_url:
                env = {
                    **sync_env(wisphub_sim, bqn_sim),
                    "REDIS_URL": redis_url,
                    "WEBHOOK_SECRET": SECRET,
                    "API_TOKEN": TOKEN,
                    "POLL_INTERVAL": str(POLL_SECONDS),
                    "PLAN_REFRESH_INTERVAL": "0",
                    # measured: the service's own path, not its limits against floods
                    "WEBHOOK_RATE_LIMIT": "off",
                    "MAX_QUEUED_JOBS": "10000000",
                    "BATCH_SIZE": str(batch_size),
                }
                processes = Processes(env, ["web", "scheduler"] + ["worker"] * args.workers)
                try:
                    rows += cutoff(
                        processes,
                        env,
                        path=path,
                        wisphub_sim=wisphub_sim,
                        bqn_sim=bqn_sim,
                        redis=Redis.from_url(redis_url),
                        args=args,
                    )
                finally:
                    processes.stop()
                    for sim in (wisphub_sim, bqn_sim):
                        sim.latency(0)
    headers = [
        "path",
        "variant",
        "changed",
        "converged",
        "BQN req/client",
        "WispHub req/client",
        "Redis cmd/client",
        "simulators' CPU",
    ]
    print(
        f"\n### Cut-off ({machine()}; {args.clients:,} clients, {args.latency} ms added, "
        f"{args.workers} workers, POLL_INTERVAL {POLL_SECONDS} s)\n"
    )
    print(table(headers, rows))


def cutoff(
    processes: Processes,
    env: dict[str, str],
    *,
    path: str,
    wisphub_sim: Simulator,
    bqn_sim: Simulator,
    redis: Redis,
    args: argparse.Namespace,
) -> list[list[str]]:
    """Both variants, one row each."""
    _wait(lambda: processes.ready("/readyz"), START_SECONDS, "the service to start")
    _wait(lambda: _reconciled(processes.url), CONVERGE_SECONDS, "the start-up reconcile")
    chosen = dict(list(_active(env, bqn_sim).items())[: args.changed])
    if len(chosen) < args.changed:
        raise RuntimeError(f"only {len(chosen)} active clients with an address of their own")
    for sim in (wisphub_sim, bqn_sim):
        sim.latency(args.latency)
    blocked = dict.fromkeys(chosen.values(), "Wisphub_block")
    ids = list(chosen)

    def suspend() -> None:
        _patch(wisphub_sim, ids, {"estado": "Suspendido"})

    def reactivate() -> None:
        _patch(wisphub_sim, ids, {"estado": "Activo"})
        _notify(processes.url, ids)

    restored = dict(_policies(bqn_sim, chosen.values()))
    rows = []
    for variant, change, wanted in (
        ("unannounced", suspend, blocked),
        ("notified", reactivate, restored),
    ):
        seconds, costs, simulators = _phase(change, wanted, wisphub_sim, bqn_sim, redis)
        rows.append(
            [
                path,
                variant,
                f"{len(ids):,}",
                f"{seconds:.1f} s",
                *(f"{cost / len(ids):.1f}" for cost in costs),
                simulators,
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
    return rows


def _phase(
    change: Callable[[], None],
    wanted: dict[str, str],
    wisphub_sim: Simulator,
    bqn_sim: Simulator,
    redis: Redis,
) -> tuple[float, tuple[int, int, int], str]:
    """Seconds from the end of `change` until the BQN holds `wanted` (IP -> policy), the
    BQN requests, WispHub requests and Redis commands spent meanwhile, and the share of the
    CPU the simulators used until then."""
    sims = (wisphub_sim, bqn_sim)
    for sim in sims:
        sim.reset_stats()
    commands = _commands(redis)
    change()
    changed = time.monotonic()
    cpu = [sim.cpu_seconds() for sim in sims]
    _wait(lambda: _holds(bqn_sim, wanted), CONVERGE_SECONDS, "the BQN to converge")
    seconds = time.monotonic() - changed
    served = (bqn_sim.requests_served(), wisphub_sim.requests_served())
    return seconds, (*served, _commands(redis) - commands), cpu_share(sims, cpu, seconds)


def _reconciled(url: str) -> bool:
    """Whether the start-up reconcile has ended."""
    answer = requests.get(
        f"{url}/api/v1/reconciles", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    return answer.ok and bool(answer.json()["reconciles"])


def _active(env: dict[str, str], bqn_sim: Simulator) -> dict[int, str]:
    """Active clients with one plain IPv4 address of their own that the BQN gives a plan's
    policy (id -> IP), by id."""
    client = WispHubClient(Settings.from_env(env).wisphub)
    try:
        rows = client.list_clients()
    finally:
        client.close()
    seen = Counter(str(row.get("ip")) for row in rows)
    candidates = {
        int(row["id_servicio"]): str(row["ip"])
        for row in rows
        if row.get("estado") == "Activo" and seen[str(row.get("ip"))] == 1 and _ipv4(row["ip"])
    }
    policies = dict(_policies(bqn_sim, candidates.values()))
    return {
        key: ip
        for key, ip in sorted(candidates.items())
        if policies.get(ip) not in (None, "Wisphub_block")
    }


def _ipv4(text: object) -> bool:
    try:
        return ipaddress.ip_address(str(text)).version == 4 and str(text).strip() == str(text)
    except ValueError:
        return False


def _policies(bqn_sim: Simulator, ips: Iterable[str]) -> list[tuple[str, str]]:
    """(IP, policy) of the BQN's subscribers at `ips`."""
    wanted = set(ips)
    return [
        (item["subscriberIp"], item.get("policyRate"))
        for item in bqn_sim.control("GET", "state")["subscribers"]
        if item.get("subscriberIp") in wanted
    ]


def _holds(bqn_sim: Simulator, wanted: dict[str, str]) -> bool:
    return dict(_policies(bqn_sim, wanted)) == wanted


def _patch(wisphub_sim: Simulator, ids: list[int], fields: dict[str, str]) -> None:
    """Change every client in WispHub as fast as the simulator takes it."""
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: wisphub_sim.control("PATCH", f"clients/{key}", json=fields), ids))


def _notify(url: str, ids: list[int]) -> None:
    session = requests.Session()
    for start in range(0, len(ids), NOTIFICATION_IDS):
        response = session.post(
            f"{url}/webhooks/wisphub",
            json={"id_servicio": ids[start : start + NOTIFICATION_IDS]},
            headers={"X-Webhook-Token": SECRET},
            timeout=60,
        )
        response.raise_for_status()


def _commands(redis: Redis) -> int:
    return int(redis.info("stats")["total_commands_processed"])


def _wait(probe: Callable[[], T | None], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {seconds} s")
        time.sleep(1)


if __name__ == "__main__":
    main()
