"""`GET /api/v1/clients?q=`: find clients by what the operator knows (id, IP or its start,
name, cédula, PPPoE user), behind `API_TOKEN`.

Answered from the index of the last complete WispHub pass (`worker.queue.client_index`), never
by calling WispHub: each hit says what WispHub said of the client then, what the sync last
applied on each BQN, and how the client's last sync went. The answer never holds a cédula.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from service.auth import require_api_token
from service.context import context
from service.payloads import parse_limit, search_text
from worker import defaults
from worker.core.search import cedula_key, parse_query
from worker.queue import client_index, history, store

blueprint = Blueprint("search", __name__, url_prefix="/api/v1")
# Where the app keeps its process's copy of the index.
KEY = "wisphub_bqn_sync.search"


def install(app: Flask) -> None:
    """Register the search, with an empty copy of the index (read on the first search)."""
    app.extensions[KEY] = client_index.Copy()
    app.register_blueprint(blueprint)


@blueprint.before_request
def _authenticate() -> None:
    require_api_token(context().service.api_token)


@blueprint.get("/clients")
def find() -> Response:
    """The clients `q` matches (`?limit=` hits, 20 by default): `found`."""
    text = search_text(request.args.get("q"))
    limit = parse_limit(request.args.get("limit"), defaults.SEARCH_HITS, defaults.SEARCH_MAX_HITS)
    return jsonify(found(text, limit))


def found(text: str, limit: int) -> dict[str, Any]:
    """What a search for `text` (checked) answers: how many clients match, and for the first
    `limit` their WispHub data, what they have on each BQN and how their last sync went; none,
    and `pass` null, before a complete pass is indexed. The status page shows the same."""
    ctx = context()
    indexed = current_app.extensions[KEY].current(ctx.redis)
    if indexed is None:  # the poller's first pass (or a reconcile) makes one
        return {"total": 0, "hits": [], "pass": None}
    result = indexed.index.search(parse_query(text, cedula_key(ctx.sync.wisphub.secret)), limit)
    ids = [hit.entry.id_servicio for hit in result.hits]
    names = [target.name for target in ctx.sync.targets]
    applied = store.applied_on(ctx.redis, ids, [store.target_keys(name) for name in names])
    outcomes = history.last_outcomes(ctx.redis, ids)
    hits = [
        {
            **hit.entry.to_dict(),
            "matched": hit.matched,
            "applied_on": {
                name: None if (held := on[key]) is None else held.to_dict()
                for name, on in zip(names, applied, strict=True)
            },
            "last_sync": outcomes[key],
        }
        for hit, key in zip(result.hits, ids, strict=True)
    ]
    read_at = datetime.fromtimestamp(indexed.read_at, UTC).isoformat(timespec="seconds")
    return {
        "total": result.total,
        "hits": hits,
        "pass": {"read_at": read_at, "clients": len(indexed.index)},
    }
