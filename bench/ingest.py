"""Ingest: how many notifications a second the web process accepts under gunicorn (the
Procfile's command, no worker draining the queue), each for a different client, from a
load generator on kept-alive connections; with the response times and the Redis commands
the master processed per accepted notification (INFO commandstats before and after).

    python -m bench.ingest [--connections 4,16,64] [--seconds 10] [--rounds 3]
                           [--redis plain,sentinel]

`--redis` names the Redises measured, each with its own web process, all started at once:
`plain`, one server (`REDIS_URL`), and `sentinel`, a master, its replica and three sentinels
(`REDIS_SENTINELS`), where every 202 first waits for the replica (`REDIS_WAIT_REPLICAS`, 1 by
default). At each number of connections they take turns, `--seconds` each, `--rounds` times,
so that a busy moment of the machine falls on all of them; a second table gives each against
the first named.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import operator
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import reduce
from urllib.parse import urlsplit

from redis import Redis

from bench.stack import machine, percentile, redis_ha, redis_server, service, table

SECRET = "bench-webhook-secret"
REDISES = ("plain", "sentinel")
ENV = {
    "WEBHOOK_SECRET": SECRET,
    # measured: the service itself, not its limits against floods
    "WEBHOOK_RATE_LIMIT": "off",
    "MAX_QUEUED_JOBS": "10000000",
    "API_TOKEN": "bench-api-token-0001",
    "WISPHUB_URL": "https://127.0.0.1:9",
    "WISPHUB_API_KEY": "unused",
    "BQN_URL": "127.0.0.1:9",
    "BQN_USER": "unused",
    "BQN_PASSWORD": "unused",
}


@dataclass(frozen=True)
class Target:
    """A web process on one kind of Redis, and a client of that Redis' master."""

    redis: str
    url: str
    master: Redis


@dataclass(frozen=True)
class Point:
    """One load of `seconds`: the response time of each 202, the other answers, and the calls
    of each command the master processed meanwhile."""

    seconds: float
    times: list[float]
    errors: int
    calls: Counter[str]

    def __add__(self, other: Point) -> Point:
        """Two loads as one."""
        return Point(
            self.seconds + other.seconds,
            self.times + other.times,
            self.errors + other.errors,
            self.calls + other.calls,
        )

    def rate(self) -> float:
        """202s a second."""
        return len(self.times) / self.seconds

    def commands_per_202(self) -> float:
        return sum(self.calls.values()) / max(len(self.times), 1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("--connections", default="4,16,64", help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=10, help="of each turn")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each Redis")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--redis", type=redises, default=REDISES, help="plain, sentinel or both")
    args = parser.parse_args(argv)
    ids = itertools.count(1)
    points: dict[tuple[str, int], Point] = {}
    rows = []
    load_at_start = os.getloadavg()[0]
    with ExitStack() as stack:
        targets = [stack.enter_context(started(r, args.web_workers)) for r in args.redis]
        for each in targets:
            asyncio.run(load(each.url, 4, 2, ids))  # warm up every gunicorn thread
        for connections in (int(c) for c in args.connections.split(",")):
            for _ in range(args.rounds):
                for each in targets:
                    point = measure(each, connections, args.seconds, ids)
                    key = each.redis, connections
                    points[key] = points[key] + point if key in points else point
            for each in targets:
                point = points[each.redis, connections]
                rows.append(
                    [
                        each.redis,
                        str(connections),
                        f"{point.rate():,.0f}/s",
                        *(f"{percentile(point.times, q) * 1000:.1f} ms" for q in (0.5, 0.95, 0.99)),
                        str(point.errors),
                        f"{point.commands_per_202():.1f}",
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
    print(
        f"\n### Notifications accepted ({machine()}; gunicorn {args.web_workers} workers;"
        f" load average {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end)\n"
    )
    headers = ["redis", "connections", "accepted", "p50", "p95", "p99", "not 202", "Redis cmd/202"]
    print(table(headers, rows))
    if len(args.redis) > 1:
        print(f"\n### Against {args.redis[0]} Redis\n")
        print(table(*against_first(args.redis, points)))
    print("\n### Redis commands per accepted notification, all loads together\n")
    print(table(*commands_by_name(args.redis, points)))


def redises(text: str) -> tuple[str, ...]:
    """`--redis`: a comma-separated list of `REDISES`."""
    names = tuple(name.strip() for name in text.split(","))
    if not set(names) <= set(REDISES) or len(set(names)) < len(names):
        raise argparse.ArgumentTypeError(f"{text!r}: name some of {', '.join(REDISES)}")
    return names


@contextmanager
def started(redis: str, web_workers: int) -> Iterator[Target]:
    """The web process (no worker) on a private Redis of kind `redis`."""
    with (
        redis_settings(redis) as (settings, master),
        service({**ENV, **settings}, workers=0, web_workers=web_workers) as url,
    ):
        yield Target(redis, url, master)


@contextmanager
def redis_settings(redis: str) -> Iterator[tuple[dict[str, str], Redis]]:
    """The service's settings for a private Redis of kind `redis`, and a client of its master
    (with Sentinel, the default `REDIS_WAIT_REPLICAS` applies: one replica)."""
    if redis == "sentinel":
        with redis_ha() as ha, ha.master().client() as master:
            yield ha.env, master
        return
    with redis_server() as url, Redis.from_url(url) as master:
        yield {"REDIS_URL": url}, master


def measure(target: Target, connections: int, seconds: float, ids: Iterator[int]) -> Point:
    """Load `target` on `connections` connections for `seconds`."""
    calls = commandstats(target.master)
    times, errors = asyncio.run(load(target.url, connections, seconds, ids))
    return Point(seconds, times, errors, commandstats(target.master) - calls)


def commandstats(redis: Redis) -> Counter[str]:
    """The calls of each command the server has processed since it started (the `INFO` that
    asks is counted in the next one: one call more per load)."""
    stats = redis.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()})


def against_first(
    names: Sequence[str], points: dict[tuple[str, int], Point]
) -> tuple[list[str], list[list[str]]]:
    """Each Redis after the first against the first, at each number of connections: the ratio
    of their throughputs and of their p99s, and the Redis commands each 202 added."""
    first, rows = names[0], []
    for (redis, connections), point in points.items():
        if redis == first:
            continue
        base = points[first, connections]
        rows.append(
            [
                f"{redis} / {first}",
                str(connections),
                f"{point.rate() / base.rate():.2f}×",
                f"{percentile(point.times, 0.99) / percentile(base.times, 0.99):.2f}×",
                f"{point.commands_per_202() - base.commands_per_202():+.1f}",
            ]
        )
    return ["redis", "connections", "accepted", "p99", "Redis cmd/202"], rows


def commands_by_name(
    names: Sequence[str], points: dict[tuple[str, int], Point]
) -> tuple[list[str], list[list[str]]]:
    """The calls of each command per 202, summed over all the loads of each Redis; the
    commands under 0.05 a 202 everywhere left out (the sentinels' pings, the `INFO`s)."""
    per_202 = {}
    for name in names:
        mine = reduce(
            operator.add, (point for (redis, _), point in points.items() if redis == name)
        )
        per_202[name] = {c: n / max(len(mine.times), 1) for c, n in mine.calls.items()}
    shown = sorted({c for counts in per_202.values() for c, n in counts.items() if n >= 0.05})
    rows = [[c, *(f"{per_202[name].get(c, 0):.2f}" for name in names)] for c in shown]
    totals = [f"{sum(per_202[name].values()):.2f}" for name in names]
    return ["command", *names], [*rows, ["all", *totals]]


async def load(
    url: str, connections: int, seconds: float, ids: Iterator[int]
) -> tuple[list[float], int]:
    """Send notifications on `connections` kept-alive connections for `seconds`; the response
    time of each `202`, and how many answers were something else."""
    parts = urlsplit(url)
    stop_at = time.monotonic() + seconds
    times: list[float] = []
    errors = [0]

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while time.monotonic() < stop_at:
                body = json.dumps({"id_servicio": next(ids)}).encode()
                head = (
                    "POST /webhooks/wisphub HTTP/1.1\r\nHost: bench\r\n"
                    "Content-Type: application/json\r\n"
                    f"X-Webhook-Token: {SECRET}\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                started = time.perf_counter()
                writer.write(head.encode() + body)
                await writer.drain()
                status = await read_response(reader)
                if status == 202:
                    times.append(time.perf_counter() - started)
                else:
                    errors[0] += 1
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return times, errors[0]


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response; return its status."""
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


if __name__ == "__main__":
    main()
