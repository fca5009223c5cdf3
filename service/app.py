"""The Flask app factory: `create_app()`, served by gunicorn as `'service.app:create_app()'`."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from flask import Flask, Response

from service import (
    api,
    docs,
    durability,
    errors,
    health,
    i18n,
    limits,
    metrics,
    search,
    status,
    targets,
    webhooks,
)
from service.context import Context
from worker import defaults
from worker.core.errors import ConfigError
from worker.queue import connection
from worker.queue.queueing import make_queue
from worker.settings import ServiceSettings, Settings, tls_warnings

log = logging.getLogger(__name__)


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    """Build the app from environment variables (or `env`); refuse to start misconfigured."""
    env = os.environ if env is None else env
    service = ServiceSettings.from_env(env)
    require_secrets(service)
    sync = Settings.from_env(env)
    # Bounded: each gevent worker serves up to a thousand requests at once, and a flood must
    # wait for a connection (then answer 503) rather than open thousands on Redis.
    redis = connection.connect(
        service,
        blocking=True,
        max_connections=defaults.WEB_REDIS_CONNECTIONS,
        timeout=defaults.REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=defaults.REDIS_TIMEOUT_SECONDS,
        socket_timeout=defaults.REDIS_TIMEOUT_SECONDS,
        health_check_interval=defaults.REDIS_HEALTH_CHECK_SECONDS,
    )
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = defaults.MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[Context.KEY] = Context(
        service=service, sync=sync, redis=redis, queue=make_queue(redis, service.queue_name)
    )
    errors.register(app)
    metrics.install(app)  # first: every request is timed, those refused early too
    i18n.install(app, service)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(docs.blueprint)
    webhooks.install(app)
    durability.install(app)  # after the webhooks' hook, before the limiter's (they run reversed)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(targets.blueprint)
    search.install(app)
    status.install(app)
    limits.install(app, service, redis)
    app.after_request(_protect)
    if service.allow_unauthenticated:
        log.warning("ALLOW_UNAUTHENTICATED=1: endpoints without a configured secret are open")
    for warning in tls_warnings(sync):
        log.warning("%s", warning)
    return app


def require_secrets(service: ServiceSettings) -> None:
    """The web process must not run open: both secrets, long enough to resist guessing and
    different (the webhook secret travels in senders' URLs and scripts; the API token opens
    the console), or an explicit opt-out for the secrets not set."""
    secrets = {"WEBHOOK_SECRET": service.webhook_secret, "API_TOKEN": service.api_token}
    for name, value in secrets.items():
        if value is None and not service.allow_unauthenticated:
            raise ConfigError(
                f"{name} is not set; set it, or ALLOW_UNAUTHENTICATED=1 to run without "
                "authentication (a demo, never production)"
            )
        if value is not None and len(value) < defaults.MIN_SECRET_LENGTH:
            raise ConfigError(
                f"{name} is {len(value)} characters long; use at least "
                f"{defaults.MIN_SECRET_LENGTH} random ones (e.g. `openssl rand -hex 24`)"
            )
    if service.webhook_secret is not None and service.webhook_secret == service.api_token:
        raise ConfigError(
            "WEBHOOK_SECRET and API_TOKEN are the same: senders of notifications would hold "
            "the console's key; give each its own value"
        )


def _protect(response: Response) -> Response:
    """No answer is sniffed as another content type or kept by a cache: answers hold the
    service's state, job ids and client data."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Cache-Control", "no-store")
    return response
