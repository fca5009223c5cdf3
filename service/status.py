"""The status page at `/`: the service at a glance for the engineer and the support desk.

Server-rendered HTML (templates in `service/templates/`), behind the API token: given once
at `/login` (the sign-in then lives in a server-side session, `service/sessions.py`), or as
HTTP basic auth (any user name, the token as password), or as a Bearer header. Its forms (sync
a client, requeue or dismiss failures, pause and resume writes) carry a random CSRF token kept
in the session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from service import overview, sessions, targets
from service.auth import offered_api_token, same
from service.context import Context, context
from service.payloads import PayloadError, parse_id, parse_job_id, pause_reason
from worker import defaults
from worker.queue import history, pause, store
from worker.queue.failures import (
    dismiss_failures,
    failures,
    recently_cleared,
    requeue_failures,
)
from worker.settings import tls_warnings

blueprint = Blueprint("status", __name__)

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def install(app: Flask) -> None:
    """Serve the status page, its sessions kept in the app's Redis."""
    ctx: Context = app.extensions[Context.KEY]
    sessions.install(app, ctx.redis, always_secure=ctx.service.session_cookie_secure)
    app.jinja_env.filters["step"] = describe_event
    app.jinja_env.filters["ago"] = ago
    app.jinja_env.filters["since"] = since
    app.register_blueprint(blueprint)


@blueprint.before_request
def _authenticate() -> Response | None:
    """Let in a signed-in session, basic auth or a Bearer token; send others to sign in."""
    sessions.require_store()
    if request.endpoint in ("status.login", "status.sign_in"):
        return None
    token = context().service.api_token
    if token is None or _signed_in():
        return None
    offered = offered_api_token()
    if offered is not None and same(offered, token):
        return None
    if offered is None and request.method == "GET":
        return redirect(url_for("status.login", next=request.full_path.rstrip("?")))
    return Response(
        "Wrong or missing API token: sign in at /login, or use basic auth with the token as "
        "the password.\n",
        401,
        {"WWW-Authenticate": 'Basic realm="wisphub-bqn-sync", charset="UTF-8"'},
        mimetype="text/plain",
    )


@blueprint.after_request
def _protect(response: Response) -> Response:
    """No framing (the buttons cannot be clicked from another site) and no scripts at all
    (the app adds no-store and nosniff to every answer)."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@blueprint.get("/")
def page() -> str:
    """The page; `?client=<id_servicio>` adds that client's history."""
    ctx = context()
    client = request.args.get("client", "").strip()
    found = None
    if client:
        try:
            id_servicio = parse_id(client)
        except PayloadError as exc:
            flash(str(exc), "error")
        else:
            found = {
                "id": id_servicio,
                "applied": {
                    target.name: store.last_applied(
                        ctx.redis, id_servicio, store.target_keys(target.name)
                    )
                    for target in ctx.sync.targets
                },
                "events": history.read(ctx.redis, id_servicio, 100),
            }
    count, failed = failures(ctx.queue, defaults.FAILURES_SHOWN)
    return render_template(
        "status.html",
        now=overview.read(ctx.redis, ctx.queue),
        failures=failed,
        failure_count=count,
        cleared=recently_cleared(ctx.redis),
        writes=pause.state(ctx.queue),
        targets=targets.described(
            ctx.redis, ctx.sync.targets, ctx.service.history.reconcile_reports
        ),
        chart=chart(history.operations_per_hour(ctx.redis, defaults.CHART_HOURS)),
        client=client,
        found=found,
        csrf=csrf_token(),
        signed_in=_signed_in(),
        warnings=tls_warnings(ctx.sync),
    )


@blueprint.post("/status/clients/sync")
def sync_client() -> Response:
    """The "sync now" button of a client's history."""
    _check_csrf()
    ctx = context()
    id_servicio = parse_id(request.form.get("id_servicio", ""))
    [queued] = ctx.request_syncs([id_servicio], "status-page")
    flash(f"sync of client {id_servicio} queued as job {queued.job_id}", "ok")
    return redirect(url_for("status.page", client=id_servicio))


@blueprint.post("/status/failures/requeue")
def requeue() -> Response:
    """The requeue buttons: one failed job (`job_id`), or all of them."""
    _check_csrf()
    ctx = context()
    job_id = request.form.get("job_id")
    wanted = None if job_id is None else [parse_job_id(job_id)]
    queued, missing = requeue_failures(ctx.queue, wanted, ctx.service)
    flash(f"{len(queued)} failed job(s) queued again", "ok")
    if missing:
        flash(f"no longer failed: {', '.join(missing)}", "error")
    return redirect(url_for("status.page"))


@blueprint.post("/status/failures/dismiss")
def dismiss() -> Response:
    """The dismiss buttons: one failed job (`job_id`), or all of them."""
    _check_csrf()
    ctx = context()
    job_id = request.form.get("job_id")
    wanted = None if job_id is None else [parse_job_id(job_id)]
    dismissed, missing = dismiss_failures(ctx.queue, wanted, "status-page", ctx.service.history)
    flash(f"{len(dismissed)} failed job(s) dismissed", "ok")
    if missing:
        flash(f"no longer failed: {', '.join(missing)}", "error")
    return redirect(url_for("status.page"))


@blueprint.post("/status/pause")
def pause_writes() -> Response:
    """The "Pause writes" button, with the reason typed beside it."""
    _check_csrf()
    ctx = context()
    pause.pause(ctx.redis, "status-page", pause_reason(request.form.get("reason")))
    running = pause.state(ctx.queue)["running"]
    flash(f"writes paused; {running} job(s) still running finish first", "ok")
    return redirect(url_for("status.page"))


@blueprint.post("/status/resume")
def resume_writes() -> Response:
    """The "Resume writes" button."""
    _check_csrf()
    ctx = context()
    pause.resume(ctx.redis, "status-page")
    flash(f"writes resumed; {ctx.queue.count} job(s) queued meanwhile run now", "ok")
    return redirect(url_for("status.page"))


@blueprint.get("/login")
def login() -> str:
    """The sign-in form."""
    return render_template("login.html", next=_next())


@blueprint.post("/login")
def sign_in() -> Response | tuple[str, int]:
    """Check the token once; the session carries the sign-in from then on, under a new id."""
    token = context().service.api_token
    if token is None:
        return redirect(_next())  # the page is open: nothing to remember
    if not same(request.form.get("token", ""), token):
        return render_template("login.html", next=_next(), error="Wrong API token."), 401
    session.clear()
    session.permanent = True
    session["signed_in"] = _derived(token, "session")
    session["csrf"] = secrets.token_hex(32)
    sessions.renew_id(session)
    return redirect(_next())


@blueprint.post("/logout")
def logout() -> Response:
    """End the session: its id is deleted from Redis, whoever holds a copy of the cookie."""
    _check_csrf()
    session.clear()
    return redirect(url_for("status.login"))


def csrf_token() -> str:
    """The token the page's forms carry: random, one per session (made on first use for a
    visit signed by basic auth, which a browser repeats by itself). Without an API token
    there is nothing to protect, and no session is made for anonymous visitors nor for a
    script reading the page with a Bearer header (no browser sends one on its own, so
    nothing can be forged)."""
    if context().service.api_token is None or _by_bearer():
        return ""
    return str(session.setdefault("csrf", secrets.token_hex(32)))


def _by_bearer() -> bool:
    """Whether a script let itself in with a Bearer header (and holds no signed-in session).
    Read by its scheme alone: werkzeug's parsing refuses some headers with a ValueError."""
    scheme = request.headers.get("Authorization", "").split(" ", 1)[0]
    return scheme.lower() == "bearer" and not _signed_in()


def _signed_in() -> bool:
    """Whether the session signed in with the current API token (a new token signs everybody
    out)."""
    token = context().service.api_token
    return token is not None and same(session.get("signed_in", ""), _derived(token, "session"))


def _check_csrf() -> None:
    expected = csrf_token()
    if expected and not same(request.form.get("csrf", ""), expected):
        abort(403, description="the form is stale or did not come from the status page")


def _next() -> str:
    """Where to go after signing in: a path on this site only, else `/`. Browsers drop tabs
    and line breaks and read `\\` as `/`, so `/<tab>/evil.example` would leave the site."""
    target = request.values.get("next", "/")
    if not target.isprintable() or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _derived(token: str, purpose: str) -> str:
    return hmac.new(
        token.encode(), f"wisphub-bqn-sync {purpose}".encode(), hashlib.sha256
    ).hexdigest()


# Presentation (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One hour of the operations chart."""

    label: str
    ok: int
    failed: int
    ok_height: float
    failed_height: float


def chart(hours: list[tuple[int, dict[str, int]]], height: float = 100) -> list[Bar]:
    """Bars for the operations-per-hour chart, scaled to the busiest hour."""
    totals = [
        (sum(counts.values()) - counts.get("failed", 0), counts.get("failed", 0))
        for _, counts in hours
    ]
    top = max((ok + failed for ok, failed in totals), default=0) or 1
    return [
        Bar(
            label=datetime.fromtimestamp(start, UTC).strftime("%H:00"),
            ok=ok,
            failed=failed,
            ok_height=height * ok / top,
            failed_height=height * failed / top,
        )
        for (start, _), (ok, failed) in zip(hours, totals, strict=True)
    ]


# The events told in one line of their fields.
LINES = {
    "started": "a worker started the job (attempt {attempt})",
    "skipped": "skipped: {reason}",
    "retry": "failed for now, will retry: {error}",
    "superseded": "nothing to do: job {by}, waiting, takes the latest state",
    "failed": "FAILED, waiting in the failures list: {error}",
    "resolved": "failure of job {job_id} resolved: job {by} went through since",
    "dismissed": "failure of job {job_id} dismissed (via {via})",
}


def describe_event(event: dict[str, Any]) -> str:
    """One line saying what an event of a client's history means."""
    kind = event.get("event")
    if kind in ("queued", "coalesced"):
        how = "queued as" if kind == "queued" else "a waiting job will do it:"
        return f"sync asked for via {event.get('via')}; {how} {event.get('job_id')}"
    if kind in LINES:
        return LINES[kind].format_map(defaultdict(str, event))
    if kind == "read":
        if not event.get("found"):
            return "WispHub has no such client: its BQN entries are removed"
        return (
            f"WispHub says: estado {event.get('estado')}, plan {event.get('plan') or '(none)'},"
            f" IP {event.get('ip') or '(none)'}"
        )
    if kind == "operation":
        text = f"BQN: {event.get('action')} {event.get('kind')} {event.get('key')}"
        if event.get("policy"):
            text += f" with policy {event['policy']}"
        if event.get("result") == "ok":
            return text + ": done"
        return text + f": FAILED: {event.get('error')}"
    if kind == "done":
        counts = ", ".join(
            f"{event.get(name, 0)} {name}"
            for name in ("created", "updated", "deleted", "skipped", "failed")
            if event.get(name)
        )
        return f"done: {counts or 'nothing to change'}" + ("" if event.get("ok") else " (not ok)")
    return str(kind)


def ago(moment: str | float | None) -> str:
    """How long ago an ISO time or Unix timestamp was, in words."""
    if moment is None:
        return "never"
    stamp = (
        moment if isinstance(moment, float | int) else datetime.fromisoformat(moment).timestamp()
    )
    return since(time.time() - stamp)


def since(age: float | None) -> str:
    """An age in seconds (not a moment: see `ago`) in words, `12 s ago`; `never` for None."""
    if age is None:
        return "never"
    seconds = max(0, int(age))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"
