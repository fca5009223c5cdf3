"""The status page's sessions, kept in Redis (Flask-Session) rather than in a signed cookie.

The browser holds only a random session id; what it stands for lives under
`wisphub-bqn-sync:session:<id>` and expires with the session. Signing out deletes it, so a
copied cookie stops working at once (a signed cookie would stay valid until it expired).
The cookie is `HttpOnly`, `SameSite=Strict`, and `Secure` whenever the request came over
https (behind a proxy: `X-Forwarded-Proto` from one of `TRUSTED_PROXIES`) or always with
`SESSION_COOKIE_SECURE=1`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Request, Response, current_app, request
from flask.sessions import SessionMixin
from flask_session.redis import RedisSessionInterface
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker import defaults
from worker.queue.store import PREFIX

log = logging.getLogger(__name__)

KEY_PREFIX = PREFIX + "session:"
# Where a request keeps the Redis error that kept its session from opening.
UNREACHABLE = "wisphub_bqn_sync.session_error"


class _RedisSessions(RedisSessionInterface):
    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure when forced, else whenever this request came over https."""
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure

    def open_session(self, app: Flask, request: Request) -> Any:
        """The session; with Redis unreachable, an empty one that is never saved, the error
        kept for the status page to answer 503 (Flask would log a traceback and answer 500
        for an error raised here)."""
        try:
            return super().open_session(app, request)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            request.environ[UNREACHABLE] = exc
            return self.make_null_session(app)

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        """Save the session; with Redis unreachable, say so in one line and save nothing
        (the answer is already a 503, or the next request's will be: the sign-in is lost)."""
        try:
            super().save_session(app, session, response)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("the status page's session was not saved: Redis unavailable: %s", exc)


def require_store() -> None:
    """Raise the Redis error that kept this request's session from opening, if one did."""
    error = request.environ.get(UNREACHABLE)
    if error is not None:
        raise error


def install(app: Flask, redis: Redis, *, always_secure: bool) -> None:
    """Keep `app`'s sessions in `redis` for `STATUS_SESSION_HOURS`."""
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=always_secure,
        PERMANENT_SESSION_LIFETIME=defaults.STATUS_SESSION_HOURS * 3600,
    )
    app.session_interface = _RedisSessions(app, client=redis, key_prefix=KEY_PREFIX)


def renew_id(session: SessionMixin) -> None:
    """Give the session a new id and forget the old one, so an id known before signing in
    (planted by someone else, say) is worth nothing after."""
    current_app.session_interface.regenerate(session)  # type: ignore[attr-defined]
