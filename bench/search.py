"""Client search: `GET /api/v1/clients?q=` over HTTP against the Procfile's web command
(gunicorn), with the index of one complete pass of seeded clients in a private Redis, every
client with its BQN footprint and the most active ones with a history. Prints what indexing a
pass costs, what reading a new one costs a web process, and the time of each kind of query.

    python -m bench.search [--clients 100000] [--requests 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import requests
from redis import Redis

from bench.stack import machine, percentile, redis_server, service, table
from sandbox.seed import wisphub_clients
from worker.core.model import Footprint
from worker.core.search import Index, fold
from worker.queue import client_index, history, store
from worker.settings import HistoryLimits, Settings

API_TOKEN = "bench-api-token-0001"
ENV = {
    "API_TOKEN": API_TOKEN,
    "WEBHOOK_SECRET": "bench-webhook-secret",
    "WISPHUB_URL": "https://127.0.0.1:9",  # never called: a search reads the index
    "WISPHUB_API_KEY": "bench-wisphub-key",
    "BQN_URL": "127.0.0.1:9",
    "BQN_USER": "unused",
    "BQN_PASSWORD": "unused",
}
# New passes read to time how a web process takes a new index.
NEW_PASSES = 5

Row = dict[str, Any]
# A kind of query: its name, and what a person types for a client (and the `limit`).
Kind = tuple[str, Callable[[Row], str], int]


def kinds(rng: random.Random) -> list[Kind]:
    """What an operator types, made from a client's row."""

    def dotted(cedula: str) -> str:
        return f"{cedula[:-6]}.{cedula[-6:-3]}.{cedula[-3:]}"

    def two_words(client: Row) -> str:
        words = client["nombre"].split()
        return " ".join(reversed(words[:2])) if len(words) > 1 else words[0]

    return [
        ("id", lambda client: str(client["id_servicio"]), 20),
        ("IP", lambda client: client["ip"], 20),
        ("IP start (3 octets)", lambda client: client["ip"].rsplit(".", 1)[0] + ".", 20),
        ("cédula with dots", lambda client: dotted(client["cedula"]), 20),
        ("PPPoE user, upper case", lambda client: client["usuario"].upper(), 20),
        ("name, two words", two_words, 20),
        ("name, one word", lambda client: rng.choice(fold(client["nombre"]).split()), 20),
        ("name, one word, 100 hits", lambda client: fold(client["nombre"]).split()[0], 100),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search")
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="queries of each kind")
    args = parser.parse_args(argv)
    rng = random.Random(7)  # noqa: S311 - the same queries every run, not a secret
    rows = wisphub_clients(args.clients)
    keep = client_index.keep(Settings.from_env(ENV).wisphub)
    with redis_server() as redis_url:
        redis = Redis.from_url(redis_url)
        started = time.perf_counter()
        kept = [keep(row) for row in rows]  # done page by page as a pass reads WispHub
        read = time.perf_counter()
        client_index.save(redis, kept, time.time())
        saved = time.perf_counter()
        document = redis.get(client_index.document_key(current_version(redis)))
        held = memory_of(lambda: Index.decode(document))
        fill(redis, rows)
        with service({**ENV, "REDIS_URL": redis_url}, workers=0, web_workers=1) as url:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {API_TOKEN}"
            first = timed(session, url, "x", 20)[0]
            renewed = [new_pass(redis, kept, session, url, rng) for _ in range(NEW_PASSES)]
            results = []
            usable = [row for row in rows if row["estado"] != "Cancelado" and row["ip"].count(".")]
            for name, typed, limit in kinds(rng):
                times, totals = [], []
                for client in rng.sample(usable, args.requests):
                    seconds, total = timed(session, url, typed(client), limit)
                    times.append(seconds)
                    totals.append(total)
                results.append(
                    [
                        name,
                        f"{statistics.median(totals):,.0f}",
                        f"{percentile(times, 0.5) * 1000:.1f} ms",
                        f"{percentile(times, 0.99) * 1000:.1f} ms",
                    ]
                )
                print(" | ".join(results[-1]), flush=True)
    print(f"\n### Client search ({machine()}; {args.clients:,} clients, {args.requests} each)\n")
    print(
        f"Indexing a pass: {read - started:.2f} s keeping the rows' searchable fields, "
        f"{saved - read:.2f} s building and writing the index ({len(document) / 1e6:.1f} MB). "
        f"A web process's copy: {held:.0f} MB; its first search {first * 1000:.0f} ms; the "
        f"first search after a new pass {statistics.median(renewed) * 1000:.0f} ms "
        f"(median of {NEW_PASSES}).\n"
    )
    print(table(["query", "matched (median)", "p50", "p99"], results))


def current_version(redis: Redis) -> str:
    return redis.hget(client_index.POINTER, "version").decode()


def memory_of(make: Callable[[], object]) -> float:
    """The megabytes what `make` returns holds (traced while it is made)."""
    tracemalloc.start()
    try:
        made = make()
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del made
    return size / 1e6


def fill(redis: Redis, rows: Sequence[Row]) -> None:
    """What a synced service holds besides the index: every client's footprint on the BQN,
    and a job's events (the last one `done`) for the `HISTORY_CLIENTS` most recent."""
    limits = HistoryLimits()
    for start in range(0, len(rows), 5000):
        chunk = rows[start : start + 5000]
        with redis.pipeline(transaction=False) as pipe:
            for row in chunk:
                footprint = Footprint(row["nombre"].strip(), (row["ip"],), None)
                store.save_footprint(pipe, row["id_servicio"], footprint)
            pipe.execute()
    for start in range(0, min(len(rows), limits.clients), 1000):
        events = [
            (row["id_servicio"], history.event(name, job_id=f"bench-{row['id_servicio']}"))
            for row in rows[start : start + 1000]
            for name in ("queued", "started", "read", "operation", "done")
        ]
        history.write(redis, events, limits)


def timed(session: requests.Session, url: str, q: str, limit: int) -> tuple[float, int]:
    """Seconds one search took, as its caller sees it, and how many clients matched."""
    started = time.perf_counter()
    response = session.get(f"{url}/api/v1/clients", params={"q": q, "limit": limit}, timeout=30)
    seconds = time.perf_counter() - started
    response.raise_for_status()
    return seconds, response.json()["total"]


def new_pass(
    redis: Redis, kept: list[Row], session: requests.Session, url: str, rng: random.Random
) -> float:
    """Index a pass where one client changed, and time the first search after it."""
    at = rng.randrange(len(kept))
    kept[at] = {**kept[at], "nombre": f"{kept[at]['nombre']} {rng.randrange(10**6)}"}
    client_index.save(redis, kept, time.time())
    return timed(session, url, "x", 20)[0]


if __name__ == "__main__":
    main()
