"""Whether what was written to Redis has reached its replicas: the acknowledgement of a
notification that must survive a failover, and the replication state `/readyz` shows.

Redis replicates asynchronously: a write is on the master when it answers, on a replica some
time later. `acknowledge` closes that gap for work the service answers 202 for: it returns
only once the replicas have it (`WAIT`). `WAIT` covers the writes made earlier on the same
connection, and the pool may have queued the job on another one, so a marker is written first
on the connection that waits: replication is one ordered stream, and a replica that has the
marker has every write the master took before it.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from worker.queue.store import PREFIX

# Written before each WAIT (see above); its value, a counter, means nothing.
MARKER = f"{PREFIX}replication-marker"


class NotReplicated(Exception):
    """No replica acknowledged in time: the work may be lost if the master fails now."""

    def __init__(self, acknowledged: int, needed: int) -> None:
        super().__init__(f"{acknowledged} of {needed} replicas acknowledged the write in time")


@dataclass(frozen=True)
class Replication:
    """The master's view of its replicas (Redis `ROLE`)."""

    # Replicas connected to the master now.
    replicas: int
    # Bytes of the replication stream the furthest replica has not acknowledged yet.
    lag_bytes: int

    def to_dict(self) -> dict[str, int]:
        return {"replicas": self.replicas, "lag_bytes": self.lag_bytes}


def replication(redis: Redis) -> Replication:
    """The replicas of the master `redis` writes to (`ROLE`: `master`, its offset, then
    `[host, port, acknowledged offset]` per connected replica)."""
    role = redis.execute_command("ROLE")
    if role[0] not in (b"master", "master"):
        return Replication(replicas=0, lag_bytes=0)
    offset, replicas = int(role[1]), role[2]
    lag = max((offset - int(replica[2]) for replica in replicas), default=0)
    return Replication(replicas=len(replicas), lag_bytes=max(lag, 0))


def acknowledge(redis: Redis, wanted: int, timeout_ms: int) -> None:
    """Return once every write made so far has reached `wanted` replicas, or as many as are
    connected when fewer are (none connected: nothing to wait for, and nothing to fail over
    to either; `/readyz` says the replication is degraded). Raise `NotReplicated` when fewer
    acknowledged within `timeout_ms`."""
    if wanted == 0:
        return
    needed = min(wanted, replication(redis).replicas)
    if needed == 0:
        return
    with redis.pipeline(transaction=False) as pipe:  # one connection: WAIT covers the marker
        pipe.incr(MARKER)
        pipe.wait(needed, timeout_ms)
        _, acknowledged = pipe.execute()
    if acknowledged < needed:
        raise NotReplicated(acknowledged, needed)
