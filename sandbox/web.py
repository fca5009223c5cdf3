"""HTTP helpers shared by the two simulators: response builders and the auth guard."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from html import escape
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, request

CONTROL_PREFIX = "/_sim/"


def is_control_path(path: str) -> bool:
    """True for the simulator's own `/_sim/` control paths (no auth, no faults, not counted)."""
    return path.startswith(CONTROL_PREFIX)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Compact UTF-8 JSON (non-ASCII left unescaped, as DRF and the BQN send it)."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(
        text.encode("utf-8"),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def text_response(status: int, message: str | None = None) -> Response:
    """A plain-text error body such as `404 Not Found`."""
    body = message if message is not None else f"{status} {_phrase(status)}"
    return Response(body, status=status, content_type="text/plain; charset=utf-8")


def html_page(status: int) -> Response:
    """An HTML error page like the ones a Django panel serves for 404/500."""
    title = escape(f"{status} {_phrase(status)}")
    body = (
        "<!DOCTYPE html>\n"
        '<html lang="es">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title} | WispHub</title>\n</head>\n"
        f'<body>\n<div class="error-page">\n<h1>{title}</h1>\n'
        "<p>Lo sentimos, ocurri&oacute; un problema con la p&aacute;gina solicitada.</p>\n"
        "</div>\n</body>\n</html>\n"
    )
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented credential with the configured one."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def require(app: Flask, check: Callable[[], Response | None], *, routed_only: bool = False) -> None:
    """Run `check` before every API request; a response it returns is sent instead.

    Control paths are exempt. With `routed_only`, requests that did not match a route
    (404/405/slash redirects) skip the check, as with Django where URL resolution comes
    before the view's authentication.
    """

    @app.before_request
    def _guard() -> Response | None:
        if is_control_path(request.path):
            return None
        if routed_only and request.routing_exception is not None:
            return None
        return check()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
