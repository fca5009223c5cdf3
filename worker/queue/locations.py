"""The location groups of every target, kept in line by whole passes: the poller's at each
complete pass, the reconcile's (`worker.sync.locations` says how; `worker.core.locations`
what they are).

What was last written to each target is kept in Redis (`TargetKeys.locations`: group name ->
digest of its members), which also names the groups the sync created: the only ones it ever
changes or deletes. The poller and a reconcile take turns (a lock), so two passes read at
different times never interleave their writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis import Redis

from worker import defaults
from worker.core import phrases
from worker.core.desired import Row
from worker.core.errors import SyncError
from worker.core.locations import pass_digest
from worker.queue import liveness, store
from worker.queue.runtime import Runtime, keys_of
from worker.sync.locations import LocationSync, sync_locations
from worker.sync.targets import Shaper, each_target

log = logging.getLogger(__name__)


def keep_placed(
    redis: Redis,
    rt: Runtime,
    shapers: Sequence[Shaper],
    rows: Sequence[Row],
    *,
    compare: bool,
    dry_run: bool = False,
) -> dict[str, Any] | None:
    """Bring the location groups of `shapers` (targets) in line with the complete pass `rows`;
    what was done, for the poll's summary or the reconcile's notes (None when LOCATION_GROUPS
    is not set, or another pass is writing them: the next one does)."""
    if not rt.settings.rules.location_groups:
        return None
    lock = redis.lock(
        f"{store.PREFIX}lock:locations",
        timeout=defaults.LIVE_LOCK_SECONDS,
        blocking_timeout=defaults.LOCATIONS_WAIT_SECONDS,
        thread_local=False,
    )
    if not lock.acquire():
        log.info("location groups: another pass is writing them; the next pass will")
        return None
    try:
        with liveness.kept_alive(lock):  # a slow BQN may take minutes over many groups
            done, errors = each_target(
                shapers,
                lambda shaper: _on_target(
                    redis, rt, shaper, rows, compare=compare, dry_run=dry_run
                ),
            )
    finally:
        liveness.release(lock)
    return summary(done, errors, rt.settings.rules.groups_per_ip)


def _on_target(
    redis: Redis, rt: Runtime, shaper: Shaper, rows: Sequence[Row], *, compare: bool, dry_run: bool
) -> LocationSync | None:
    keys = keys_of(shaper)
    selected = [row for row in rows if shaper.selector.matches(row)]
    worked_out = pass_digest(selected, rt.settings.rules)
    if not compare and redis.get(keys.locations_pass) == worked_out.encode():
        return None  # the groups of the last pass, written then
    written = {name.decode(): kept.decode() for name, kept in redis.hgetall(keys.locations).items()}
    done = sync_locations(
        shaper.bqn, rt.settings.rules, selected, written, compare=compare, dry_run=dry_run
    )
    if not dry_run:
        _record(redis, keys, done.written, worked_out if not done.report.failures else None)
    if done.report.planned or done.foreign:
        log.info(
            "location groups%s: %d written, %d failed%s",
            "" if len(rt.shapers) == 1 else f" of target {shaper.name}",
            len(done.report.planned) - len(done.report.failures),
            len(done.report.failures),
            f"; left alone, not created by the sync: {', '.join(done.foreign)}"
            if done.foreign
            else "",
        )
    return done


def _record(
    redis: Redis, keys: store.TargetKeys, written: dict[str, str | None], worked_out: str | None
) -> None:
    """Keep the digests written, and the pass's (`worked_out`, None when a write failed: the
    next pass works the groups out again), in one round trip; forget the groups deleted."""
    kept = {name: value for name, value in written.items() if value is not None}
    gone = [name for name, value in written.items() if value is None]
    with redis.pipeline(transaction=True) as pipe:
        if kept:
            pipe.hset(keys.locations, mapping=kept)
        if gone:
            pipe.hdel(keys.locations, *gone)
        if worked_out is None:
            pipe.delete(keys.locations_pass)
        else:
            pipe.set(keys.locations_pass, worked_out)
        pipe.execute()


def notes(found: dict[str, Any] | None) -> list[str]:
    """What a reconcile's report says of the location groups: the places left out, the names
    held by groups the sync did not create, the targets it could not reach."""
    if not found:
        return []
    said = [
        phrases.LOCATIONS_LEFT_OUT.format(count=count, field=field, most=found["most"])
        for field, count in found["left_out"].items()
    ]
    said += [phrases.NOT_OUR_GROUP.format(name=name) for name in found["foreign"]]
    said += [
        phrases.ON_TARGET.format(name=name, error=error) for name, error in found["errors"].items()
    ]
    return said


def summary(
    done: dict[str, LocationSync | None], errors: dict[str, SyncError], most: int
) -> dict[str, Any]:
    """What the pass did to the location groups, added up over the targets (`unchanged` when
    every target's were those of the last pass: not worked out again); `most`, the groups an
    address may be in (BQN_GROUPS_PER_IP)."""
    results = [result for result in done.values() if result is not None]
    if not results and not errors:
        return {"unchanged": True, "most": most}
    left_out: dict[str, int] = {}
    for result in results:
        for field, count in result.left_out.items():
            left_out[field] = left_out.get(field, 0) + count
    found: dict[str, Any] = {
        "groups": sum(result.groups for result in results),
        "written": sum(len(r.report.planned) - len(r.report.failures) for r in results),
        "failed": sum(len(result.report.failures) for result in results),
        "left_out": left_out,
        "foreign": sorted({name for result in results for name in result.foreign}),
        "errors": {name: str(error) for name, error in errors.items()},
        "most": most,
    }
    return found
