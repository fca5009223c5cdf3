"""Who may call: the notification secret (token or HMAC signature) and the API token.

Secrets are compared in constant time. With `ALLOW_UNAUTHENTICATED=1` and no secret set, the
matching endpoints are open (the app factory refuses that combination otherwise).
"""

from __future__ import annotations

import hashlib
import hmac

from flask import request
from werkzeug.exceptions import Unauthorized

SIGNATURE_HEADER = "X-Signature-256"
TOKEN_HEADER = "X-Webhook-Token"  # noqa: S105 - a header name, not a secret


def require_webhook_secret(secret: str | None) -> None:
    """Accept the secret as `X-Webhook-Token`, `Authorization: Bearer`, a `token` query
    parameter (for senders that can only call a URL), or an HMAC-SHA256 of the raw body in
    `X-Signature-256: sha256=<hex>`."""
    if secret is None:
        return
    signature = request.headers.get(SIGNATURE_HEADER)
    if signature is not None:
        if _signed(signature, secret, request.get_data(cache=True)):
            return
        raise _unauthorized("the X-Signature-256 signature does not match the body")
    offered = [request.headers.get(TOKEN_HEADER), _bearer(), request.args.get("token")]
    if any(token is not None and _same(token, secret) for token in offered):
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
    if given is None or not _same(given, token):
        raise _unauthorized("missing or wrong API token (Authorization: Bearer <API_TOKEN>)")


def _bearer() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _signed(header: str, secret: str, body: bytes) -> bool:
    algorithm, _, given = header.strip().partition("=")
    if algorithm.lower() != "sha256" or not given:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return _same(given.lower(), expected)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _unauthorized(message: str) -> Unauthorized:
    return Unauthorized(message)
