"""The `/_sim/` control endpoints both simulators share (no auth, not counted, no faults).

`control_blueprint` serves `GET/PUT/DELETE /_sim/faults`, `GET /_sim/stats` and
`POST /_sim/stats/reset`; each simulator adds its own routes to the blueprint before
registering it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, request

from sandbox.faults import Faults, Stats
from sandbox.web import CONTROL_PREFIX, json_response


def control_blueprint(faults: Faults, stats: Stats) -> Blueprint:
    """A blueprint (mounted at `/_sim`) with the fault and statistics endpoints."""
    blueprint = Blueprint("sim", __name__, url_prefix=CONTROL_PREFIX.rstrip("/"))

    @blueprint.get("/faults")
    def get_faults() -> Response:
        return json_response(faults.settings())

    @blueprint.put("/faults")
    def put_faults() -> Response:
        try:
            faults.update(**json_body())
        except ValueError as exc:
            return control_error(400, str(exc))
        return json_response(faults.settings())

    @blueprint.delete("/faults")
    def clear_faults() -> Response:
        faults.clear()
        return json_response(faults.settings())

    @blueprint.get("/stats")
    def get_stats() -> Response:
        return json_response(stats.snapshot())

    @blueprint.post("/stats/reset")
    def reset_stats() -> Response:
        stats.reset()
        return json_response(stats.snapshot())

    return blueprint


def json_body() -> dict[str, Any]:
    """The request's JSON object (any content type); aborts with 400 otherwise."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        abort(control_error(400, "a JSON object body is required"))
    return body


def control_error(status: int, message: str) -> Response:
    """A JSON error from a control endpoint."""
    return json_response({"error": message}, status)
