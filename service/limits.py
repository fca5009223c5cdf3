"""The optional per-source rate limit of `POST /webhooks/wisphub` (Flask-Limiter, counted in
Redis so that every gunicorn worker shares it).

`WEBHOOK_RATE_LIMIT` takes Flask-Limiter's notation (`120/minute`, `10 per second`); unset, the
endpoint is not limited. The source is the client address; behind a reverse proxy, set
`TRUSTED_PROXIES` to the number of proxies so that `X-Forwarded-For` names the real sender.
"""

from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse
from werkzeug.middleware.proxy_fix import ProxyFix

from service import webhooks
from worker.core.errors import ConfigError
from worker.settings import ServiceSettings


def install(app: Flask, service: ServiceSettings) -> None:
    """Trust the configured proxies and limit the notification endpoint, when asked."""
    if service.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=service.trusted_proxies)  # type: ignore[method-assign]
    if not service.webhook_rate_limit:
        return
    try:
        parse(service.webhook_rate_limit)
    except ValueError:
        raise ConfigError(
            f"WEBHOOK_RATE_LIMIT is not a rate such as 120/minute: {service.webhook_rate_limit!r}"
        ) from None
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=service.redis_url,
        strategy="moving-window",
        headers_enabled=True,
        swallow_errors=True,  # Redis down: the endpoint answers 503 on its own
    )
    limiter.limit(service.webhook_rate_limit)(webhooks.blueprint)
