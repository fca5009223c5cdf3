"""Counters the worker processes publish through Redis for the web's `/metrics`.

RQ workers may run on several hosts, so they do not serve metrics themselves: each process
adds up its counts in memory (`TALLY`) and a job adds them to one Redis hash when it ends
(`flush`). Counts from the queueing paths go straight into the pipeline that queues the job
(`add`). The web process reads the hash at every scrape (`service.metrics`).

A count still in memory when its process is killed is lost; Prometheus sees the counters as
usual, since they only go up.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError

from worker.queue.store import PREFIX

log = logging.getLogger(__name__)

KEY = PREFIX + "metrics"
NAMESPACE = "wisphub_bqn_sync"
# Seconds: an API call takes tens of milliseconds, a slow one (with retries) many seconds.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Each bucket's `le` label value, as Prometheus writes it.
BUCKET_LABELS = tuple(repr(float(bound)) for bound in BUCKETS)


@dataclass(frozen=True)
class Spec:
    """A metric kept in Redis: its name (without the namespace), type, help and labels."""

    name: str
    kind: str  # "counter" or "histogram"
    help: str
    labels: tuple[str, ...]


SPECS = {
    spec.name: spec
    for spec in (
        Spec(
            "client_syncs_requested",
            "counter",
            "Client syncs asked for, by origin (webhook, api, poll, drift, reconcile, requeue) and "
            "outcome (queued: a new job; coalesced: a waiting job will do)",
            ("via", "outcome"),
        ),
        Spec(
            "jobs",
            "counter",
            "Jobs run by the workers, by job and outcome (succeeded, retried, failed; "
            "superseded: another job waiting for the same client did the work)",
            ("job", "outcome"),
        ),
        Spec(
            "upstream_requests",
            "counter",
            "Requests to WispHub and the BQN (after urllib3's own retries), by service, "
            "operation, HTTP status (error: no answer) and target (the BQN's name)",
            ("service", "operation", "status", "target"),
        ),
        Spec(
            "upstream_request_duration_seconds",
            "histogram",
            "Time taken by requests to WispHub and the BQN, retries included",
            ("service", "operation", "target"),
        ),
        Spec(
            "bqn_operations",
            "counter",
            "Writes to the BQN, by kind (policy, subscriber, group), action, result and target",
            ("kind", "action", "result", "target"),
        ),
        Spec(
            "drift_corrected",
            "counter",
            "Differences between the BQN and WispHub the poller found and acted on, whatever "
            "caused them, by kind (client: a client job queued; address: an entry no client "
            "claims, an address job queued; policy: a rate policy written)",
            ("kind",),
        ),
        Spec(
            "deletion_guard_trips",
            "counter",
            "Times the deletion guard held deletions back, by where (reconcile, poll)",
            ("where",),
        ),
    )
}


def field_name(name: str, labels: dict[str, str], part: str = "") -> str:
    """The hash field of one series: metric name, part (a histogram's bucket, sum or count)
    and labels."""
    return json.dumps([name, part, labels], sort_keys=True, separators=(",", ":"))


def parse_field(field: bytes | str) -> tuple[str, str, dict[str, str]]:
    """The metric name, part and labels of a hash field."""
    name, part, labels = json.loads(field)
    return name, part, labels


def add(pipe: Pipeline, name: str, amount: float = 1, **labels: str) -> None:
    """Count into a pipeline that is about to run anyway."""
    pipe.hincrbyfloat(KEY, field_name(name, labels), amount)


class Tally:
    """Counts and timings of this process, waiting to be added to Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add to a counter."""
        with self._lock:
            self._pending[field_name(name, labels)] += amount

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """Add a timing to a histogram (buckets are cumulative, as Prometheus keeps them)."""
        hits = [
            field_name(name, {**labels, "le": le}, "bucket")
            for bound, le in zip(BUCKETS, BUCKET_LABELS, strict=True)
            if seconds <= bound
        ]
        with self._lock:
            for field in hits:
                self._pending[field] += 1
            self._pending[field_name(name, labels, "sum")] += seconds
            self._pending[field_name(name, labels, "count")] += 1

    def flush(self, redis: Redis) -> None:
        """Add what was counted to Redis; kept for the next flush when Redis fails."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        try:
            with redis.pipeline(transaction=False) as pipe:
                for field, amount in pending.items():
                    pipe.hincrbyfloat(KEY, field, amount)
                pipe.execute()
        except RedisError as exc:
            log.warning("metrics not published, kept for later: %s", exc)
            with self._lock:
                self._pending.update(pending)


def stored(redis: Redis) -> Iterator[tuple[str, str, dict[str, str], float]]:
    """Every series kept in Redis: name, part, labels and value."""
    for field, value in redis.hgetall(KEY).items():
        try:
            name, part, labels = parse_field(field)
        except (ValueError, TypeError):
            continue
        if name in SPECS:
            yield name, part, labels, float(value)


# This process's counts.
TALLY = Tally()


def observe_request(
    service: str, operation: str, status: str, seconds: float, target: str = ""
) -> None:
    """Count and time one request to WispHub or to a target's BQN: the hook the jobs give the
    API clients (`worker.clients.connection.RequestHook`)."""
    labels = {"service": service, "operation": operation, "target": target}
    TALLY.count("upstream_requests", **labels, status=status)
    TALLY.observe("upstream_request_duration_seconds", seconds, **labels)
