"""A 202 is an acknowledgement that survives a Redis failover: the work it accepted has reached
`REDIS_WAIT_REPLICAS` replicas (1 by default with Sentinel) before it is answered, or the
answer is a 503 with `Retry-After`, and the sender sends it again.

One hook for every endpoint that answers 202 (notifications, the API's syncs, reconciles,
requeues): a 202 means "queued", wherever it comes from. What it does and does not guarantee:
docs/high-availability.md.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from redis.exceptions import RedisError

from service.context import context
from service.errors import error_response
from worker import defaults
from worker.queue.replication import NotReplicated, acknowledge

log = logging.getLogger(__name__)


def install(app: Flask) -> None:
    """Install the hook; after the hooks that must see its 503 (the webhooks' own, which lets
    a refused signed notification be sent again, and the metrics): those registered earlier
    run after it."""
    app.after_request(_acknowledged)


def _acknowledged(response: Response) -> Response:
    if response.status_code != 202:
        return response
    ctx = context()
    try:
        acknowledge(ctx.redis, ctx.service.redis_wait_replicas, ctx.service.redis_wait_ms)
    except (NotReplicated, RedisError) as exc:
        log.warning("%s answered 503, not 202: %s", request.endpoint, exc)
        refused = error_response(
            503,
            "not_replicated",
            "the work was queued, but no Redis replica confirmed it in time; send it again",
        )
        refused.headers["Retry-After"] = str(defaults.REDIS_RETRY_AFTER_SECONDS)
        return refused
    return response
