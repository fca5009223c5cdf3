"""Reading a request's JSON body so that no body, however built, can crash the parser."""

from __future__ import annotations

import json
from typing import Any

from flask import request

from service.payloads import PayloadError


def json_body() -> Any:
    """The parsed JSON body; None when the request sends no body or not as JSON.

    Parsed here rather than by `request.get_json`, which lets a `RecursionError` through
    (20 KB of `[`) where a malformed body should answer 400."""
    data = request.get_data(cache=True)
    if not request.is_json or not data.strip():
        return None
    try:
        return json.loads(data)
    except RecursionError:
        raise PayloadError("the JSON body nests too deep") from None
    except ValueError:
        raise PayloadError("the body is not valid JSON") from None
