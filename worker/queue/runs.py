"""The last full reconciles and the last change poll, kept in Redis for the API, the status
page and `/metrics`.

A reconcile job keeps one entry, whatever its attempts: its report with long lists cut to their
first `RUN_LIST_ITEMS` items (their full length is kept beside them), so 100,000 skipped
clients do not fill Redis.
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
LAST_COMPARISON = PREFIX + "runs:last-comparison"
# The report of a reconcile that read no client (its WispHub pass failed): every count 0.
NOTHING_READ = Report(dry_run=False, clients=0, unchanged=0)
# What an entry kept by an earlier release may lack (a failed run's clients and counts, the
# attempts), as a run that read nothing would have it.
FILLED_IN = {
    "attempts": 1,
    "dry_run": False,
    "clients": 0,
    "counts": NOTHING_READ.counts(),
    "targets": {},
    "report": None,
}


def reconcile_entry(
    job_id: str,
    started: float,
    ended: float,
    report: Report | None,
    *,
    attempt: int,
    error: str | None,
    targets: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """What to keep of one attempt of a reconcile: when, how long, which attempt, the clients
    of its WispHub pass and its counts, its report or the error that stopped it, and what it
    did on each target. Every entry has the same keys: a run whose WispHub pass failed
    (`report` None) read 0 clients, counts all 0, and has a `null` report."""
    done = report or NOTHING_READ
    return {
        "job_id": job_id,
        "attempts": attempt,
        "started_at": iso(started),
        "ended_at": iso(ended),
        "ended": ended,
        "seconds": round(ended - started, 3),
        "ok": report is not None and report.ok and error is None,
        "error": error,
        "dry_run": done.dry_run,
        "clients": done.clients,
        "counts": done.counts(),
        "targets": targets,
        "report": None if report is None else trimmed(report.to_dict()),
    }


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
    """Keep a reconcile's entry first (the newest), and only the last `keep` ones. It takes the
    place of the entry an earlier attempt of the same job left, keeping what that one did on
    the targets this attempt did not work on (a retry works on the targets left to do). One
    job's attempts never run at once, so the entry replaced is the one read here."""
    earlier = next(
        (
            raw
            for raw in redis.lrange(RECONCILES, 0, keep - 1)
            if json.loads(raw)["job_id"] == entry["job_id"]
        ),
        None,
    )
    if earlier is not None:
        entry = {**entry, "targets": {**json.loads(earlier)["targets"], **entry["targets"]}}
    with redis.pipeline(transaction=True) as pipe:
        if earlier is not None:
            pipe.lrem(RECONCILES, 1, earlier)
        pipe.lpush(RECONCILES, json.dumps(entry, ensure_ascii=False))
        pipe.ltrim(RECONCILES, 0, keep - 1)
        pipe.execute()


def reconciles(redis: Redis, limit: int) -> list[dict[str, Any]]:
    """The last `limit` reconciles, newest first, each with every key (`FILLED_IN`)."""
    return [{**FILLED_IN, **json.loads(raw)} for raw in redis.lrange(RECONCILES, 0, limit - 1)]


def save_poll(redis: Redis, summary: dict[str, Any]) -> None:
    """Keep the last poll's summary, stamped with the time it ended; and, apart, what the
    last poll that compared the BQN with WispHub found (its `drift`): with POLL_BQN_EVERY
    above 1, most polls do not, and their summary alone would hide the drift found before."""
    now = time.time()
    stamp = {"ended_at": iso(now), "ended": now}
    with redis.pipeline(transaction=False) as pipe:
        pipe.set(LAST_POLL, json.dumps({**summary, **stamp}, ensure_ascii=False))
        if summary.get("drift") is not None:
            compared = {"drift": summary["drift"], **stamp}
            pipe.set(LAST_COMPARISON, json.dumps(compared, ensure_ascii=False))
        pipe.execute()


def last_poll(redis: Redis) -> dict[str, Any] | None:
    """The last poll's summary, if any poll has run, with `compared`: the drift the last poll
    that compared the BQN found, and when it ended (None before any did)."""
    raw, compared = redis.mget(LAST_POLL, LAST_COMPARISON)
    if raw is None:
        return None
    return {**json.loads(raw), "compared": None if compared is None else json.loads(compared)}


def iso(moment: float) -> str:
    """Unix seconds as an ISO-8601 UTC time."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")
