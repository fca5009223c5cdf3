"""What the service keeps in Redis besides RQ's own keys.

- what was last applied for each client (so an IP change or a removal clears the old entries),
  and the clients seen claiming each address, its rightful owner first (so a job reads them
  again before it writes or deletes there: see `worker.core.ownership`);
- the poller's snapshot of client fingerprints;
- the last plan catalogue read completely (WispHub speeds with the operator's overrides);
- per-client, poller, reconcile and scheduler locks (with expiry, so a dead holder frees them);
- the clients a per-client job touched while a full reconcile was running;
- the rows a batch job carries from the poller's pass.

What concerns one BQN (footprints, claimants, addresses seen unclaimed, the guard's pass size,
address locks) is kept per target (`TargetKeys`); the target `default` keeps the keys of the
versions before targets, so a single-BQN service upgrades with nothing to move.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.lock import Lock

from worker import defaults
from worker.core.model import Footprint
from worker.core.plans import Plan
from worker.core.targets import DEFAULT_TARGET
from worker.queue import liveness

PREFIX = "wisphub-bqn-sync:"
SNAPSHOT = PREFIX + "poll:snapshot"
SNAPSHOT_TAKEN = PREFIX + "poll:taken-at"
POLLS = PREFIX + "poll:passes"
PLANS = PREFIX + "plans"
PLANS_READ = PREFIX + "plans:read-at"
TOUCHED = PREFIX + "reconcile:touched"
# id_servicio -> when a job last read the client from WispHub (Redis time).
READ_AT = PREFIX + "read-at"
# + a batch job's id: the rows of its clients a complete pass read (JSON by id_servicio).
BATCH_ROWS_PREFIX = PREFIX + "batch:rows:"
RECONCILING = PREFIX + "reconcile:running"


@dataclass(frozen=True)
class TargetKeys:
    """The keys of what the service keeps about one BQN."""

    prefix: str

    @property
    def applied(self) -> str:
        """id_servicio -> the client's footprint there (JSON)."""
        return self.prefix + "applied"

    @property
    def claims(self) -> str:
        """Address -> the clients claiming it, comma-separated, the rightful owner first (a
        single id is the form earlier releases kept, the owner alone)."""
        return self.prefix + "applied:ip-owners"

    @property
    def unclaimed(self) -> str:
        """The addresses the poller's last comparison found claimed by nobody."""
        return self.prefix + "poll:unclaimed"

    @property
    def locations(self) -> str:
        """Location group -> the digest of the members last written there: the location
        groups the sync created (`worker.queue.locations`)."""
        return self.prefix + "locations"

    @property
    def locations_pass(self) -> str:
        """The digest of the pass the location groups were last worked out from."""
        return self.prefix + "locations:pass"

    @property
    def pass_size(self) -> str:
        """How many clients of the last complete pass the target takes (the guard's base)."""
        return self.prefix + "pass:clients"

    @property
    def breaker(self) -> str:
        """The target's circuit breaker (`worker.queue.breaker`)."""
        return self.prefix + "breaker"

    @property
    def address_locks(self) -> str:
        """+ an address: the job holding it (`worker.queue.address_book`)."""
        return self.prefix + "lock:address:"

    @property
    def remembered(self) -> tuple[str, ...]:
        """What a reconcile's bookkeeping watches: if a job records meanwhile, it is worked
        out again."""
        return (self.applied, self.claims, TOUCHED)


def target_keys(target: str) -> TargetKeys:
    """Where a target's state lives."""
    return TargetKeys(PREFIX if target == DEFAULT_TARGET else f"{PREFIX}target:{target}:")


DEFAULT_KEYS = target_keys(DEFAULT_TARGET)


def pending_key(id_servicio: int) -> str:
    """Key holding the id of the sync job waiting in the queue for a client."""
    return f"{PREFIX}pending:{id_servicio}"


def pending_address_key(ip: str) -> str:
    """Key holding the id of the sync job waiting in the queue for a BQN address."""
    return f"{PREFIX}pending:address:{ip}"


def expedited_key(job_id: str) -> str:
    """Key marking that a job waiting for a retry was run early once."""
    return f"{PREFIX}expedited:{job_id}"


def failed_key(claim: str) -> str:
    """Key marking that the last job queued under `claim` (a pending key) failed for good."""
    return f"{claim}:failed"


def mark_failed(redis: Redis, claim: str, job_id: str) -> None:
    """Note that a client's (or an address's) job failed for good: for an hour, the poller's
    drift correction leaves it in the failures list instead of queueing it at every pass."""
    redis.set(failed_key(claim), job_id, ex=defaults.FAILED_MARK_SECONDS)


def clear_failed(redis: Redis, claim: str) -> None:
    """A job under `claim` went through: drift may queue it again."""
    redis.delete(failed_key(claim))


def clear_all_failed(redis: Redis) -> None:
    """A reconcile or a plan refresh went through (a cause may be fixed): drift may queue
    every client again."""
    keys = list(redis.scan_iter(match=failed_key(f"{PREFIX}pending:*"), count=1000))
    for start in range(0, len(keys), 1000):
        redis.delete(*keys[start : start + 1000])


def failed(redis: Redis, claims: Iterable[str]) -> set[str]:
    """Those of `claims` whose last job failed for good."""
    wanted = list(claims)
    if not wanted:
        return set()
    marks = redis.mget([failed_key(claim) for claim in wanted])
    return {claim for claim, mark in zip(wanted, marks, strict=True) if mark is not None}


def client_lock_key(id_servicio: int) -> str:
    """The key of a client's lock (`client_lock`)."""
    return f"{PREFIX}lock:client:{id_servicio}"


def client_lock(redis: Redis, id_servicio: int) -> Lock:
    """The lock that keeps two workers from applying the same client at once."""
    return redis.lock(
        client_lock_key(id_servicio),
        timeout=defaults.CLIENT_LOCK_SECONDS,
        blocking_timeout=defaults.LOCK_WAIT_SECONDS,
    )


# Takes each lock that is free (or already the holder's) for ARGV[1], for ARGV[2] ms; returns
# 1 for each lock taken, 0 for each another holder keeps.
_TAKE_FREE = """
local out = {}
for i = 1, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if holder and holder ~= ARGV[1] then
    out[i] = 0
  else
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
    out[i] = 1
  end
end
return out
"""
_RELEASE = """
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 1
"""


def take_client(redis: Redis, id_servicio: int, holder: str) -> bool:
    """Take a client's lock for `holder`, at once when it is free (or `holder`'s, left by a
    run of the same job whose worker died), else waiting up to `LOCK_WAIT_SECONDS`. Released
    with `release_locks`."""
    if take_client_locks(redis, [id_servicio], holder):
        return True
    if not client_lock(redis, id_servicio).acquire(token=holder.encode()):
        return False
    liveness.note(holder, [client_lock_key(id_servicio)])
    return True


def take_client_locks(
    redis: Redis, ids: Sequence[int], holder: str, seconds: int = defaults.CLIENT_LOCK_SECONDS
) -> list[int]:
    """Take, in one round trip, the locks of those clients no other job holds (the same locks
    as `client_lock`), for `seconds`; return the clients taken."""
    keys = [client_lock_key(key) for key in ids]
    taken = redis.register_script(_TAKE_FREE)(keys, [holder, seconds * 1000])
    liveness.note(holder, [key for key, flag in zip(keys, taken, strict=True) if flag])
    return [key for key, flag in zip(ids, taken, strict=True) if flag]


def release_locks(redis: Redis, keys: Sequence[str], holder: str) -> None:
    """Let go of those `keys` (locks) `holder` holds, in one round trip."""
    if keys:
        redis.register_script(_RELEASE)(sorted(keys), [holder])
        liveness.forget(holder, keys)


def singleton_lock(redis: Redis, name: str, seconds: int) -> Lock:
    """A non-blocking lock for work that must not run twice at once (poll, reconcile, cron);
    its token is shared by the threads of its job, so one can keep it alive
    (`worker.queue.liveness`)."""
    return redis.lock(f"{PREFIX}lock:{name}", timeout=seconds, blocking=False, thread_local=False)


def take(lock: Lock, holder: str) -> bool:
    """Acquire `lock` for `holder` (a job id). A lock left by an earlier run of the same job,
    whose worker died, is taken back at once instead of blocking its retry until it expires."""
    token = holder.encode()
    if lock.redis.get(lock.name) == token:
        lock.redis.delete(lock.name)
    return bool(lock.acquire(token=token))


# Last applied entries -------------------------------------------------------------------


def last_applied(
    redis: Redis, id_servicio: int, keys: TargetKeys = DEFAULT_KEYS
) -> Footprint | None:
    """What was last applied for a client on a target, if anything."""
    raw = redis.hget(keys.applied, str(id_servicio))
    return None if raw is None else _decode(raw)


def applied_by_target(
    redis: Redis, id_servicio: int, names: Sequence[str]
) -> dict[str, Footprint | None]:
    """What was last applied for a client on each target named, in one round trip."""
    found = applied_on(redis, [id_servicio], [target_keys(name) for name in names])
    return {name: each[id_servicio] for name, each in zip(names, found, strict=True)}


def applied_on(
    redis: Redis, ids: Sequence[int], targets: Sequence[TargetKeys]
) -> list[dict[int, Footprint | None]]:
    """What was last applied for each of some clients on each of `targets` (in their order),
    in one round trip."""
    if not ids:
        return [{} for _ in targets]
    with redis.pipeline(transaction=False) as pipe:
        for keys in targets:
            pipe.hmget(keys.applied, [str(key) for key in ids])
        found = pipe.execute()
    return [
        {key: None if raw is None else _decode(raw) for key, raw in zip(ids, raws, strict=True)}
        for raws in found
    ]


def save_footprint(
    pipe: Pipeline, id_servicio: int, applied: Footprint | None, keys: TargetKeys = DEFAULT_KEYS
) -> None:
    """Record (or, with `None`, forget) what was applied for a client."""
    if applied is None:
        pipe.hdel(keys.applied, str(id_servicio))
    else:
        pipe.hset(keys.applied, str(id_servicio), _encode(applied))


# Adds addresses to footprints, (client, address) pairs in ARGV; a footprint gains an address
# only if it lacks it, and one is made for a client that has none.
_ADD_TO_FOOTPRINTS = """
for i = 1, #ARGV, 2 do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  local footprint = {subscriber_id = '', ips = {}, group = cjson.null}
  if raw then footprint = cjson.decode(raw) end
  local found = false
  for _, ip in ipairs(footprint.ips) do
    if ip == ARGV[i + 1] then found = true end
  end
  if not found then
    table.insert(footprint.ips, ARGV[i + 1])
    redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(footprint))
  end
end
return 1
"""


def add_to_footprints(
    pipe: Pipeline, pairs: Iterable[tuple[int, str]], keys: TargetKeys = DEFAULT_KEYS
) -> None:
    """Make sure each (client, address) is in the client's footprint."""
    args = [item for key, ip in pairs for item in (str(key), ip)]
    if args:
        pipe.register_script(_ADD_TO_FOOTPRINTS)([keys.applied], args, client=pipe)


def claimants(
    redis: Redis, ips: Iterable[str], keys: TargetKeys = DEFAULT_KEYS
) -> dict[str, tuple[int, ...]]:
    """The clients seen claiming each of `ips`, the rightful owner first (IPs nobody claims
    are left out)."""
    wanted = list(ips)
    if not wanted:
        return {}
    found = redis.hmget(keys.claims, wanted)
    return {ip: _ids(raw) for ip, raw in zip(wanted, found, strict=True) if raw}


def save_claims(
    pipe: Pipeline,
    addresses: Iterable[str],
    claims: Mapping[str, Collection[int]],
    keys: TargetKeys = DEFAULT_KEYS,
) -> None:
    """Replace the claimants of `addresses` (an address without claimants is forgotten)."""
    for ip in addresses:
        if claims.get(ip):
            pipe.hset(keys.claims, ip, ",".join(map(str, claims[ip])))
        else:
            pipe.hdel(keys.claims, ip)


def all_applied(redis: Redis, keys: TargetKeys = DEFAULT_KEYS) -> dict[int, Footprint]:
    """Everything remembered of a target, by client."""
    return {int(key): _decode(raw) for key, raw in redis.hgetall(keys.applied).items()}


def replace_applied(
    pipe: Pipeline,
    applied: Mapping[int, Footprint],
    claims: Mapping[str, Collection[int]],
    keys: TargetKeys = DEFAULT_KEYS,
) -> None:
    """Replace everything remembered of a target (after a full reconcile), in `pipe`'s
    transaction."""
    pipe.delete(keys.applied, keys.claims)
    if applied:
        pipe.hset(keys.applied, mapping={str(k): _encode(v) for k, v in applied.items()})
    if claims:
        encoded = {ip: ",".join(map(str, ids)) for ip, ids in claims.items()}
        pipe.hset(keys.claims, mapping=encoded)


def _ids(raw: bytes | str) -> tuple[int, ...]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return tuple(int(part) for part in text.split(",") if part)


def _encode(applied: Footprint) -> str:
    return json.dumps(applied.to_dict(), ensure_ascii=False)


def _decode(raw: bytes | str) -> Footprint:
    data = json.loads(raw)
    return Footprint(data["subscriber_id"], tuple(data["ips"]), data.get("group"))


# Poller snapshot ------------------------------------------------------------------------


def snapshot(redis: Redis) -> dict[int, str] | None:
    """The fingerprints of the last complete pass; `None` before the first one."""
    if not redis.exists(SNAPSHOT_TAKEN):
        return None
    return {int(k): v.decode() for k, v in redis.hgetall(SNAPSHOT).items()}


def save_snapshot(redis: Redis, prints: Mapping[int, str]) -> None:
    """Replace the snapshot with a complete pass's fingerprints, atomically."""
    with redis.pipeline(transaction=True) as pipe:
        pipe.delete(SNAPSHOT)
        if prints:
            pipe.hset(SNAPSHOT, mapping={str(k): v for k, v in prints.items()})
        pipe.set(SNAPSHOT_TAKEN, time.time())
        pipe.execute()


def record_fingerprints(pipe: Pipeline, values: Mapping[int, str | None]) -> None:
    """Update some clients' fingerprints after a job acted on them, so the poller compares
    with the state last applied and not with an older pass (`None`: the client is gone); only
    once a pass was recorded. In `pipe`."""
    gone = [str(key) for key, value in values.items() if value is None]
    seen = {str(key): value for key, value in values.items() if value is not None}
    script = pipe.register_script(_RECORD_FINGERPRINTS)
    script(
        [SNAPSHOT_TAKEN, SNAPSHOT],
        [len(gone), *gone, *(x for kv in seen.items() for x in kv)],
        client=pipe,
    )


_RECORD_FINGERPRINTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local gone = tonumber(ARGV[1])
for i = 2, gone + 1 do redis.call('HDEL', KEYS[2], ARGV[i]) end
for i = gone + 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""


def save_pass_size(redis: Redis, clients: int, keys: TargetKeys = DEFAULT_KEYS) -> None:
    """Remember how many clients of the last complete WispHub pass a target takes (for the
    deletion guard)."""
    redis.set(keys.pass_size, clients)


def pass_size(redis: Redis, keys: TargetKeys = DEFAULT_KEYS) -> int | None:
    """How many clients of the last complete WispHub pass a target takes."""
    raw = redis.get(keys.pass_size)
    return None if raw is None else int(raw)


def swap_unclaimed(redis: Redis, ips: Iterable[str], keys: TargetKeys = DEFAULT_KEYS) -> set[str]:
    """Keep the entries of a target this comparison found claimed by nobody; return those the
    last one found (an entry nobody ever claimed goes only once two passes in a row agree)."""
    with redis.pipeline(transaction=True) as pipe:
        pipe.smembers(keys.unclaimed)
        pipe.delete(keys.unclaimed)
        wanted = list(ips)
        if wanted:
            pipe.sadd(keys.unclaimed, *wanted)
        before = pipe.execute()[0]
    return {ip.decode() for ip in before}


def next_poll_reads_bqn(redis: Redis, every: int) -> bool:
    """Count a poll pass; True for those that compare with the BQN (the first, then one in
    `every`)."""
    return (int(redis.incr(POLLS)) - 1) % every == 0


def snapshot_age(redis: Redis) -> float | None:
    """Seconds since the last complete pass was recorded."""
    taken = redis.get(SNAPSHOT_TAKEN)
    return None if taken is None else time.time() - float(taken)


# Plan catalogue ---------------------------------------------------------------------------


def saved_plans(redis: Redis) -> list[Plan] | None:
    """The last plan catalogue read completely; `None` before the first one."""
    raw = redis.get(PLANS)
    return None if raw is None else [Plan.from_dict(item) for item in json.loads(raw)]


def save_plans(redis: Redis, plans: Iterable[Plan]) -> None:
    """Keep a complete plan catalogue."""
    encoded = json.dumps([plan.to_dict() for plan in plans], ensure_ascii=False)
    with redis.pipeline(transaction=True) as pipe:
        pipe.set(PLANS, encoded)
        pipe.set(PLANS_READ, time.time())
        pipe.execute()


def may_look_for_plan(redis: Redis, plan_id: int) -> bool:
    """True unless the catalogue was read for this unknown plan in the last minute."""
    key = f"{PREFIX}plans:looked-for:{plan_id}"
    return bool(redis.set(key, 1, nx=True, ex=defaults.PLAN_LOOKUP_SECONDS))


def plans_age(redis: Redis) -> float | None:
    """Seconds since the catalogue was last read."""
    read_at = redis.get(PLANS_READ)
    return None if read_at is None else time.time() - float(read_at)


# Reconcile bookkeeping ------------------------------------------------------------------


def begin_reconcile(redis: Redis) -> None:
    """Mark a reconcile as running and start collecting the clients jobs touch meanwhile."""
    with redis.pipeline(transaction=True) as pipe:
        pipe.delete(TOUCHED)
        pipe.set(RECONCILING, time.time(), ex=defaults.RECONCILE_LOCK_SECONDS)
        pipe.execute()


def touch(
    redis: Redis, ids: Sequence[int], targets: Sequence[TargetKeys] = (DEFAULT_KEYS,)
) -> list[dict[int, Footprint | None]]:
    """As jobs start applying some clients: note them if a reconcile runs (its read may be
    older than theirs: they are synced again when it ends, and what the jobs record is kept
    beside its own), and return what was last applied for each on each of `targets`, in one
    round trip."""
    if not ids:
        return [{} for _ in targets]
    with redis.pipeline(transaction=False) as pipe:
        pipe.register_script(_NOTE_TOUCHED)([RECONCILING, TOUCHED], list(ids), client=pipe)
        for keys in targets:
            pipe.hmget(keys.applied, [str(key) for key in ids])
        found = pipe.execute()[1:]
    return [
        {key: None if raw is None else _decode(raw) for key, raw in zip(ids, raws, strict=True)}
        for raws in found
    ]


class Touched:
    """Whether a job touched a client since the running reconcile began (`TOUCHED`): asked for
    each of the reconcile's writes, from the set read again at most every `every` seconds."""

    def __init__(self, redis: Redis, every: float = defaults.TOUCHED_READ_SECONDS) -> None:
        self.redis, self.every = redis, every
        self._lock = threading.Lock()
        self._read_at = -math.inf
        self._ids: frozenset[int] = frozenset()

    def __call__(self, id_servicio: int) -> bool:
        with self._lock:
            if time.monotonic() - self._read_at >= self.every:
                self._ids = frozenset(int(key) for key in self.redis.smembers(TOUCHED))
                self._read_at = time.monotonic()
            return id_servicio in self._ids


_NOTE_TOUCHED = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('SADD', KEYS[2], unpack(ARGV)) end
return 1
"""


def touched(redis: Redis) -> set[int]:
    """The clients jobs have touched since the running reconcile began."""
    return {int(x) for x in redis.smembers(TOUCHED)}


def end_reconcile(redis: Redis) -> list[int]:
    """Clear the running mark; return the clients touched meanwhile."""
    with redis.pipeline(transaction=True) as pipe:
        pipe.smembers(TOUCHED)
        pipe.delete(TOUCHED, RECONCILING)
        touched, _ = pipe.execute()
    return sorted(int(x) for x in touched)


# Rows a batch carries -------------------------------------------------------------------


# The field of a batch's rows that holds when the pass began reading them (Redis time).
ROWS_READ_AT = "read-at"


def save_batch_rows(
    pipe: Pipeline, job_id: str, rows: Mapping[int, Mapping[str, Any]], read_at: float
) -> None:
    """Keep the rows a pass began reading at `read_at` for a batch job's clients, for as long
    as it may wait."""
    key = BATCH_ROWS_PREFIX + job_id
    fields = {str(k): json.dumps(row, ensure_ascii=False) for k, row in rows.items()}
    pipe.hset(key, mapping={**fields, ROWS_READ_AT: read_at})
    pipe.expire(key, defaults.BATCH_ROWS_SECONDS)


def now(redis: Redis) -> float:
    """Redis' clock: the one time every process and host agrees on."""
    seconds, micros = redis.time()
    return seconds + micros / 1e6


_NOTE_READ = """
local t = redis.call('TIME')
local now = t[1] + t[2] / 1000000
for i = 1, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], tostring(now)) end
return 1
"""


def note_read(pipe: Pipeline, ids: Collection[int]) -> None:
    """Note that a job has just read these clients from WispHub and applied them (Redis time,
    taken once the job is done: never earlier than the read), so that rows a pass read before
    are not applied over them (`read_after`). In `pipe`."""
    if ids:
        pipe.register_script(_NOTE_READ)([READ_AT], [str(key) for key in ids], client=pipe)


def read_after(redis: Redis, ids: Sequence[int], moment: float) -> set[int]:
    """Those of `ids` a job read from WispHub after `moment`."""
    found = redis.hmget(READ_AT, [str(key) for key in ids]) if ids else []
    return {key for key, at in zip(ids, found, strict=True) if at and float(at) > moment}
