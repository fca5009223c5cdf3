"""Per-source rate limits (Flask-Limiter, counted in Redis so that every gunicorn worker
shares them): notifications, and sign-in attempts at the status page.

Each limit takes Flask-Limiter's notation (`1200/minute`, `20 per second`), or `off`, and is
counted atomically as each request arrives, so requests sent together cannot all slip under
it. `WEBHOOK_RATE_LIMIT` counts only notifications that passed authentication (which runs
first, `service.webhooks.install`), so a stranger sending wrong secrets from a shared address
cannot use up the real sender's allowance. `LOGIN_RATE_LIMIT` counts every sign-in attempt,
which stops guessing the API token. The source is the client address; behind a reverse proxy,
`TRUSTED_PROXIES` says how many proxies to trust for `X-Forwarded-For` (the sender) and
`X-Forwarded-Proto` (https, for the cookie's `Secure`).
"""

from __future__ import annotations

import logging

from flask import Flask, Response
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse
from redis import Redis
from werkzeug.middleware.proxy_fix import ProxyFix

from service import webhooks
from worker.core.errors import ConfigError
from worker.queue.store import PREFIX
from worker.settings import ServiceSettings

SIGN_IN = "status.sign_in"


def install(app: Flask, service: ServiceSettings, redis: Redis) -> None:
    """Trust the configured proxies and limit notifications and sign-ins (call it once every
    blueprint is registered)."""
    if service.trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=service.trusted_proxies, x_proto=service.trusted_proxies
        )
    for name, rate in (
        ("WEBHOOK_RATE_LIMIT", service.webhook_rate_limit),
        ("LOGIN_RATE_LIMIT", service.login_rate_limit),
    ):
        if rate is not None:
            _check(name, rate)
    # Registered before the limiter's own (after_request functions run last-registered first),
    # so it sees the headers the limiter adds.
    app.after_request(_retry_after_only_when_refused)
    limiter = Limiter(
        get_remote_address,
        app=app,
        # "redis://" only picks the Redis storage; the pool decides where it connects: the
        # app's own connections (any REDIS_URL form, its timeouts), not a second client
        storage_uri="redis://",
        storage_options={"connection_pool": redis.connection_pool},
        key_prefix=PREFIX + "limits",
        strategy="moving-window",
        headers_enabled=True,
        swallow_errors=True,  # Redis down: the endpoint answers 503 on its own
    )
    limiter.logger.addFilter(one_line)
    if service.webhook_rate_limit is not None:
        limiter.limit(service.webhook_rate_limit)(webhooks.blueprint)
    if service.login_rate_limit is not None:
        # A limit on one view is checked by the wrapper it returns, so the wrapper must be what
        # the app calls (the status page is registered before this runs).
        limited = limiter.limit(service.login_rate_limit)(app.view_functions[SIGN_IN])
        app.view_functions[SIGN_IN] = limited


def _check(name: str, rate: str) -> None:
    try:
        parse(rate)
    except ValueError:
        raise ConfigError(f"{name} is not a rate such as 120/minute, or off: {rate!r}") from None


def _retry_after_only_when_refused(response: Response) -> Response:
    """Flask-Limiter adds `Retry-After` to every answer; it means "try again later" only on a
    429 or a 503 (elsewhere it would tell a sender to retry a 400, or an accepted request)."""
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    return response


def one_line(record: logging.LogRecord) -> bool:
    """Flask-Limiter logs each request it could not count (Redis down) with a traceback; the
    request's own answer logs the cause too, so the limiter's line is made one line."""
    if record.exc_info and record.exc_info[1] is not None:
        record.msg = f"{record.getMessage()}: {record.exc_info[1]}"
        record.args = ()
        record.exc_info = record.exc_text = None
    return True
