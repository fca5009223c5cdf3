"""Per-source rate limits (Flask-Limiter, counted in Redis so that every gunicorn worker
shares them): notifications, and sign-in attempts at the status page.

`WEBHOOK_RATE_LIMIT` takes Flask-Limiter's notation (`1200/minute`, `20 per second`), or `off`.
Only requests that pass authentication count toward it, so a stranger sending wrong secrets
from a shared address cannot use up the real sender's allowance. Wrong sign-ins count toward
`LOGIN_RATE_LIMIT` (right ones never do), which stops guessing the API token. The source is
the client address; behind a reverse proxy, `TRUSTED_PROXIES` says how many proxies to trust
for `X-Forwarded-For` (the sender) and `X-Forwarded-Proto` (https, for the cookie's `Secure`).
"""

from __future__ import annotations

from flask import Flask, Response
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse
from werkzeug.middleware.proxy_fix import ProxyFix

from service import webhooks
from worker.core.errors import ConfigError
from worker.queue.store import PREFIX
from worker.settings import ServiceSettings

SIGN_IN = "status.sign_in"


def install(app: Flask, service: ServiceSettings) -> Limiter:
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
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=service.redis_url,
        key_prefix=PREFIX + "limits",
        strategy="moving-window",
        headers_enabled=True,
        swallow_errors=True,  # Redis down: the endpoint answers 503 on its own
    )
    if service.webhook_rate_limit is not None:
        limiter.limit(service.webhook_rate_limit, deduct_when=_authenticated)(webhooks.blueprint)
    if service.login_rate_limit is not None:
        # A limit on one view is checked by the wrapper it returns, so the wrapper must be what
        # the app calls (the status page is registered before this runs).
        app.view_functions[SIGN_IN] = limiter.limit(service.login_rate_limit, deduct_when=_refused)(
            app.view_functions[SIGN_IN]
        )
    return limiter


def _authenticated(response: Response) -> bool:
    """Whether the request passed authentication (and so counts toward the limit)."""
    return response.status_code != 401


def _refused(response: Response) -> bool:
    """Whether a sign-in was refused (a guess that counts toward the limit)."""
    return response.status_code == 401


def _check(name: str, rate: str) -> None:
    try:
        parse(rate)
    except ValueError:
        raise ConfigError(f"{name} is not a rate such as 120/minute, or off: {rate!r}") from None
