"""`POST /webhooks/wisphub`: a change notification from any sender, as a hint.

The notification only names clients; each gets a coalesced sync job that re-reads the client
from WispHub. Answers 202 with the job per client.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from service.auth import require_webhook_secret
from service.bodies import json_body
from service.context import context
from service.payloads import FIELD, PayloadError, client_ids

blueprint = Blueprint("webhooks", __name__)


@blueprint.post("/webhooks/wisphub")
def notify() -> tuple[Response, int]:
    """Queue a sync for every client the notification names."""
    ctx = context()
    signature = require_webhook_secret(ctx.service.webhook_secret, ctx.redis)
    query = request.args.getlist(FIELD)
    if signature is not None and query:
        raise PayloadError(
            f"a signed notification names its clients in the body: the query string "
            f"({FIELD}=...) is not signed"
        )
    try:
        ids = client_ids(json_body(), request.form.getlist(FIELD), query)
        jobs = ctx.request_syncs(ids, "webhook")
    except Exception:
        if signature is not None:
            signature.forget(ctx.redis)  # nothing was queued: the sender may send it again
        raise
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
