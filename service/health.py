"""`/healthz`: the process answers. `/readyz`: Redis answers and a worker is registered; it
also names each target (BQN) with its circuit breaker's state (never its address), and says
whether writes are paused (`worker.queue.pause`) and since when. When replicas are expected
(`REDIS_WAIT_REPLICAS`, 1 by default with Sentinel) it says how many are connected and how
far behind, and `degraded` when fewer than expected: the service stays ready, its 202s then
stand on the master alone (docs/high-availability.md).

Both are open, for load balancers and orchestrators; why Redis is unreachable (its address
among it) is told only to a caller with the API token, as is the master Sentinel gave.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError
from rq import Worker

from service.auth import offered_api_token, same
from service.context import Context, context
from worker.queue import breaker, connection, pause, store
from worker.queue.replication import replication

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    """Liveness: the web process is up."""
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: notifications can be queued and something will run them."""
    ctx = context()
    try:
        ctx.redis.ping()
        workers = Worker.count(queue=ctx.queue)
        targets = _breakers(ctx)
        paused = pause.paused(ctx.redis)
        replicas = _replication(ctx)
    except RedisError as exc:
        # Where Redis is, and why it failed, only for the API token's holder.
        trusted = _trusted(ctx.service.api_token)
        detail = f"unreachable: {connection.why(exc)}" if trusted else "unreachable"
        return jsonify({"status": "unavailable", "redis": detail}), 503
    status, code = ("ready", 200) if workers else ("unavailable", 503)
    answer = {"status": status, "redis": "ok", "workers": workers, "targets": targets}
    # paused writes leave the service ready: notifications are still taken and queued
    answer["writes"] = "ok" if paused is None else "paused"
    if paused is not None:
        answer["writes_paused_since"] = paused.to_dict()["since"]
    answer.update(replicas)
    return jsonify(answer), code


def _replication(ctx: Context) -> dict[str, object]:
    """The replication's state when replicas are expected, and the master Sentinel names
    (to the API token's holder)."""
    answer: dict[str, object] = {}
    if connection.sentinel_managed(ctx.redis) and _trusted(ctx.service.api_token):
        answer["redis_master"] = connection.master(ctx.redis)
    expected = ctx.service.redis_wait_replicas
    if expected:
        state = replication(ctx.redis)
        answer["replication"] = "ok" if state.replicas >= expected else "degraded"
        answer.update(state.to_dict())
    return answer


def _breakers(ctx: Context) -> dict[str, str]:
    """Each target's circuit breaker: `closed`, or `open` while its BQN keeps failing (the
    service stays ready: the other targets' work goes on)."""
    return {
        target.name: breaker.state(ctx.redis, store.target_keys(target.name))["state"]
        for target in ctx.sync.targets
    }


def _trusted(token: str | None) -> bool:
    """Whether the caller showed the API token (or none is configured)."""
    offered = offered_api_token()
    return token is None or (offered is not None and same(offered, token))
