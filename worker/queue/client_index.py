"""The search index of the last complete WispHub pass, kept in Redis, and each web process's
parsed copy of it (`worker.core.search` holds the index itself).

The poller's list pass and the full reconcile write it (`save`) whenever they read a complete
pass, so a search never calls WispHub. The document of a pass is kept under a key named after
its content, and a small hash (`POINTER`) names the current one: a pass that changed nothing
writes no document, a new one replaces the old in one transaction (the pointer moves and the
old document goes at once), and an older pass finishing late never replaces a newer one.

Building a document takes seconds at 100,000 clients, every poll; the pointer also keeps a
digest of the rows it was built from (`digest`, about a fourth of that time), so a pass whose
rows are those of the current document builds nothing.

A web process reads a document once per new pass (`Copy.current`): each search costs one
HMGET of the pointer, then runs in memory.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis import Redis, WatchError

from worker.clients.connection import Connection
from worker.core.desired import Row
from worker.core.search import (
    FORMAT,
    Index,
    IndexFormatError,
    cedula_key,
    encode,
    entries,
    searchable,
)
from worker.queue.store import PREFIX
from worker.version import package_version

log = logging.getLogger(__name__)

# Hash: version (the current document's), read_at (when its pass began, Unix seconds),
# clients (how many it holds), rows (the `digest` of the rows it was built from).
POINTER = PREFIX + "search:index"
# + a version: the document of one pass (`worker.core.search.encode`).
DOCUMENT_PREFIX = POINTER + ":"
# Tries at replacing the index while another pass replaces it too.
SAVE_ATTEMPTS = 3
# Tries at reading the document the pointer names while passes replace it.
LOAD_ATTEMPTS = 3
# What builds the document from the rows: another release may build other bytes from them.
ENCODER = f"format {FORMAT}, release {package_version()}"


def keep(wisphub: Connection) -> Callable[[Row], Row]:
    """What a list pass keeps of each row: the fields the sync reads, and the cédula's digest
    keyed from the WispHub API key (`worker.core.search.cedula_key`), never the cédula."""
    key = cedula_key(wisphub.secret)
    return lambda row: searchable(row, key)


def document_key(version: str) -> str:
    """Where the document of a version is kept."""
    return DOCUMENT_PREFIX + version


def digest(rows: Sequence[Row]) -> str:
    """A digest of a pass's rows, whichever order they came in, and of the `ENCODER`: rows
    with the digest of the current document's build that document again."""
    found = hashlib.blake2b(ENCODER.encode(), digest_size=16)
    for text in sorted(map(repr, rows)):  # a row's repr holds no newline: it escapes them
        found.update(text.encode())
        found.update(b"\n")
    return found.hexdigest()


def save(redis: Redis, rows: Sequence[Row], read_at: float) -> bool:
    """Make the clients of a complete pass, begun at `read_at` (Redis time), the index; False
    when a pass begun later is the index already (or other passes kept replacing it). A pass
    with the current document's rows only moves the pointer's time: no document is built."""
    built = digest(rows)
    document = b""
    for _ in range(SAVE_ATTEMPTS):
        with redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(POINTER)
                current, since, built_from = (
                    None if raw is None else raw.decode()
                    for raw in pipe.hmget(POINTER, "version", "read_at", "rows")
                )
                if since is not None and float(since) > read_at:
                    return False
                if built_from == built and current and pipe.exists(document_key(current)):
                    version, kept = current, True
                else:
                    document = document or encode(entries(rows))
                    version = hashlib.blake2b(document, digest_size=8).hexdigest()
                    kept = current == version and pipe.exists(document_key(version))
                pipe.multi()
                if not kept:
                    pipe.set(document_key(version), document)
                pipe.hset(
                    POINTER,
                    mapping={
                        "version": version,
                        "read_at": read_at,
                        "clients": len(rows),
                        "rows": built,
                    },
                )
                if current is not None and current != version:
                    pipe.delete(document_key(current))
                pipe.execute()
                return True
            except WatchError:
                continue
    log.warning("search index: other passes kept replacing it; this pass's was not kept")
    return False


def last_pass(redis: Redis) -> tuple[float, int] | None:
    """When the indexed pass began (Unix seconds) and how many clients it holds, without
    reading the index itself; `None` before the first complete pass."""
    read_at, clients = redis.hmget(POINTER, "read_at", "clients")
    if read_at is None or clients is None:
        return None
    return float(read_at), int(clients)


@dataclass(frozen=True)
class Indexed:
    """The index of the last complete pass, and when that pass began (Unix seconds)."""

    index: Index
    version: str
    read_at: float


class Copy:
    """A web process's copy of the index, parsed again only when a new pass replaced it."""

    def __init__(self) -> None:
        self._held: Indexed | None = None
        self._lock = threading.Lock()  # one request parses a new pass; the others wait for it

    def current(self, redis: Redis) -> Indexed | None:
        """The index as of the last complete pass; `None` before the first one."""
        for _ in range(LOAD_ATTEMPTS):
            raw_version, raw_read_at = redis.hmget(POINTER, "version", "read_at")
            if raw_version is None or raw_read_at is None:
                return None
            version, read_at = raw_version.decode(), float(raw_read_at)
            held = self._held
            if held is None or held.version != version:
                with self._lock:
                    held = self._held
                    if held is None or held.version != version:
                        document = redis.get(document_key(version))
                        if document is None:  # replaced since the pointer was read
                            continue
                        try:
                            index = Index.decode(document)
                        except IndexFormatError as exc:  # another release wrote it
                            log.warning("search index: %s; the next pass writes it anew", exc)
                            return None
                        held = self._held = Indexed(index, version, read_at)
            return Indexed(held.index, version, read_at)
        return self._held  # passes replaced it as it was read: the one held, if any
