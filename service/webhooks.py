"""`POST /webhooks/wisphub`: a change notification from any sender, as a hint.

The notification only names clients; each gets a coalesced sync job that re-reads the client
from WispHub. Answers 202 with the job per client.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from service.auth import require_webhook_secret
from service.context import context
from service.payloads import FIELD, PayloadError, client_ids
from worker.queue.queueing import request_syncs

blueprint = Blueprint("webhooks", __name__)


@blueprint.post("/webhooks/wisphub")
def notify() -> tuple[Response, int]:
    """Queue a sync for every client the notification names."""
    ctx = context()
    require_webhook_secret(ctx.service.webhook_secret)
    ids = client_ids(_json_body(), request.form.getlist(FIELD), request.args.getlist(FIELD))
    jobs = request_syncs(ctx.queue, ids, "webhook", ctx.service.history)
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


def _json_body() -> object:
    """The JSON body if the request has one; form and query senders send none."""
    if not request.is_json:
        return None
    body = request.get_json(silent=True)
    if body is None and request.get_data(cache=True).strip():
        raise PayloadError("the body is not valid JSON")
    return body
