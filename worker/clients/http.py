"""What both API clients share: a retrying keep-alive session and turning answers into errors.

Retries, backoff with jitter and `Retry-After` are urllib3's `Retry`; this module only decides
which failures are transient, which are a person's to fix, and what a log line may say.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Iterable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from worker import defaults
from worker.clients.connection import RequestHook
from worker.core import phrases
from worker.core.errors import ApiError, ConfigError, Unavailable, WriteConflict

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# A write refused for another entry in its way: the job retries it later (`WriteConflict`).
CONFLICT = 409


def retry_policy(retries: int, backoff: float) -> Retry:
    """Retry timeouts, connection errors, 5xx and 429 with exponential backoff and jitter.

    Every method is retried: the sync's writes are idempotent (POST creates or replaces an
    entry by key, PUT sets fields, DELETE of a missing entry is "already gone").
    """
    return Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        allowed_methods=None,
        status_forcelist=TRANSIENT_STATUSES,
        backoff_factor=backoff,
        backoff_jitter=backoff,
        backoff_max=defaults.HTTP_BACKOFF_MAX_SECONDS,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def make_session(adapter: HTTPAdapter, base_url: str) -> requests.Session:
    """A keep-alive session to `base_url` whose every request goes through `adapter` (pool and
    retries). What the environment sets for it (`HTTPS_PROXY`, `NO_PROXY`,
    `REQUESTS_CA_BUNDLE`: `session.verify`) is read once, here: requests would read the whole
    environment again at every request, nearly a quarter of the CPU a sync spends."""
    session = requests.Session()
    found = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies, session.verify = found["proxies"], found["verify"]
    session.trust_env = False
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def operation(method: str, path: str, collections: Iterable[str]) -> str:
    """A request's name for metrics: its method and collection, with `{key}` for one item
    (`GET subscribers/{key}`), so that ids and names do not become label values."""
    for collection in collections:
        if path.startswith(collection):
            item = path[len(collection) :].strip("/")
            return f"{method} {collection.strip('/')}{'/{key}' if item else ''}"
    return f"{method} other"


def send(
    session: requests.Session,
    service: str,
    method: str,
    url: str,
    *,
    timeout: tuple[float, float],
    verify: bool | str,
    auth_hint: str,
    operation: str,
    observe: RequestHook,
    **kwargs: Any,
) -> requests.Response:
    """Send one request; return the response if it is a success or a 404, else raise.

    `verify` is passed on every request, the one place requests takes it from. 401/403 raise
    `ConfigError` with `auth_hint`; 5xx and 429 (after retries) and network failures raise
    `Unavailable` (transient); 409 raises `WriteConflict` (transient too: another entry in the
    way); other 4xx raise `ApiError`. The log line carries the method, path,
    status and time only: never headers, bodies or secrets. Each request's outcome and time go
    to `observe` under `operation`.
    """
    started = time.monotonic()
    status = "error"
    try:
        response = session.request(method, url, timeout=timeout, verify=verify, **kwargs)
        status = str(response.status_code)
    except requests.exceptions.SSLError as exc:
        reason = failure_reason(exc)
        if not _refused_certificate(exc):  # a handshake cut short (a restart): try later
            unreachable = phrases.UNREACHABLE.format(service=service, reason=reason)
            raise Unavailable(service, unreachable) from exc
        raise ConfigError(phrases.TLS_FAILED.format(service=service, reason=reason)) from exc
    except requests.exceptions.InvalidURL as exc:
        raise ConfigError(phrases.INVALID_URL.format(service=service, reason=exc)) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        unreachable = phrases.UNREACHABLE.format(service=service, reason=failure_reason(exc))
        raise Unavailable(service, unreachable) from exc
    finally:
        observe(service.lower(), operation, status, time.monotonic() - started)
    elapsed_ms = (time.monotonic() - started) * 1000
    log.debug(
        "%s %s %s -> %d in %.0f ms",
        service,
        method,
        response.request.path_url,
        response.status_code,
        elapsed_ms,
    )
    code = response.status_code
    if code in (401, 403):
        raise ConfigError(phrases.ANSWERED.format(service=service, code=code, detail=auth_hint))
    if code in TRANSIENT_STATUSES:
        answered = phrases.ANSWERED.format(service=service, code=code, detail=excerpt(response))
        raise Unavailable(service, answered)
    if code == CONFLICT:
        raise WriteConflict(
            phrases.ANSWERED_TO.format(
                service=service, code=code, method=method, body=excerpt(response)
            )
        )
    if code >= 400 and code != 404:
        raise ApiError(
            phrases.ANSWERED_TO.format(
                service=service, code=code, method=method, body=excerpt(response)
            )
        )
    return response


def json_body(response: requests.Response, service: str) -> Any:
    """The decoded JSON of a response, or `ApiError` when it is not JSON (an HTML page, say)."""
    content_type = response.headers.get("Content-Type", "")
    if "json" not in content_type.lower():
        raise ApiError(
            phrases.NOT_JSON.format(
                service=service,
                code=response.status_code,
                content_type=content_type or phrases.NO_CONTENT_TYPE,
                body=excerpt(response),
            )
        )
    try:
        return response.json()
    except ValueError as exc:
        raise ApiError(
            phrases.INVALID_JSON.format(service=service, body=excerpt(response))
        ) from exc


def excerpt(response: requests.Response, limit: int = 120) -> str:
    """A short, single-line, secret-free summary of a response body for error messages."""
    text = response.text.strip()
    if not text:
        return "(empty body)"
    if text.lstrip().startswith("<"):
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        return f"HTML page{f' {title.group(1).strip()!r}' if title else ''}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _refused_certificate(exc: BaseException) -> bool:
    """Whether a TLS failure is the server's certificate refused (not trusted, another host's):
    a setting to fix, not an outage. A handshake a restarting server cut short is neither."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        found = pending.pop()
        if id(found) in seen:
            continue
        seen.add(id(found))
        if isinstance(found, ssl.SSLCertVerificationError | ssl.CertificateError):
            return True
        pending += [arg for arg in found.args if isinstance(arg, BaseException)]
        pending += [e for e in (found.__cause__, found.__context__) if e is not None]
        reason = getattr(found, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def failure_reason(exc: BaseException) -> str:
    """The innermost, readable cause of a requests/urllib3 network error."""
    reason: BaseException = exc
    while True:
        inner = reason.args[0] if reason.args else None
        if isinstance(inner, MaxRetryError) and inner.reason is not None:
            reason = inner.reason
        elif isinstance(reason, MaxRetryError) and reason.reason is not None:
            reason = reason.reason
        else:
            break
    text = str(reason)
    # urllib3 prefixes its messages with the connection object's repr; keep the part after it.
    text = re.sub(r"^<[^>]+>:\s*", "", text)
    return text or type(reason).__name__
