"""Temporary overrides kept in Redis (`worker.core.client_overrides` decides what they do).

One hash holds every client's override as JSON, by `id_servicio`, with the rest of the state
(it survives restarts as Redis does). Jobs and passes read the overrides in force
(`in_force`) each time they map clients, so an override that has expired is ignored at once,
whatever else happens. To bring a client back to what WispHub says within seconds, setting an
override also schedules RQ's `expire_overrides` job at its `until` (the workers run RQ's
scheduler); the poll ends any expired override left over too. Beginning and end go to the
client's history.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TypeGuard

from redis import Redis
from rq import Queue

from worker.core.client_overrides import Override, active
from worker.core.desired import REMOVED, Row, client_id
from worker.queue import history, queueing, store
from worker.settings import ServiceSettings

KEY = store.PREFIX + "overrides"
# RQ keeps a scheduled job's time to the whole second, and may queue it up to a second early:
# the expiry job is scheduled this much after `until`, so that the override has ended by then.
EXPIRY_MARGIN = timedelta(seconds=1)
# Deletes a client's override only if it is still the one read (ARGV[1]): an override set
# meanwhile is not ended by mistake.
_END = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


def clock(redis: Redis) -> datetime:
    """Now, by Redis' clock (the one every process and host agrees on)."""
    return datetime.fromtimestamp(store.now(redis), UTC)


def every(redis: Redis) -> list[Override]:
    """Every override kept, expired or not, by client id."""
    return _decoded(redis.hvals(KEY))


def in_force(redis: Redis) -> dict[int, Override]:
    """The overrides in force now, by client: what the mapping applies."""
    with redis.pipeline(transaction=False) as pipe:
        pipe.hvals(KEY)
        pipe.time()
        raw, (seconds, micros) = pipe.execute()
    return active(_decoded(raw), datetime.fromtimestamp(seconds + micros / 1e6, UTC))


def of_client(redis: Redis, id_servicio: int) -> Override | None:
    """The client's override in force, if any."""
    raw = redis.hget(KEY, str(id_servicio))
    if raw is None:
        return None
    found = Override.from_dict(json.loads(raw))
    return found if found.until > clock(redis) else None


def begin(queue: Queue, override: Override, service: ServiceSettings) -> None:
    """Keep `override` (in place of the client's earlier one, which ends), note it in the
    client's history, and schedule the job that ends it at its `until`."""
    redis = queue.connection
    earlier = redis.hget(KEY, str(override.id_servicio))
    events = []
    if earlier is not None:
        events.append(history.override_ended(Override.from_dict(json.loads(earlier)), "replaced"))
    events.append(history.override_set(override))
    history.write(
        redis,
        [(override.id_servicio, event) for event in events],
        service.history,
        also=lambda pipe: pipe.hset(KEY, str(override.id_servicio), _encoded(override)),
    )
    queue.enqueue_at(
        override.until + EXPIRY_MARGIN,
        queueing.EXPIRE_OVERRIDES.path,
        description=f"end the overrides due at {override.until.isoformat()}",
        retry=queueing.RESTARTS,
        **queueing.EXPIRE_OVERRIDES.options(),
    )


def end(
    redis: Redis, override: Override, why: str, service: ServiceSettings, by: str | None = None
) -> bool:
    """End `override` (`why`: removed, expired, cancelled) unless another took its place
    meanwhile; note it in the client's history. Whether it was ended here."""
    ended = redis.register_script(_END)([KEY], [str(override.id_servicio), _encoded(override)])
    if ended:
        history.write(
            redis,
            [(override.id_servicio, history.override_ended(override, why, by))],
            service.history,
        )
    return bool(ended)


def end_expired(redis: Redis, service: ServiceSettings) -> list[int]:
    """End every override whose `until` has passed; the clients whose override ended."""
    now = clock(redis)
    return [
        item.id_servicio
        for item in every(redis)
        if item.until <= now and end(redis, item, "expired", service)
    ]


def end_cancelled(
    redis: Redis, rows: Iterable[Row | None], kept: Mapping[int, Override], service: ServiceSettings
) -> list[int]:
    """End the override (of `kept`, those in force) of every client of `rows` WispHub has
    cancelled: a cancellation removes the client, and ends its override."""
    if not kept:
        return []
    cancelled = [client_id(row) for row in rows if _cancelled(row)]
    return [key for key in cancelled if key in kept and end(redis, kept[key], "cancelled", service)]


def _cancelled(row: Row | None) -> TypeGuard[Row]:
    estado = None if row is None else row.get("estado")
    return isinstance(estado, str) and estado.strip().lower() in REMOVED


def _decoded(raws: Iterable[bytes]) -> list[Override]:
    """The overrides kept as JSON, by client id (an unreadable entry is left out)."""
    found = []
    for raw in raws:
        try:
            found.append(Override.from_dict(json.loads(raw)))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(found, key=lambda item: item.id_servicio)


def _encoded(override: Override) -> str:
    return json.dumps(override.to_dict(), sort_keys=True)
