"""Every error answers JSON that says what is wrong, never a stack trace.

Redis being unreachable answers 503 with `Retry-After`: the service never acknowledges work it
did not queue. A browser asking for the status page gets a small page saying so instead of JSON.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, Unauthorized

from service.payloads import PayloadError
from worker import defaults

log = logging.getLogger(__name__)

# The blueprint of the pages for people (the status page), whose errors a browser reads.
PAGES = "status"


def error_response(status: int, error: str, message: str) -> Response:
    """A JSON error body: a short code and a sentence for the person reading it."""
    response = jsonify({"error": error, "message": message})
    response.status_code = status
    return response


def register(app: Flask) -> None:
    """Install the JSON error handlers."""

    @app.errorhandler(PayloadError)
    def _bad_payload(exc: PayloadError) -> Response:
        return error_response(400, "bad_request", str(exc))

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_: RequestEntityTooLarge) -> Response:
        limit = app.config["MAX_CONTENT_LENGTH"]
        return error_response(413, "too_large", f"the body is larger than {limit} bytes")

    @app.errorhandler(Unauthorized)
    def _unauthorized(exc: Unauthorized) -> Response:
        response = error_response(401, "unauthorized", exc.description or "unauthorized")
        response.headers["WWW-Authenticate"] = 'Bearer realm="wisphub-bqn-sync"'
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        code = exc.code or 500
        name = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(code, name, exc.description or name)
        for header, value in exc.get_headers():  # Retry-After, Allow
            if header.lower() != "content-type":
                response.headers[header] = value
        return response

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def _redis_down(exc: Exception) -> Response:
        log.error("Redis unavailable: %s", exc)
        if _browser_on_a_page():
            return Response(render_template("unavailable.html"), 503, mimetype="text/html")
        response = error_response(503, "unavailable", "the job queue (Redis) is unreachable; retry")
        response.headers["Retry-After"] = str(defaults.REDIS_RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "unexpected error; see the service log")


def _browser_on_a_page() -> bool:
    """A browser asking for the status page (HTML over JSON): a script reading it, and every
    API call, get JSON."""
    wanted = request.accept_mimetypes.best_match(("application/json", "text/html"))
    return request.blueprint == PAGES and wanted == "text/html"
