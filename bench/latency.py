"""Notification latency: clients are changed in WispHub and notified at a steady 20, 50 and
100 per second, through gunicorn and the RQ workers as the Procfile runs them, with the
simulators adding 20 ms to every request. For each notification, the time from its `202` to
the end of its job (which ends right after the BQN write). Prints one table.

    python -m bench.latency [--rates 20,50,100] [--seconds 10] [--processes 8] [--latency 20]

The worker is the Procfile's one `wisphub-bqn-sync-worker`, a pool of `--processes` workers
(WORKER_PROCESSES; its default is the Procfile's).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import requests

from bench.stack import (
    bqn,
    cpu_share,
    machine,
    percentile,
    redis_server,
    service,
    sync_env,
    table,
    wisphub,
)
from sandbox.seed import wisphub_clients
from worker import defaults
from worker.core.desired import desired_state
from worker.core.rules import MappingRules

CLIENTS = 3000
SECRET = "bench-webhook-secret"
TOKEN = "bench-api-token-0001"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency")
    parser.add_argument("--rates", default="20,50,100", help="notifications per second")
    parser.add_argument("--seconds", type=float, default=10, help="how long each rate lasts")
    parser.add_argument(
        "--processes", type=int, default=defaults.WORKER_PROCESSES, help="WORKER_PROCESSES"
    )
    parser.add_argument("--latency", type=int, default=20, help="added ms per API request")
    args = parser.parse_args(argv)
    candidates = active_clients()
    rows = []
    with wisphub(CLIENTS) as wisphub_sim, bqn() as bqn_sim, redis_server() as redis_url:
        env = {
            **sync_env(wisphub_sim, bqn_sim),
            "REDIS_URL": redis_url,
            "WEBHOOK_SECRET": SECRET,
            # measured: the service itself, not its limits against floods
            "WEBHOOK_RATE_LIMIT": "off",
            "MAX_QUEUED_JOBS": "10000000",
            "API_TOKEN": TOKEN,
            "WORKER_PROCESSES": str(args.processes),
        }
        with service(env, workers=1) as url:
            api = requests.Session()
            api.headers["Authorization"] = f"Bearer {TOKEN}"
            # the start-up reconcile: the BQN in step with WispHub, and what was applied known
            reconcile = api.post(f"{url}/api/v1/reconcile", json={"dry_run": False}, timeout=10)
            wait_for(api, url, reconcile.json()["job_id"])
            wisphub_sim.latency(args.latency)
            bqn_sim.latency(args.latency)
            # each worker's first job builds its API clients and connections: not measured
            warm_up, candidates = candidates[: 4 * args.processes], candidates[4 * args.processes :]
            for job_id, _ in notify_steadily(wisphub_sim, url, warm_up, 20):
                wait_for(api, url, job_id)
            for rate in (int(r) for r in args.rates.split(",")):
                count = int(rate * args.seconds)
                batch, candidates = candidates[:count], candidates[count:]
                if len(batch) < count:
                    raise SystemExit(f"not enough clients for {rate}/s over {args.seconds} s")
                sims, began = (wisphub_sim, bqn_sim), time.monotonic()
                cpu = [sim.cpu_seconds() for sim in sims]
                accepted = notify_steadily(wisphub_sim, url, batch, rate)
                delays = [ended(api, url, job_id) - at for job_id, at in accepted]
                rows.append(
                    [
                        f"{rate}/s",
                        str(len(delays)),
                        *(f"{percentile(delays, q) * 1000:.0f} ms" for q in (0.5, 0.95, 0.99)),
                        f"{max(delays) * 1000:.0f} ms",
                        cpu_share(sims, cpu, time.monotonic() - began),
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
    print(
        f"\n### Notification to BQN write ({machine()}; a pool of {args.processes} workers, "
        f"{args.latency} ms per API request)\n"
    )
    headers = ["rate", "notifications", "p50", "p95", "p99", "max", "simulators' CPU"]
    print(table(headers, rows))


def active_clients() -> list[int]:
    """Seeded clients that are active and own their IP, in a shuffled but fixed order."""
    rows = wisphub_clients(CLIENTS, seed=1)
    desired = desired_state(rows, MappingRules())
    owners = {sub.id_servicio for sub in desired.subscribers.values()}
    active = [
        r["id_servicio"] for r in rows if r["estado"] == "Activo" and r["id_servicio"] in owners
    ]
    return active[::2] + active[1::2]


def notify_steadily(wisphub_sim, url: str, ids: list[int], rate: float) -> list[tuple[str, float]]:
    """Suspend each client in WispHub and notify the service, `rate` clients a second, on
    schedule whatever the answers take; returns (job id, time of the 202) pairs."""
    accepted: list[tuple[str, float]] = []
    lock = threading.Lock()
    local = threading.local()

    def one(id_servicio: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        wisphub_sim.control("PATCH", f"clients/{id_servicio}", json={"estado": "Suspendido"})
        response = session.post(
            f"{url}/webhooks/wisphub",
            json={"id_servicio": id_servicio},
            headers={"X-Webhook-Token": SECRET},
            timeout=10,
        )
        at = time.time()
        response.raise_for_status()
        with lock:
            accepted.append((response.json()["jobs"][0]["job_id"], at))

    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        futures = []
        for n, id_servicio in enumerate(ids):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(one, id_servicio))
        for future in futures:
            future.result()
    return accepted


def ended(api: requests.Session, url: str, job_id: str) -> float:
    """When the job ended (Unix time), once it has."""
    view = wait_for(api, url, job_id)
    return datetime.fromisoformat(view["ended_at"]).timestamp()


def wait_for(api: requests.Session, url: str, job_id: str) -> dict:
    deadline = time.monotonic() + 300
    while True:
        view = api.get(f"{url}/api/v1/jobs/{job_id}", timeout=10).json()
        if view["status"] == "finished":
            return view
        if view["status"] == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} did not finish: {view}")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
