"""`POST /webhooks/wisphub`: a change notification from any sender, as a hint.

The notification only names clients; each gets a coalesced sync job that re-reads the client
from WispHub. Answers 202 with the job per client.

The sender is authenticated before anything else, the rate limit included (`install`): only
notifications that pass count toward `WEBHOOK_RATE_LIMIT`, so strangers cannot spend a real
sender's allowance.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, g, jsonify, request

from service.auth import require_webhook_secret
from service.bodies import json_body
from service.context import context
from service.payloads import FIELD, PayloadError, client_ids

blueprint = Blueprint("webhooks", __name__)


def install(app: Flask) -> None:
    """Serve the endpoint; authenticate its requests ahead of every later check (call it
    before the rate limits are installed, whose own check runs as the app's next step)."""
    app.register_blueprint(blueprint)
    app.before_request(_authenticate)
    # The app's, not the blueprint's: it runs after the hooks installed later, which may turn
    # a 202 into a 503 (`service.durability`).
    app.after_request(_forget_unqueued)


def _authenticate() -> None:
    """Check the sender's secret or signature (and keep the signature against replays)."""
    if request.endpoint != "webhooks.notify":
        return
    ctx = context()
    g.signature = require_webhook_secret(ctx.service.webhook_secret, ctx.redis)
    if g.signature is not None and request.args.getlist(FIELD):
        raise PayloadError(
            f"a signed notification names its clients in the body: the query string "
            f"({FIELD}=...) is not signed"
        )


def _forget_unqueued(response: Response) -> Response:
    """A signed notification that queued nothing (rate-limited, queue full, bad body) may be
    sent again with the same signature."""
    signature = g.get("signature")
    if signature is not None and response.status_code != 202:
        signature.forget(context().redis)
    return response


@blueprint.post("/webhooks/wisphub")
def notify() -> tuple[Response, int]:
    """Queue a sync for every client the notification names."""
    ids = client_ids(json_body(), request.form.getlist(FIELD), request.args.getlist(FIELD))
    jobs = context().request_syncs(ids, "webhook")
    queued = list(zip(ids, jobs, strict=True))
    return jsonify(
        {
            "accepted": len(queued),
            "jobs": [
                {"id_servicio": key, "job_id": job.job_id, "coalesced": job.coalesced}
                for key, job in queued
            ],
        }
    ), 202
