"""Who may call: the notification secret (token or HMAC signature) and the API token.

Secrets are compared in constant time. With `ALLOW_UNAUTHENTICATED=1` and no secret set, the
matching endpoints are open (the app factory refuses that combination otherwise).
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass

from flask import request
from redis import Redis
from redis.exceptions import RedisError
from werkzeug.exceptions import Conflict, Unauthorized

from worker import defaults
from worker.queue.store import PREFIX

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature-256"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
TOKEN_HEADER = "X-Webhook-Token"  # noqa: S105 - a header name, not a secret


def require_webhook_secret(secret: str | None, redis: Redis) -> Signature | None:
    """Accept the secret as `X-Webhook-Token`, `Authorization: Bearer`, a `token` query
    parameter (for senders that can only call a URL), or an HMAC-SHA256 signature in
    `X-Signature-256: sha256=<hex>` of `<X-Webhook-Timestamp>.<raw body>`.

    A signed notification must be at most 5 minutes old and is accepted once: its signature
    is kept in Redis for the window, so a captured one cannot be replayed. Only the body is
    signed, so the caller must take the clients from the body alone; the returned `Signature`
    says the request was signed (None: a plain secret, or no secret configured)."""
    if secret is None:
        return None
    header = request.headers.get(SIGNATURE_HEADER)
    if header is not None:
        return _verified(header, secret, redis)
    offered = [request.headers.get(TOKEN_HEADER), _bearer(), request.args.get("token")]
    if any(token is not None and same(token, secret) for token in offered):
        return None
    raise _unauthorized(
        "missing or wrong webhook secret (X-Webhook-Token, Authorization: Bearer, ?token= "
        "or X-Signature-256 with X-Webhook-Timestamp)"
    )


@dataclass(frozen=True)
class Signature:
    """A verified signature, kept in Redis until it may no longer be replayed."""

    key: str

    def forget(self, redis: Redis) -> None:
        """Let the same notification be sent again (it was not queued after all)."""
        try:
            redis.delete(self.key)
        except RedisError as exc:  # the answer already says Redis failed; it expires anyway
            log.warning("could not forget a signature kept against replays: %s", exc)


def _verified(header: str, secret: str, redis: Redis) -> Signature:
    stamp = request.headers.get(TIMESTAMP_HEADER)
    if stamp is None:
        raise _unauthorized(
            f"{TIMESTAMP_HEADER} (Unix seconds) is required with {SIGNATURE_HEADER}: the "
            "signature covers `<timestamp>.<body>`"
        )
    _check_fresh(stamp)
    given = _digest_of(header)
    expected = hmac.new(
        secret.encode(), stamp.strip().encode() + b"." + request.get_data(cache=True), "sha256"
    ).hexdigest()
    if given is None:
        raise _unauthorized(f"{SIGNATURE_HEADER} must be `sha256=<hex digest>`")
    if not same(given, expected):
        raise _unauthorized(f"the {SIGNATURE_HEADER} signature does not match `<timestamp>.<body>`")
    seen = Signature(f"{PREFIX}webhook:signature:{expected}")
    if not redis.set(seen.key, 1, nx=True, ex=defaults.REPLAY_WINDOW_SECONDS):
        raise Conflict(
            "this signed notification was already received; sign each one with a fresh "
            f"{TIMESTAMP_HEADER}"
        )
    return seen


def require_api_token(token: str | None) -> None:
    """Accept `Authorization: Bearer <API_TOKEN>` only."""
    if token is None:
        return
    given = _bearer()
    if given is None or not same(given, token):
        raise _unauthorized("missing or wrong API token (Authorization: Bearer <API_TOKEN>)")


def offered_api_token() -> str | None:
    """The token a browser or a script offers: a Bearer token, or a basic-auth password.
    Basic credentials that are not base64 (werkzeug raises ValueError for non-ASCII ones) are
    offered but match no token: ""."""
    try:
        basic = request.authorization
    except ValueError:
        return ""
    if basic is not None and basic.type == "basic":
        return basic.password or None
    return _bearer()


def _check_fresh(stamp: str) -> None:
    text = stamp.strip()
    # at most 12 digits: a longer number is no time of ours, and too long for a float
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise _unauthorized("X-Webhook-Timestamp must be Unix seconds")
    if abs(time.time() - int(text)) > defaults.MAX_SIGNATURE_AGE_SECONDS:
        raise _unauthorized("the signed notification is more than 5 minutes old (or ahead)")


def _bearer() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _digest_of(header: str) -> str | None:
    """The hex digest of `sha256=<hex>`, or None for another algorithm or an empty one."""
    algorithm, _, given = header.strip().partition("=")
    return given.lower() if algorithm.lower() == "sha256" and given else None


def same(given: str, expected: str) -> bool:
    """Whether two secrets are equal, compared in constant time."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _unauthorized(message: str) -> Unauthorized:
    return Unauthorized(message)
