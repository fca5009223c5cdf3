"""Locks that last only while their job lives: a short TTL, renewed from a thread while the job
runs, so that a job whose worker was killed (the OOM killer, a host lost) holds nothing for
longer than that TTL, instead of for its whole timeout (a reconcile's is three hours: every
reconcile asked for meanwhile would be skipped as "another reconcile is running").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from worker import defaults

log = logging.getLogger(__name__)


@contextmanager
def kept_alive(lock: Lock, *keys: str, every: float | None = None) -> Iterator[None]:
    """Renew `lock` (to its own timeout) and the TTL of `keys` every `every` seconds (a third
    of the lock's timeout) while the block runs. A renewal that fails is logged and retried at
    the next tick; a lock found lost stops the renewals (its holder goes on: what it does is
    idempotent, and whoever took the lock does the same)."""
    seconds = float(lock.timeout or defaults.LIVE_LOCK_SECONDS)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(every or seconds / 3):
            try:
                lock.reacquire()
                for key in keys:
                    lock.redis.pexpire(key, int(seconds * 1000))
            except LockError:
                log.warning("lock %s was lost: it is no longer renewed", lock.name)
                return
            except RedisError as exc:
                log.warning("lock %s not renewed this time: %s", lock.name, exc)

    thread = threading.Thread(target=renew, name=f"keep {lock.name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=defaults.LIVE_LOCK_SECONDS)


def release(lock: Lock) -> None:
    """Let go of `lock`; one lost meanwhile (it expired while Redis or this process stalled,
    and may be another's now) is only logged: the work it guarded is done, and failing it
    for that would run it all again."""
    try:
        lock.release()
    except LockError:
        log.warning("lock %s was lost before its holder let go of it", lock.name)


# The locks each running job (by its id) holds in this process, renewed by its heartbeat
# (`renew`): a client's, a batch's clients', addresses'. A job whose worker died, or whose
# Redis failed over under it, renews nothing: its locks lapse within LIVE_LOCK_SECONDS, instead
# of blocking the clients' next jobs for the job's whole timeout.
_held: dict[str, set[str]] = {}
_held_guard = threading.Lock()

# Renews each lock (KEYS) its holder (ARGV[1]) still holds, for ARGV[2] ms.
_RENEW = """
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
end
return 1
"""


def note(holder: str, keys: Iterable[str]) -> None:
    """`holder` took these locks: its heartbeat renews them until it lets them go."""
    with _held_guard:
        _held.setdefault(holder, set()).update(keys)


def forget(holder: str, keys: Iterable[str]) -> None:
    """`holder` let these locks go."""
    with _held_guard:
        kept = _held.get(holder, set())
        kept.difference_update(keys)
        if not kept:
            _held.pop(holder, None)


def renew(redis: Redis, holder: str, seconds: int = defaults.LIVE_LOCK_SECONDS) -> None:
    """Renew, in one round trip, the locks `holder` took in this process and still holds."""
    with _held_guard:
        keys = sorted(_held.get(holder, ()))
    if keys:
        redis.register_script(_RENEW)(keys, [holder, seconds * 1000])
