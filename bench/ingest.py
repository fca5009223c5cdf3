"""Ingest: how many notifications a second the web process accepts under gunicorn (the
Procfile's command, no worker draining the queue), each for a different client, from a
load generator on kept-alive connections; with the response times. Prints one table.

    python -m bench.ingest [--connections 4,16,64] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

from bench.stack import machine, percentile, redis_server, service, table

SECRET = "bench-webhook-secret"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("--connections", default="4,16,64", help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args(argv)
    rows = []
    ids = itertools.count(1)
    with redis_server() as redis_url:
        env = {
            "REDIS_URL": redis_url,
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
        with service(env, workers=0, web_workers=args.web_workers) as url:
            asyncio.run(load(url, 4, 2, ids))  # warm up every gunicorn thread
            for connections in (int(c) for c in args.connections.split(",")):
                times, errors = asyncio.run(load(url, connections, args.seconds, ids))
                rate = len(times) / args.seconds
                rows.append(
                    [
                        str(connections),
                        f"{rate:,.0f}/s",
                        *(f"{percentile(times, q) * 1000:.1f} ms" for q in (0.5, 0.95, 0.99)),
                        str(errors),
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
    print(f"\n### Notifications accepted ({machine()}; gunicorn {args.web_workers} workers)\n")
    print(table(["connections", "accepted", "p50", "p95", "p99", "not 202"], rows))


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
