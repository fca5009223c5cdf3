"""Each target's circuit breaker, shared by every worker through Redis.

A BQN that is down makes every request to it wait for its timeouts. Within one run the engine
stops sending to a BQN that keeps failing (`worker.sync.apply`); across jobs, this breaker
opens once `BREAKER_FAILURES` runs in a row failed transiently on a target, and for
`BREAKER_OPEN_SECONDS` (0: never) every job skips that target at once (and retries it later)
instead of holding a worker on its timeouts, so the other targets' work goes on at full
speed. When the time is up, the next run tries the target again: a success closes the
breaker, a failure opens it again.
"""

from __future__ import annotations

import time
from typing import Any

from redis import Redis

from worker import defaults
from worker.core import phrases
from worker.core.errors import TransientError
from worker.queue import store
from worker.queue.runs import iso


class TargetDown(TransientError):
    """The target's breaker is open: the work there is retried later."""


def check(redis: Redis, keys: store.TargetKeys, name: str) -> None:
    """Raise `TargetDown` while the target's breaker is open."""
    until = redis.hget(keys.breaker, "open_until")
    if until is not None and float(until) > time.time():
        error = redis.hget(keys.breaker, "last_error") or b""
        raise TargetDown(
            phrases.TARGET_DOWN.format(
                name=name, error=error.decode(errors="replace"), at=iso(float(until))
            )
        )


def record(
    redis: Redis,
    keys: store.TargetKeys,
    error: str | None,
    *,
    failures: int = defaults.BREAKER_FAILURES,
    open_seconds: int = defaults.BREAKER_OPEN_SECONDS,
) -> None:
    """Count a run on a target: `None` went through (the breaker closes), else the transient
    failure it met (the breaker opens for `open_seconds` after `failures` in a row)."""
    now = time.time()
    if error is None:
        with redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.breaker, mapping={"failures": 0, "last_ok_at": now})
            pipe.hdel(keys.breaker, "open_until")
            pipe.execute()
        return
    with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(keys.breaker, "failures", 1)
        pipe.hset(keys.breaker, mapping={"last_error": error[:300], "last_error_at": now})
        in_a_row = pipe.execute()[0]
    if in_a_row >= failures and open_seconds:
        redis.hset(keys.breaker, "open_until", now + open_seconds)


def state(redis: Redis, keys: store.TargetKeys) -> dict[str, Any]:
    """The breaker as the API shows it: open or closed, failures in a row, the last error and
    when, the last success."""
    raw = {k.decode(): v.decode() for k, v in redis.hgetall(keys.breaker).items()}
    until = float(raw.get("open_until", 0))

    def when(name: str) -> str | None:
        return iso(float(raw[name])) if raw.get(name) else None

    return {
        "state": "open" if until > time.time() else "closed",
        "failures_in_a_row": int(raw.get("failures", 0)),
        "open_until": when("open_until"),
        "last_error": raw.get("last_error"),
        "last_error_at": when("last_error_at"),
        "last_ok_at": when("last_ok_at"),
    }
