"""Who may call: the notification secret (token or HMAC signature) and the API token.

Secrets are compared in constant time. With `ALLOW_UNAUTHENTICATED=1` and no secret set, the
matching endpoints are open (the app factory refuses that combination otherwise).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from flask import request
from werkzeug.exceptions import Unauthorized

from worker import defaults

SIGNATURE_HEADER = "X-Signature-256"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
TOKEN_HEADER = "X-Webhook-Token"  # noqa: S105 - a header name, not a secret


def require_webhook_secret(secret: str | None) -> None:
    """Accept the secret as `X-Webhook-Token`, `Authorization: Bearer`, a `token` query
    parameter (for senders that can only call a URL), or an HMAC-SHA256 of the raw body in
    `X-Signature-256: sha256=<hex>`. With an `X-Webhook-Timestamp` (Unix seconds) the HMAC
    covers `<timestamp>.<body>` and the notification must be at most 5 minutes old, so a
    captured one cannot be replayed later."""
    if secret is None:
        return
    signature = request.headers.get(SIGNATURE_HEADER)
    if signature is not None:
        signed = request.get_data(cache=True)
        stamp = request.headers.get(TIMESTAMP_HEADER)
        if stamp is not None:
            _check_fresh(stamp)
            signed = stamp.strip().encode() + b"." + signed
        if _signed(signature, secret, signed):
            return
        raise _unauthorized("the X-Signature-256 signature does not match the body")
    offered = [request.headers.get(TOKEN_HEADER), _bearer(), request.args.get("token")]
    if any(token is not None and same(token, secret) for token in offered):
        return
    raise _unauthorized(
        "missing or wrong webhook secret (X-Webhook-Token, Authorization: Bearer, ?token= "
        "or X-Signature-256)"
    )


def require_api_token(token: str | None) -> None:
    """Accept `Authorization: Bearer <API_TOKEN>` only."""
    if token is None:
        return
    given = _bearer()
    if given is None or not same(given, token):
        raise _unauthorized("missing or wrong API token (Authorization: Bearer <API_TOKEN>)")


def offered_api_token() -> str | None:
    """The token a browser or a script offers: a Bearer token, or a basic-auth password."""
    basic = request.authorization
    if basic is not None and basic.type == "basic":
        return basic.password or None
    return _bearer()


def _check_fresh(stamp: str) -> None:
    try:
        age = abs(time.time() - int(stamp.strip()))
    except ValueError:
        raise _unauthorized("X-Webhook-Timestamp must be Unix seconds") from None
    if age > defaults.MAX_SIGNATURE_AGE_SECONDS:
        raise _unauthorized("the signed notification is more than 5 minutes old (or ahead)")


def _bearer() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _signed(header: str, secret: str, body: bytes) -> bool:
    algorithm, _, given = header.strip().partition("=")
    if algorithm.lower() != "sha256" or not given:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return same(given.lower(), expected)


def same(given: str, expected: str) -> bool:
    """Whether two secrets are equal, compared in constant time."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _unauthorized(message: str) -> Unauthorized:
    return Unauthorized(message)
