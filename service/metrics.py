"""`/metrics`: Prometheus metrics, with the official client library, behind the API token.

Three sources make one exposition:
- the web process's own counters (notifications by outcome, requests by endpoint with their
  latency), kept by prometheus_client in multiprocess mode under gunicorn (see
  `service.gunicorn_conf`), in memory otherwise;
- the worker processes' counters, which they publish through Redis (`worker.queue.metrics`);
- gauges read at scrape time: queue depth and oldest job, retrying and failed jobs, workers,
  last reconcile and last poll (`service.overview`), whether writes are paused.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from http import HTTPStatus

from flask import Blueprint, Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis import Redis
from rq import Queue

from service import overview
from service.auth import require_api_token
from service.context import context
from worker.queue import breaker, metrics, pause, store

NS = metrics.NAMESPACE

NOTIFICATIONS = Counter(
    "notifications",
    "Change notifications received at /webhooks/wisphub, by outcome (accepted, "
    "unauthorized, invalid, rate_limited, error)",
    ["outcome"],
    namespace=NS,
)
REQUESTS = Histogram(
    "http_request_duration_seconds",
    "Time to answer HTTP requests, by route (unmatched: one series), method (other: any but "
    "the seven usual ones) and status",
    ["endpoint", "method", "status"],
    namespace=NS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OUTCOMES = {202: "accepted", 401: "unauthorized", 429: "rate_limited"}
# Labels a request can give REQUESTS, so that strangers cannot add series: gunicorn takes any
# uppercase word as a method, and any path reaches the app.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATUSES = frozenset(status.value for status in HTTPStatus)
OTHER = "other"
UNMATCHED = "unmatched"

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def scrape() -> Response:
    """Every metric, in Prometheus' text format."""
    ctx = context()
    require_api_token(ctx.service.api_token)
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Own())
    names = [target.name for target in ctx.sync.targets]
    registry.register(RedisCollector(ctx.redis, ctx.queue, names))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def install(app: Flask) -> None:
    """Time every request and count notifications by outcome; serve `/metrics`."""

    @app.before_request
    def _start() -> None:
        request.environ["wisphub_bqn_sync.started"] = time.monotonic()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = request.environ.get("wisphub_bqn_sync.started")
        endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        if started is not None:
            REQUESTS.labels(
                endpoint, _method(request.method), _status(response.status_code)
            ).observe(time.monotonic() - started)
        if endpoint == "/webhooks/wisphub":
            NOTIFICATIONS.labels(_outcome(response.status_code)).inc()
        return response

    app.register_blueprint(blueprint)


def _method(method: str) -> str:
    return method if method in METHODS else OTHER


def _status(status: int) -> str:
    return str(status) if status in STATUSES else OTHER


def _outcome(status: int) -> str:
    if status in OUTCOMES:
        return OUTCOMES[status]
    return "invalid" if 400 <= status < 500 else "error"


class _Own(Collector):
    """This process's metrics (without gunicorn's multiprocess mode: a single process)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class RedisCollector(Collector):
    """The workers' counters from Redis and the overview's gauges, read at each scrape."""

    def __init__(self, redis: Redis, queue: Queue, targets: Sequence[str]) -> None:
        self.redis = redis
        self.queue = queue
        self.targets = targets

    def collect(self) -> Iterator[Metric]:
        yield from _stored(self.redis)
        yield from _gauges(overview.read(self.redis, self.queue))
        yield _breakers(self.redis, self.targets)
        yield _paused(self.redis)


def _breakers(redis: Redis, targets: Sequence[str]) -> Metric:
    """Each target's circuit breaker: 1 while open (its BQN kept failing, its work waits)."""
    family = GaugeMetricFamily(
        f"{NS}_target_breaker_open",
        "1 while a target's circuit breaker is open: its BQN kept failing and jobs skip it "
        "for BREAKER_OPEN_SECONDS",
        labels=["target"],
    )
    for name in targets:
        state = breaker.state(redis, store.target_keys(name))["state"]
        family.add_metric([name], float(state == "open"))
    return family


def _paused(redis: Redis) -> Metric:
    """1 while writes to the BQNs are paused: the queue then grows on purpose."""
    found = pause.paused(redis)
    return GaugeMetricFamily(
        f"{NS}_writes_paused",
        "1 while writes to the BQNs are paused (POST /api/v1/pause): jobs wait in the queue",
        value=float(found is not None),
    )


def _stored(redis: Redis) -> Iterator[Metric]:
    """The counters and histograms the workers published."""
    series: dict[str, dict[tuple[str, ...], dict[str, float]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    buckets: dict[tuple[str, tuple[str, ...]], dict[str, float]] = defaultdict(dict)
    for name, part, labels, value in metrics.stored(redis):
        spec = metrics.SPECS[name]
        key = tuple(labels.get(label, "") for label in spec.labels)
        if part == "bucket":
            buckets[name, key][labels.get("le", "+Inf")] = value
        else:
            series[name][key][part] = value
    for name, spec in metrics.SPECS.items():
        full = f"{NS}_{name}"
        if spec.kind == "counter":
            family: Metric = CounterMetricFamily(full, spec.help, labels=spec.labels)
            for key, parts in series[name].items():
                family.add_metric(list(key), parts.get("", 0.0))
        else:
            family = HistogramMetricFamily(full, spec.help, labels=spec.labels)
            for key, parts in series[name].items():
                hits = buckets[name, key]
                cumulative = [(le, hits.get(le, 0.0)) for le in metrics.BUCKET_LABELS]
                cumulative.append(("+Inf", parts.get("count", 0.0)))
                family.add_metric(list(key), cumulative, parts.get("sum", 0.0))
        yield family


GAUGES = {
    "queue_depth": "Jobs waiting in the queue",
    "queue_oldest_job_age_seconds": "How long the job at the head of the queue has waited",
    "retrying_jobs": "Jobs waiting to be retried later",
    "running_jobs": "Jobs running now",
    "failed_jobs": "Failed jobs waiting to be requeued or dismissed (/api/v1/failures)",
    "workers": "RQ workers alive for the queue",
    "poll_lag_seconds": "Seconds since the last complete WispHub pass of the poller",
    "last_poll_timestamp_seconds": "When the last poll ended (Unix time)",
    "last_poll_ok": "1 if the last poll read WispHub completely",
    "last_reconcile_timestamp_seconds": "When the last full reconcile ended (Unix time)",
    "last_reconcile_ok": "1 if the last full reconcile applied everything",
    "last_reconcile_duration_seconds": "How long the last full reconcile took",
}


def _gauges(now: overview.Overview) -> Iterator[Metric]:
    """Gauges of the service's state at this moment (those about the poller and the last
    reconcile once they have run)."""
    values: dict[str, float] = {
        "queue_depth": now.queued,
        "queue_oldest_job_age_seconds": now.oldest_queued_seconds,
        "retrying_jobs": now.retrying,
        "running_jobs": now.running,
        "failed_jobs": now.failed,
        "workers": len(now.workers),
    }
    if now.poll_lag_seconds is not None:
        values["poll_lag_seconds"] = now.poll_lag_seconds
    if (poll := now.last_poll) is not None:
        values["last_poll_timestamp_seconds"] = poll["ended"]
        values["last_poll_ok"] = float(bool(poll.get("ok")))
    if (last := now.last_reconcile) is not None:
        values["last_reconcile_timestamp_seconds"] = last["ended"]
        values["last_reconcile_ok"] = float(bool(last.get("ok")))
        values["last_reconcile_duration_seconds"] = last["seconds"]
    for name, value in values.items():
        yield GaugeMetricFamily(f"{NS}_{name}", GAUGES[name], value=value)
    if last is not None and last.get("counts"):
        family = GaugeMetricFamily(
            f"{NS}_last_reconcile_counts",
            "The last full reconcile's counts: entries created, updated, deleted; clients "
            "unchanged, skipped; operations failed",
            labels=["outcome"],
        )
        for outcome, count in last["counts"].items():
            family.add_metric([outcome], count)
        yield family
