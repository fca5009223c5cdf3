"""`/healthz`: the process answers. `/readyz`: Redis answers and a worker is registered."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError
from rq import Worker

from service.context import context

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
    except RedisError as exc:
        return jsonify({"status": "unavailable", "redis": f"unreachable: {exc}"}), 503
    if workers == 0:
        return jsonify({"status": "unavailable", "redis": "ok", "workers": 0}), 503
    return jsonify({"status": "ready", "redis": "ok", "workers": workers}), 200
