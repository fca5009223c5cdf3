"""`GET /openapi.json`: the API's OpenAPI document (kept as `service/openapi.yaml`)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify

blueprint = Blueprint("docs", __name__)


@cache
def openapi() -> dict[str, Any]:
    """The OpenAPI document, read once."""
    text = resources.files("service").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@blueprint.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI document as JSON."""
    return jsonify(openapi())
