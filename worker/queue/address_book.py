"""The address book jobs keep in Redis (see `worker.core.ownership`): address locks, and the
claimants and footprints kept in `worker.queue.store`.

A job writes or deletes at a BQN address only while it holds that address's lock. It takes the
locks of all the addresses it needs at once, or none (so it never holds some while waiting for
others), and may widen its hold once it knows more; locks expire, so a dead holder frees them,
and a retry of the same job takes back the locks its dead run left.
"""

from __future__ import annotations

import random
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from redis import Redis

from worker import defaults
from worker.core.errors import TransientError
from worker.core.model import Footprint
from worker.core.ownership import Claims, Settlement
from worker.queue import liveness, store

# Every lock, or none; locks the holder has already are taken again (their expiry renewed).
_ACQUIRE = """
for i = 1, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if holder and holder ~= ARGV[1] then return 0 end
end
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end
return 1
"""


class AddressesBusy(TransientError):
    """Another job kept some of the addresses a job needs for longer than it waits."""


class AddressLease:
    """The address locks one job holds."""

    def __init__(
        self, redis: Redis, holder: str, prefix: str, *, wait: float, seconds: int
    ) -> None:
        self.redis = redis
        self.holder = holder
        self.prefix = prefix  # the target's (`store.TargetKeys.address_locks`)
        self.wait = wait
        self.seconds = seconds
        self.keys: set[str] = set()

    def take(self, ips: Collection[str]) -> None:
        """Hold `ips` as well, waiting for them; raise `AddressesBusy` when they stay taken."""
        wanted = self.keys | {self.prefix + ip for ip in ips}
        deadline = time.monotonic() + self.wait
        pause = 0.01
        while not self._acquire(wanted):
            if time.monotonic() > deadline:
                raise AddressesBusy(f"addresses {', '.join(sorted(ips))} stayed locked")
            time.sleep(pause * random.uniform(0.5, 1.5))  # noqa: S311 (jitter, not a secret)
            pause = min(pause * 2, 0.2)
        self.keys = wanted

    def widen(self, ips: Collection[str]) -> bool:
        """Hold `ips` as well. True when they were free at once; False when the lease had to
        let everything go and wait for all of it (what was read under it may have changed)."""
        wanted = self.keys | {self.prefix + ip for ip in ips}
        if wanted == self.keys or self._acquire(wanted):
            self.keys = wanted
            return True
        held = {key.removeprefix(self.prefix) for key in self.keys}
        self.release()
        self.take({*held, *ips})
        return False

    def release(self) -> None:
        """Let every lock go."""
        store.release_locks(self.redis, sorted(self.keys), self.holder)
        self.keys = set()

    def _acquire(self, keys: set[str]) -> bool:
        if not keys:
            return True
        script = self.redis.register_script(_ACQUIRE)
        if not script(sorted(keys), [self.holder, self.seconds * 1000]):
            return False
        liveness.note(self.holder, keys)
        return True


@contextmanager
def hold_addresses(
    redis: Redis,
    ips: Collection[str],
    holder: str,
    *,
    keys: store.TargetKeys = store.DEFAULT_KEYS,
    wait: float = defaults.LOCK_WAIT_SECONDS,
    seconds: int = defaults.ADDRESS_LOCK_SECONDS,
) -> Iterator[AddressLease]:
    """Hold the locks of all `ips` on a target for `holder` (a job id) while the block runs."""
    lease = AddressLease(redis, holder, keys.address_locks, wait=wait, seconds=seconds)
    lease.take(ips)
    try:
        yield lease
    finally:
        lease.release()


@dataclass(frozen=True)
class RedisAddressBook:
    """The address book one job keeps in Redis for one target
    (`worker.sync.engine.AddressBook`)."""

    redis: Redis
    holder: str
    keys: store.TargetKeys = store.DEFAULT_KEYS
    wait: float = defaults.LOCK_WAIT_SECONDS
    seconds: int = defaults.ADDRESS_LOCK_SECONDS  # how long the locks outlive a dead holder

    def hold(self, ips: Collection[str]) -> AbstractContextManager[AddressLease]:
        """Hold the addresses' locks."""
        return hold_addresses(
            self.redis, ips, self.holder, keys=self.keys, wait=self.wait, seconds=self.seconds
        )

    def claimants(self, ips: Collection[str]) -> Claims:
        """Who was seen claiming each address."""
        return store.claimants(self.redis, ips, self.keys)

    def record(
        self, settlement: Settlement, footprints: Sequence[tuple[int, Footprint | None]]
    ) -> None:
        """Keep the settled addresses' claimants, and the jobs' clients' footprints, at once;
        every other claimant of an address gets it in its footprint too, so that its own next
        job looks there (a claimant's footprint always holds the address)."""
        own = {key for key, _ in footprints}
        others = [
            (key, ip) for ip, keys in settlement.claims.items() for key in keys if key not in own
        ]
        with self.redis.pipeline(transaction=True) as pipe:
            store.save_claims(pipe, settlement.addresses, settlement.claims, self.keys)
            for key, footprint in footprints:
                store.save_footprint(pipe, key, footprint, self.keys)
            if others:
                store.add_to_footprints(pipe, others, self.keys)
            pipe.execute()
