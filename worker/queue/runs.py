"""The last full reconciles and the last change poll, kept in Redis for the API, the status
page and `/metrics`.

A reconcile's entry is its report with long lists cut to their first `RUN_LIST_ITEMS` items
(their full length is kept beside them), so 100,000 skipped clients do not fill Redis.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from redis import Redis

from worker import defaults
from worker.core.report import Report
from worker.queue.store import PREFIX

RECONCILES = PREFIX + "runs:reconciles"
LAST_POLL = PREFIX + "runs:last-poll"


def reconcile_entry(
    job_id: str,
    started: float,
    ended: float,
    report: Report | None = None,
    *,
    error: str | None = None,
    targets: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What to keep of one reconcile: when, how long, its report or the error that stopped
    it, and what it did on each target."""
    entry: dict[str, Any] = {
        "job_id": job_id,
        "started_at": iso(started),
        "ended_at": iso(ended),
        "ended": ended,
        "seconds": round(ended - started, 3),
        "ok": report is not None and report.ok and error is None,
        "error": error,
    }
    if targets is not None:
        entry["targets"] = targets
    if report is not None:
        entry["dry_run"] = report.dry_run
        entry["clients"] = report.clients
        entry["counts"] = report.counts()
        entry["report"] = trimmed(report.to_dict())
    return entry


def trimmed(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with every list longer than `RUN_LIST_ITEMS` cut, and `<name>_total` beside it."""
    result: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, list) and len(value) > defaults.RUN_LIST_ITEMS:
            result[name] = value[: defaults.RUN_LIST_ITEMS]
            result[f"{name}_total"] = len(value)
        else:
            result[name] = value
    return result


def save_reconcile(redis: Redis, entry: dict[str, Any], keep: int) -> None:
    """Keep a reconcile's entry, and only the last `keep` ones."""
    with redis.pipeline(transaction=True) as pipe:
        pipe.lpush(RECONCILES, json.dumps(entry, ensure_ascii=False))
        pipe.ltrim(RECONCILES, 0, keep - 1)
        pipe.execute()


def reconciles(redis: Redis, limit: int) -> list[dict[str, Any]]:
    """The last `limit` reconciles, newest first."""
    return [json.loads(raw) for raw in redis.lrange(RECONCILES, 0, limit - 1)]


def save_poll(redis: Redis, summary: dict[str, Any]) -> None:
    """Keep the last poll's summary, stamped with the time it ended."""
    now = time.time()
    data = {**summary, "ended_at": iso(now), "ended": now}
    redis.set(LAST_POLL, json.dumps(data, ensure_ascii=False))


def last_poll(redis: Redis) -> dict[str, Any] | None:
    """The last poll's summary, if any poll has run."""
    raw = redis.get(LAST_POLL)
    return None if raw is None else json.loads(raw)


def iso(moment: float) -> str:
    """Unix seconds as an ISO-8601 UTC time."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")
