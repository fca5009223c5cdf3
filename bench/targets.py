"""Several BQNs: a full reconcile (the one-shot CLI, as `bench.reconcile` runs it) to one BQN,
then to two BQNs kept as an HA pair (`BQN_TARGETS_FILE`), on the same WispHub data, cold (no
subscriber on the BQNs yet) and warm (nothing to change). The targets proceed in parallel, so
two should take about as long as one. Prints one table.

    python -m bench.targets [--clients 10000] [--latency 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import yaml

from bench.reconcile import OURS
from bench.stack import BQN_PASSWORD, BQN_USER, bqn, machine, measure, sync_env, table, wisphub

RUNS = ("cold", "warm")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.targets")
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--latency", type=int, default=20, help="added ms per request")
    args = parser.parse_args(argv)
    rows = []
    with wisphub(args.clients) as wisphub_sim:
        wisphub_sim.latency(args.latency)
        one = reconcile(wisphub_sim, 1, args.latency)
        two = reconcile(wisphub_sim, 2, args.latency)
    for count, results in ((1, one), (2, two)):
        for run in RUNS:
            mine, single = results[run], one[run]
            rows.append(
                [
                    str(count),
                    f"{args.clients:,}",
                    f"{args.latency} ms",
                    run,
                    f"{mine['seconds']:.1f} s",
                    str(mine["wisphub"]),
                    " + ".join(map(str, mine["bqn"])),
                    f"{mine['cpu']:.1f} s",
                    f"{mine['simulators_cpu']:.1f} s",
                    "ok" if mine["code"] == 0 else f"exit {mine['code']}",
                    f"{mine['seconds'] / single['seconds']:.2f}×",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    headers = ["BQNs", "clients", "latency", "run", "time", "WispHub req", "BQN req"]
    headers += ["sync CPU", "simulators CPU", "result"]
    print(f"\n### Full reconcile to several BQNs ({machine()})\n")
    print(table([*headers, "time / one BQN"], rows))


def reconcile(wisphub_sim, count: int, latency: int) -> dict[str, dict]:
    """A cold run to `count` fresh BQN simulators, then a warm run right after."""
    with ExitStack() as stack:
        sims = [stack.enter_context(bqn()) for _ in range(count)]
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-targets-")))
        for sim in sims:
            sim.latency(latency)
        env = targets_env(sync_env(wisphub_sim, sims[0]), sims, folder)
        results = {}
        for run in RUNS:
            wisphub_sim.reset_stats()
            for sim in sims:
                sim.reset_stats()
            before = [sim.cpu_seconds() for sim in [wisphub_sim, *sims]]
            measured = measure(OURS, env)
            after = [sim.cpu_seconds() for sim in [wisphub_sim, *sims]]
            results[run] = {
                "seconds": measured.seconds,
                "code": measured.code,
                "wisphub": wisphub_sim.requests_served(),
                "bqn": [sim.requests_served() for sim in sims],
                "cpu": measured.cpu_seconds,
                "simulators_cpu": sum(after) - sum(before),
            }
    return results


def targets_env(env: dict[str, str], sims: Sequence, folder: Path) -> dict[str, str]:
    """`env` with its BQN given by a targets file naming `sims` (one: the usual `BQN_URL`)."""
    if len(sims) == 1:
        return env
    targets = [
        {
            "name": f"core-{chr(ord('a') + number)}",
            "url": sim.url,
            "user": BQN_USER,
            "password": BQN_PASSWORD,
            "ca_bundle": str(sim.ca),
        }
        for number, sim in enumerate(sims)
    ]
    path = folder / "targets.yaml"
    path.write_text(yaml.safe_dump({"targets": targets}), encoding="utf-8")
    single = ("BQN_URL", "BQN_USER", "BQN_PASSWORD", "BQN_CA_BUNDLE")
    return {
        **{name: value for name, value in env.items() if name not in single},
        "BQN_TARGETS_FILE": str(path),
        "BQN_CA_BUNDLE": os.environ.get("BQN_CA_BUNDLE", ""),
    }


if __name__ == "__main__":
    main()
