"""Per-client history: every decision taken for a client, step by step, kept in Redis.

Each client has a Redis stream of events, capped at `HISTORY_PER_CLIENT` entries and expiring
`HISTORY_DAYS` after its last event; an index of clients by last event keeps at most
`HISTORY_CLIENTS` streams, dropping the least recently active first. BQN operations are also
counted per hour for the status page's chart.

Events are plain dicts built by the pure functions below; `write` and `read` touch Redis.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline

from worker import defaults
from worker.core.client_overrides import Override
from worker.core.desired import Row
from worker.core.model import Operation
from worker.core.report import Report
from worker.queue.store import PREFIX
from worker.settings import HistoryLimits

Event = dict[str, Any]
# An event and the client it belongs to.
ClientEvent = tuple[int, Event]

INDEX = PREFIX + "history:clients"
HOURLY_PREFIX = PREFIX + "operations:hour:"
# Events written per pipeline (a reconcile may write thousands).
CHUNK = 500


def stream_key(id_servicio: int) -> str:
    """The Redis stream holding a client's events."""
    return f"{PREFIX}history:client:{id_servicio}"


# Events (pure) ---------------------------------------------------------------------------


def event(name: str, /, **fields: Any) -> Event:
    """An event called `name` with the fields that have a value."""
    return {"event": name, **{key: value for key, value in fields.items() if value is not None}}


def requested(via: str, job_id: str, *, coalesced: bool) -> Event:
    """A sync was asked for (`via` webhook, api, poll, reconcile or requeue): a job was queued,
    or one already waiting will do (coalesced)."""
    return event("coalesced" if coalesced else "queued", via=via, job_id=job_id)


def started(job_id: str, attempt: int) -> Event:
    """A worker started the client's job (attempt 1, 2, ...)."""
    return event("started", job_id=job_id, attempt=attempt)


def read_from_wisphub(job_id: str, row: Row | None) -> Event:
    """What WispHub answered for the client: its state, plan and addresses, or nothing."""
    if row is None:
        return event("read", job_id=job_id, found=False)
    plan = row.get("plan_internet")
    return event(
        "read",
        job_id=job_id,
        found=True,
        estado=row.get("estado"),
        plan=plan.get("nombre") if isinstance(plan, Mapping) else None,
        ip=row.get("ip"),
    )


def report_events(report: Report, job_id: str) -> list[tuple[int | None, Event]]:
    """The events of a sync's report, each with the client it concerns (`None`: no client,
    such as a policy): each operation and the BQN's answer, and each skip (the losers of an
    IP conflict among them)."""
    events: list[tuple[int | None, Event]] = []
    for op, failure in report.results():
        if failure is None:
            answer = {"result": "ok"}
        else:
            answer = {"result": "failed", "error": failure.error, "transient": failure.transient}
        events.append((op.id_servicio, event("operation", job_id=job_id, **_op(op), **answer)))
    for skip in report.skips:
        kept = list(skip.kept) or None
        events.append(
            (skip.id_servicio, event("skipped", job_id=job_id, reason=skip.reason, kept=kept))
        )
    return events


def finished(job_id: str, report: Report) -> Event:
    """The job's outcome in numbers."""
    return event("done", job_id=job_id, ok=report.ok, **report.counts())


def superseded(job_id: str, by: str) -> Event:
    """The job did nothing: another job for the client was waiting, and does the work."""
    return event("superseded", job_id=job_id, by=by)


def retrying(job_id: str, error: str) -> Event:
    """The job failed for now and runs again later."""
    return event("retry", job_id=job_id, error=error)


def failed(job_id: str, error: str) -> Event:
    """The job failed for good: it waits in the failures list to be requeued."""
    return event("failed", job_id=job_id, error=error)


def resolved(job_id: str, by: str) -> Event:
    """The failed job left the failures list by itself: what it failed to do went through
    since, done `by` that job."""
    return event("resolved", job_id=job_id, by=by)


def dismissed(job_id: str, via: str) -> Event:
    """A person took the failed job off the failures list without running it again."""
    return event("dismissed", job_id=job_id, via=via)


def override_set(override: Override) -> Event:
    """A temporary override began (`worker.core.client_overrides`): what the client gets
    instead of what WispHub says, until when, why and who set it (`api`, `status-page`)."""
    shown = override.to_dict()
    return event(
        "override",
        kind=override.kind,
        value=override.value,
        until=shown["until"],
        reason=override.reason,
        set_by=override.set_by,
    )


def override_ended(override: Override, why: str, by: str | None = None) -> Event:
    """The client's override ended: `expired`, `removed` (`by` api or status-page) or
    `cancelled` (WispHub cancelled the client); the client returns to what WispHub says."""
    return event("override_ended", kind=override.kind, value=override.value, why=why, by=by)


def _op(op: Operation) -> dict[str, Any]:
    found = {
        "action": str(op.action),
        "kind": str(op.kind),
        "key": op.key,
        "policy": op.fields.get("policyRate"),
    }
    return found if op.target is None else {**found, "target": op.target}


# Redis -----------------------------------------------------------------------------------


def write(
    redis: Redis,
    events: Iterable[ClientEvent],
    limits: HistoryLimits,
    *,
    also: Callable[[Pipeline], None] | None = None,
    known: bool = True,
) -> None:
    """Append events to their clients' streams, keeping within `limits`; `also` adds other
    commands to the first pipeline sent (one round trip for both).

    Only `known` clients (WispHub or the BQN has them) enter the index whose size
    `HISTORY_CLIENTS` caps. Events of a client only named so far (by a notification or a
    person) keep an indexed client's place fresh but add no client, so made-up ids cannot push
    real clients' histories out; their streams expire on their own."""
    batch: list[ClientEvent] = []
    for item in events:
        batch.append(item)
        if len(batch) == CHUNK:
            _write_batch(redis, batch, limits, also, known=known)
            batch, also = [], None
    if batch or also is not None:
        _write_batch(redis, batch, limits, also, known=known)


def forget(redis: Redis, id_servicio: int) -> None:
    """Drop the history of a client neither WispHub nor the BQN has (unless it was known
    once: then its history tells how it went)."""
    if redis.zscore(INDEX, str(id_servicio)) is None:
        redis.delete(stream_key(id_servicio))


def _write_batch(
    redis: Redis,
    batch: list[ClientEvent],
    limits: HistoryLimits,
    also: Callable[[Pipeline], None] | None,
    *,
    known: bool,
) -> None:
    now = time.time()
    keep = limits.days * 86400
    with redis.pipeline(transaction=False) as pipe:
        if also is not None:
            also(pipe)
        for id_servicio, item in batch:
            key = stream_key(id_servicio)
            data = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
            pipe.xadd(key, {"e": data}, maxlen=limits.per_client, approximate=False)
            pipe.expire(key, keep)
        if batch:
            # an id only named so far refreshes a known client's place, and takes none
            members = {str(id_servicio): now for id_servicio, _ in batch}
            pipe.zadd(INDEX, members, xx=not known)
        pipe.zremrangebyscore(INDEX, "-inf", now - keep)
        pipe.zcard(INDEX)
        held = pipe.execute()[-1]
    if held > limits.clients:
        _drop_least_active(redis, held - limits.clients)


def _drop_least_active(redis: Redis, count: int) -> None:
    """Forget the history of the `count` clients whose last event is oldest."""
    dropped = redis.zpopmin(INDEX, count)
    if dropped:
        redis.delete(*(stream_key(int(member)) for member, _ in dropped))


def read(redis: Redis, id_servicio: int, limit: int = 50) -> list[Event]:
    """A client's events, newest first, each with its time (`at`, UTC) and stream id."""
    entries = redis.xrevrange(stream_key(id_servicio), count=limit)
    return [_decoded(entry_id, fields) for entry_id, fields in entries]


# The events that end a job: how a client's last sync went.
OUTCOMES = frozenset({"done", "failed"})
# Events read per client and round trip while looking for its last outcome.
OUTCOME_CHUNK = 10


def last_outcomes(redis: Redis, ids: Iterable[int]) -> dict[int, Event | None]:
    """How each client's last sync went: its newest `done` or `failed` event (`None`: none in
    its history). The newest events of every client are read in one round trip, older ones
    only for the clients still without an outcome."""
    found: dict[int, Event | None] = {}
    wanted: dict[int, str | bytes] = dict.fromkeys(ids, "+")  # client -> where to read from
    while wanted:
        with redis.pipeline(transaction=False) as pipe:
            for id_servicio, newest in wanted.items():
                # `newest` was read last round: one more, and it is dropped below
                extra = newest != "+"
                pipe.xrevrange(stream_key(id_servicio), max=newest, count=OUTCOME_CHUNK + extra)
            answers = pipe.execute()
        further: dict[int, str | bytes] = {}
        for (id_servicio, newest), entries in zip(wanted.items(), answers, strict=True):
            page = [(entry_id, fields) for entry_id, fields in entries if entry_id != newest]
            events = (_decoded(entry_id, fields) for entry_id, fields in page)
            outcome = next((item for item in events if item["event"] in OUTCOMES), None)
            if outcome is None and len(page) >= OUTCOME_CHUNK:
                further[id_servicio] = page[-1][0]
            else:
                found[id_servicio] = outcome
        wanted = further
    return found


def _decoded(entry_id: bytes, fields: Mapping[bytes, bytes]) -> Event:
    stamp = entry_id.decode()
    millis = int(stamp.split("-", 1)[0])
    moment = datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")
    return {"id": stamp, "at": moment, **json.loads(fields[b"e"])}


# Operations per hour ------------------------------------------------------------------


def count_operations(pipe: Pipeline, report: Report, now: float | None = None) -> None:
    """Add a report's BQN writes to this hour's counts: by action when they went through,
    as failed when they did not."""
    if report.dry_run or not report.planned:
        return
    key = HOURLY_PREFIX + str(int((time.time() if now is None else now) // 3600))
    counts = Counter(
        str(op.action) if failure is None else "failed" for op, failure in report.results()
    )
    for name, amount in counts.items():
        pipe.hincrby(key, name, amount)
    pipe.expire(key, defaults.HOURLY_COUNTS_SECONDS)


def operations_per_hour(
    redis: Redis, hours: int = defaults.CHART_HOURS
) -> list[tuple[int, dict[str, int]]]:
    """The last `hours` hours, oldest first: (hour start as Unix seconds, counts by action
    and failures)."""
    current = int(time.time() // 3600)
    wanted = list(range(current - hours + 1, current + 1))
    with redis.pipeline(transaction=False) as pipe:
        for hour in wanted:
            pipe.hgetall(HOURLY_PREFIX + str(hour))
        found = pipe.execute()
    return [
        (hour * 3600, {k.decode(): int(v) for k, v in counts.items()})
        for hour, counts in zip(wanted, found, strict=True)
    ]
