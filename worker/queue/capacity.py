"""Room in the queue for requested syncs, reserved atomically.

A check of the queue's length made before queueing lets requests that arrive together all
pass it (each sees the same length). So each request reserves room for its ids in one Lua
script, which counts the jobs waiting and the room others hold; the reservation is released
once its jobs are queued, and expires on its own (Redis' clock) if the web process dies
holding it. While a request queues, its jobs count twice (queued and reserved): near the cap
another request may be refused a moment early, never let through late.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import RedisError
from rq import Queue

from worker import defaults
from worker.queue.store import PREFIX

log = logging.getLogger(__name__)

RESERVATIONS = PREFIX + "queue:reservations"

# KEYS: the queue's list, the reservations (member "<id>:<jobs>", score: when it expires).
# ARGV: jobs wanted, the cap, how long a reservation lasts, the member to add.
# Returns -1 when the room is reserved, else how many jobs wait or are reserved.
_RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local taken = redis.call('LLEN', KEYS[1])
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  taken = taken + tonumber(string.match(member, ':(%d+)$'))
end
if taken + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return taken
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
return -1
"""


class NoRoom(Exception):
    """More jobs wait (or are about to) than the cap allows: nothing may be queued now."""

    def __init__(self, taken: int, wanted: int, limit: int) -> None:
        super().__init__(
            f"{taken} jobs are waiting or being queued and {wanted} more were asked for; "
            f"at most {limit} may wait"
        )


@contextmanager
def room(queue: Queue, wanted: int, limit: int) -> Iterator[None]:
    """Hold room for `wanted` more jobs while the block queues them; raise `NoRoom` when the
    queue and the other reservations leave less."""
    redis = queue.connection
    member = f"{uuid.uuid4().hex}:{wanted}"
    script = redis.register_script(_RESERVE)
    taken = script(
        [queue.key, RESERVATIONS], [wanted, limit, defaults.QUEUE_RESERVATION_SECONDS, member]
    )
    if taken != -1:
        raise NoRoom(int(taken), wanted, limit)
    try:
        yield
    finally:
        try:
            redis.zrem(RESERVATIONS, member)
        except RedisError as exc:  # the block's own error matters more; this one expires
            log.warning("could not release room reserved in the queue: %s", exc)
