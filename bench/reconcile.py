"""Full reconcile: wisphub-bqn-sync against the original script's way (the baseline), on the
same data, cold (no subscriber on the BQN yet) and warm (nothing to change), with the
simulators adding 0 or 20 ms to every request. Prints one table.

    python -m bench.reconcile [--sizes 1000,10000,50000] [--latencies 0,20]
                              [--baseline 1000@0,1000@20,10000@20]

The baseline opens a new connection for every request (about 50 ms each here), so a cold
baseline of 10,000 clients takes about ten minutes; by default it runs where the targets need
it, at 1,000 clients and at 10,000 clients with 20 ms.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from bench.stack import PYTHON, Measured, bqn, machine, measure, sync_env, table, wisphub

OURS = [PYTHON, "-m", "worker.cli", "--json"]
BASELINE = [PYTHON, "-m", "bench.baseline"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile")
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--latencies", default="0,20", help="added ms per request")
    parser.add_argument(
        "--baseline",
        default="1000@0,1000@20,10000@20",
        help="clients@latency pairs to run the baseline at, or 'none'",
    )
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    latencies = [int(ms) for ms in args.latencies.split(",")]
    baseline_at = {
        (int(size), int(ms))
        for size, ms in (pair.split("@") for pair in args.baseline.split(",") if "@" in pair)
    }
    rows = []
    for size in sizes:
        with wisphub(size) as wisphub_sim:
            for latency in latencies:
                wisphub_sim.latency(latency)
                ours = run_pair(OURS, wisphub_sim, latency)
                base = None
                if (size, latency) in baseline_at:
                    base = run_pair(BASELINE, wisphub_sim, latency)
                for run in ("cold", "warm"):
                    mine, theirs = ours[run], base[run] if base else None
                    rows.append(
                        [
                            f"{size:,}",
                            f"{latency} ms",
                            run,
                            f"{mine['seconds']:.1f} s",
                            str(mine["wisphub"]),
                            str(mine["bqn"]),
                            f"{mine['peak_mb']:.0f} MB",
                            "ok" if mine["code"] == 0 else f"exit {mine['code']}",
                            f"{theirs['seconds']:.1f} s" if theirs else "not run",
                            str(theirs["bqn"]) if theirs else "",
                            f"{theirs['seconds'] / mine['seconds']:.1f}×" if theirs else "",
                        ]
                    )
                    print(" | ".join(rows[-1]), flush=True)
    headers = [
        "clients",
        "latency",
        "run",
        "time",
        "WispHub req",
        "BQN req",
        "peak RSS",
        "result",
        "baseline time",
        "baseline BQN req",
        "speed-up",
    ]
    print(f"\n### Full reconcile ({machine()})\n")
    print(table(headers, rows))


def run_pair(command: list[str], wisphub_sim, latency: int) -> dict[str, dict]:
    """A cold run on a fresh BQN simulator, then a warm run right after."""
    results = {}
    with bqn() as bqn_sim:
        bqn_sim.latency(latency)
        env = sync_env(wisphub_sim, bqn_sim)
        for run in ("cold", "warm"):
            wisphub_sim.reset_stats()
            bqn_sim.reset_stats()
            measured: Measured = measure(command, env)
            results[run] = {
                "seconds": measured.seconds,
                "peak_mb": measured.peak_mb,
                "code": measured.code,
                "wisphub": wisphub_sim.requests_served(),
                "bqn": bqn_sim.requests_served(),
                "report": json.loads(measured.out or "{}") if command is OURS else None,
            }
    return results


if __name__ == "__main__":
    main()
