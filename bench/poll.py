"""The poller's pass: what comparing WispHub with the BQN itself costs, against the pass that
compares fingerprints only (the baseline, `POLL_BQN_EVERY` not due), on the same data in the
same run, warm (the BQN already in line, nothing to queue). Prints one table.

    python -m bench.poll [--sizes 1000,10000] [--latencies 0,20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Sequence

from redis import Redis
from rq import Queue, SimpleWorker

from bench.stack import bqn, machine, redis_server, sync_env, table, wisphub
from worker.queue import runtime
from worker.settings import ServiceSettings


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.poll")
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--latencies", default="0,20", help="added ms per request")
    parser.add_argument("--repeat", type=int, default=5, help="passes measured each way")
    args = parser.parse_args(argv)
    rows = []
    for size in (int(n) for n in args.sizes.split(",")):
        with wisphub(size) as wisphub_sim, bqn() as bqn_sim, redis_server() as redis_url:
            env = {**sync_env(wisphub_sim, bqn_sim), "REDIS_URL": redis_url, "POLL_INTERVAL": "0"}
            redis = Redis.from_url(redis_url)
            run(redis, env, "worker.jobs.reconcile", every=1)  # the BQN in line with WispHub
            run(redis, env, "worker.jobs.poll_changes", every=1)  # the first pass
            for latency in (int(ms) for ms in args.latencies.split(",")):
                wisphub_sim.latency(latency)
                bqn_sim.latency(latency)
                only = [passed(redis, env, every=1000) for _ in range(args.repeat)]
                compared = [passed(redis, env, every=1) for _ in range(args.repeat)]
                base, full = statistics.median(only), statistics.median(compared)
                rows.append(
                    [
                        f"{size:,}",
                        f"{latency} ms",
                        f"{base:.2f} s",
                        f"{full:.2f} s",
                        f"+{full - base:.2f} s",
                        f"{full / base:.2f}×",
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
    headers = ["clients", "latency", "fingerprints only", "with the BQN", "added", "ratio"]
    print(f"\n### Poll pass ({machine()}, median of {args.repeat})\n")
    print(table(headers, rows))


def passed(redis: Redis, env: dict[str, str], *, every: int) -> float:
    """Seconds one warm poll pass took, as the job measured itself."""
    result = run(redis, env, "worker.jobs.poll_changes", every=every)
    expected_drift = every == 1
    if result.get("changed") or bool(result.get("drift")) is not expected_drift:
        raise RuntimeError(f"not a warm pass of the kind asked: {result}")
    if expected_drift and "error" in result["drift"]:
        raise RuntimeError(f"the BQN was not compared: {result['drift']['error']}")
    if expected_drift and any(result["drift"][k] for k in ("clients", "addresses", "policies")):
        raise RuntimeError(f"the BQN was not in line: {result['drift']}")
    return float(result["seconds"])


def run(redis: Redis, env: dict[str, str], function: str, *, every: int) -> dict:
    """Run one job to its end in this process, with `POLL_BQN_EVERY=every`."""
    os.environ.update({**env, "POLL_BQN_EVERY": str(every)})
    runtime.runtime.cache_clear()
    queue = Queue(ServiceSettings.queue_name, connection=redis)
    job = queue.enqueue(function, job_timeout=3600)
    SimpleWorker([queue], connection=redis).work(burst=True, logging_level="WARNING")
    if job.get_status() != "finished":
        raise RuntimeError(f"{function} ended {job.get_status()}")
    return job.return_value()


if __name__ == "__main__":
    main()
