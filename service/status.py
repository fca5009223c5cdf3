"""The status page: the service at a glance for the engineer and the support desk (`/`,
refreshing itself), finding a client by what the operator knows (`/clients?q=`), and a client's
page (`/clients/<id_servicio>`): WispHub beside each BQN, its history, "sync now" and "what
would change".

Server-rendered HTML (templates in `service/templates/`, their words in `service/console.py`),
behind the API token: given once at `/login` (the sign-in then lives in a server-side session,
`service/sessions.py`), or as HTTP basic auth (any user name, the token as password), or as a
Bearer header. Its forms (sync a client, requeue or dismiss failures, pause and resume writes)
carry a random CSRF token kept in the session.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext, ngettext

from service import api, console, overview, search, sessions, targets, views
from service.auth import offered_api_token, same
from service.context import Context, context
from service.payloads import PayloadError, parse_id, parse_job_id, pause_reason, search_text
from worker import defaults
from worker.queue import client_index, client_overrides, history, pause
from worker.queue.failures import (
    dismiss_failures,
    failed_before,
    failures,
    place,
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
    console.install(app)
    views.install(app)
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
        gettext(
            "Wrong or missing API token: sign in at /login, or use basic auth with the token as "
            "the password."
        )
        + "\n",
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
def page() -> Response:
    """The overview; it reloads itself every `STATUS_REFRESH_SECONDS` (the `Refresh` header:
    the page runs no scripts) unless `?refresh=off`, for typing in its forms."""
    ctx = context()
    count, failed = failures(ctx.queue, defaults.FAILURES_SHOWN)
    upto = place(ctx.queue, failed[0]["job_id"]) if failed else None
    stopped = request.args.get("refresh") == "off"
    refresh = 0 if stopped else ctx.service.status_refresh_seconds
    response = make_response(
        render_template(
            "status.html",
            now=overview.read(ctx.redis, ctx.queue),
            failures=failed,
            names=views.names([failure["id_servicio"] for failure in failed]),
            failure_count=count,
            upto=upto,
            cleared=recently_cleared(ctx.redis),
            writes=pause.state(ctx.queue),
            targets=targets.described(
                ctx.redis, ctx.sync.targets, ctx.service.history.reconcile_reports
            ),
            plans=views.plan_states(),
            chart=console.chart(history.operations_per_hour(ctx.redis, defaults.CHART_HOURS)),
            indexed=client_index.last_pass(ctx.redis),
            refresh=refresh,
            stopped=stopped,
            warnings=tls_warnings(ctx.sync),
            overrides=list(client_overrides.in_force(ctx.redis).values()),
            **_common(),
        )
    )
    if refresh:
        response.headers["Refresh"] = str(refresh)
    return response


@blueprint.get("/clients")
def find() -> Response | tuple[str, int]:
    """The search box: the clients the text finds, as `GET /api/v1/clients?q=` finds them;
    one hit (or, before any pass is indexed, an id_servicio) goes straight to its page."""
    typed = request.args.get("q", "")
    try:
        text = search_text(typed)
    except PayloadError as exc:
        return render_template("clients.html", q=typed, error=str(exc), **_common()), 400
    found = search.found(text, defaults.SEARCH_HITS)
    hits = found["hits"]
    if found["total"] == 1:
        return redirect(url_for("status.client", raw_id=hits[0]["id_servicio"]))
    id_servicio = _id_in(text)
    if not hits and id_servicio is not None:  # not in the last pass: WispHub may have it now
        return redirect(url_for("status.client", raw_id=id_servicio))
    return render_template("clients.html", q=typed, found=found, **_common()), 200


@blueprint.get("/clients/<raw_id>")
def client(raw_id: str) -> tuple[str, int]:
    """A client's page: WispHub beside what each BQN holds, read now; its history."""
    return _client_page(raw_id, changes=False)


@blueprint.get("/clients/<raw_id>/plan")
def client_changes(raw_id: str) -> tuple[str, int]:
    """The client's page with what a sync would change now, writing nothing."""
    return _client_page(raw_id, changes=True)


def _client_page(raw_id: str, *, changes: bool) -> tuple[str, int]:
    try:
        id_servicio = parse_id(raw_id)
    except PayloadError:
        return render_template("client.html", raw_id=raw_id, view=None, **_common()), 404
    view = views.client_view(id_servicio)
    status = 404 if view.missing else 200
    override = client_overrides.of_client(context().redis, id_servicio)
    return render_template(
        "client.html",
        view=view,
        changes=changes,
        overrides=[] if override is None else [override],
        **_common(),
    ), status


def _common() -> dict[str, object]:
    """What every page shows in its frame: the sign-out form, the times' zone."""
    return {
        "csrf": csrf_token(),
        "signed_in": _signed_in(),
        "zone": console.zone(context().service.time_zone),
    }


def _id_in(text: str) -> int | None:
    """The id_servicio `text` is, if it is a whole number."""
    try:
        return parse_id(text)
    except PayloadError:
        return None


@blueprint.post("/status/clients/sync")
def sync_client() -> Response:
    """The "sync now" button of a client's page."""
    _check_csrf()
    ctx = context()
    id_servicio = parse_id(request.form.get("id_servicio", ""))
    [queued] = ctx.request_syncs([id_servicio], "status-page")
    flash(
        gettext("sync of client %(id)s queued as job %(job)s", id=id_servicio, job=queued.job_id),
        "ok",
    )
    return redirect(url_for("status.client", raw_id=id_servicio))


@blueprint.post("/status/overrides/end")
def end_override() -> Response:
    """The "end now" button of a temporary override (the overview's list, a client's page):
    the client returns to what WispHub says."""
    _check_csrf()
    id_servicio = parse_id(request.form.get("id_servicio", ""))
    queued = api.end_override(id_servicio, "status-page")
    if queued is None:
        flash(gettext("client %(id)s has no override in force", id=id_servicio), "error")
    else:
        flash(
            gettext(
                "override of client %(id)s ended; its sync is queued as job %(job)s",
                id=id_servicio,
                job=queued.job_id,
            ),
            "ok",
        )
    return redirect(url_for("status.client", raw_id=id_servicio))


@blueprint.post("/status/failures/requeue")
def requeue() -> Response:
    """The requeue buttons: one failed job (`job_id`), or all of them."""
    _check_csrf()
    ctx = context()
    queued, missing = requeue_failures(ctx.queue, _chosen_failures(), ctx.service)
    done = ngettext(
        "%(num)d failed job queued again", "%(num)d failed jobs queued again", len(queued)
    )
    return _after_failures(done, missing)


@blueprint.post("/status/failures/dismiss")
def dismiss() -> Response:
    """The dismiss buttons: one failed job (`job_id`), or all of them."""
    _check_csrf()
    ctx = context()
    chosen = _chosen_failures()
    dismissed, missing = dismiss_failures(ctx.queue, chosen, "status-page", ctx.service.history)
    done = ngettext("%(num)d failed job dismissed", "%(num)d failed jobs dismissed", len(dismissed))
    return _after_failures(done, missing)


def _chosen_failures() -> list[str] | None:
    """The failed job a row's button names; for the page's "all" buttons, the failures it
    listed (`listed`) and every one that failed before the newest of them (`upto`, its place
    in the failed registry): not one that failed after the page was drawn, which nobody has
    seen. Without either (a script): None, all of them."""
    job_id, raw_upto = request.form.get("job_id"), request.form.get("upto")
    if job_id is not None:
        return [parse_job_id(job_id)]
    if raw_upto is None:
        return None
    try:
        upto = float(raw_upto)
    except ValueError:
        upto = math.nan
    if not math.isfinite(upto):
        raise PayloadError(f"upto: not a failure's place: {raw_upto[:40]!r}")
    listed = [parse_job_id(value) for value in request.form.getlist("listed")]
    return list(dict.fromkeys([*listed, *failed_before(context().queue, upto)]))


def _after_failures(done: str, missing: list[str]) -> Response:
    """Back to the page, saying what was done and which jobs were no longer failed."""
    flash(done, "ok")
    if missing:
        flash(gettext("no longer failed: %(jobs)s", jobs=", ".join(missing)), "error")
    return redirect(url_for("status.page"))


@blueprint.post("/status/pause")
def pause_writes() -> Response:
    """The "Pause writes" button, with the reason typed beside it."""
    _check_csrf()
    ctx = context()
    pause.pause(ctx.redis, "status-page", pause_reason(request.form.get("reason")))
    running = pause.state(ctx.queue)["running"]
    flash(
        ngettext(
            "writes paused; %(num)d job still running finishes first",
            "writes paused; %(num)d jobs still running finish first",
            running,
        ),
        "ok",
    )
    return redirect(url_for("status.page"))


@blueprint.post("/status/resume")
def resume_writes() -> Response:
    """The "Resume writes" button."""
    _check_csrf()
    ctx = context()
    pause.resume(ctx.redis, "status-page")
    flash(
        ngettext(
            "writes resumed; %(num)d job queued meanwhile runs now",
            "writes resumed; %(num)d jobs queued meanwhile run now",
            ctx.queue.count,
        ),
        "ok",
    )
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
        return render_template("login.html", next=_next(), error=gettext("Wrong API token.")), 401
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
