"""Locks that last only while their job lives: a short TTL, renewed from a thread while the job
runs, so that a job whose worker was killed (the OOM killer, a host lost) holds nothing for
longer than that TTL, instead of for its whole timeout (a reconcile's is three hours: every
reconcile asked for meanwhile would be skipped as "another reconcile is running").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
