"""Reading client ids out of a notification, whatever shape its sender can produce (pure).

Accepted: JSON `{"id_servicio": 123}`, `{"id_servicio": [123, 456]}`,
`{"clientes": [{"id_servicio": 123}, ...]}`, and `id_servicio` as form fields or query
parameters (repeated, or comma-separated). Ids are positive whole numbers, at most
`defaults.MAX_IDS` per request; duplicates count once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from worker import defaults
from worker.core import phrases

FIELD = "id_servicio"
# 2**63 - 1, the largest id, has 19 digits.
MAX_ID_DIGITS = 19
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# The longest reason a person may give for pausing writes.
MAX_REASON = 200


class PayloadError(ValueError):
    """The request does not say which clients changed, or says it wrongly."""


def client_ids(
    json_body: Any, form_values: Iterable[str], query_values: Iterable[str]
) -> list[int]:
    """The distinct client ids of a notification, in the order given."""
    raw: list[Any] = []
    if json_body is not None:
        raw.extend(_from_json(json_body))
    for text in (*form_values, *query_values):
        raw.extend(part for part in text.split(",") if part.strip())
    if not raw:
        raise PayloadError(f"no {FIELD} given (JSON body, form field or query parameter)")
    ids = list(dict.fromkeys(parse_id(value) for value in raw))
    if len(ids) > defaults.MAX_IDS:
        raise PayloadError(f"{len(ids)} ids in one request; at most {defaults.MAX_IDS}")
    return ids


def parse_id(value: Any) -> int:
    """A positive whole number from an int or its decimal text; `PayloadError` otherwise."""
    if isinstance(value, bool):
        raise PayloadError(f"{FIELD} must be a positive whole number, not {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _decimal(value.strip()):
        number = int(value.strip().lstrip("0") or "0")
    else:
        raise PayloadError(f"{FIELD} must be a positive whole number, not {_shown(value)}")
    if number <= 0 or number >= 2**63:
        raise PayloadError(f"{FIELD} must be a positive whole number, not {number}")
    return number


def _decimal(text: str) -> bool:
    """Whether `text` is ASCII digits, leading zeros aside few enough to convert: Python
    refuses to turn more than 4,300 digits into an int, and no id has more than 19."""
    return text.isascii() and text.isdecimal() and len(text.lstrip("0")) <= MAX_ID_DIGITS


def parse_job_id(value: Any) -> str:
    """A job id as RQ makes them (letters, digits, `_` and `-`); `PayloadError` otherwise."""
    if not isinstance(value, str) or not JOB_ID.fullmatch(value):
        raise PayloadError(f"not a job id: {_shown(value)}")
    return value


def job_ids(body: Mapping[str, Any]) -> list[str] | None:
    """The failed jobs a request names (`"job_ids"`, at most `defaults.MAX_IDS`); None when it
    names none, meaning all of them."""
    value = body.get("job_ids")
    if value is None:
        return None
    if not isinstance(value, list):
        raise PayloadError('"job_ids" must be a list of job ids')
    if len(value) > defaults.MAX_IDS:
        raise PayloadError(f"at most {defaults.MAX_IDS} job ids per request")
    return [parse_job_id(job_id) for job_id in value]


def pause_reason(value: Any) -> str | None:
    """Why writes are paused, as a person typed it, at most `MAX_REASON` characters, made one
    line (what would not print, a line break among it, becomes a space); None when blank."""
    if value is not None and (not isinstance(value, str) or len(value) > MAX_REASON):
        raise PayloadError(f'"reason" must be a text of at most {MAX_REASON} characters')
    shown = " ".join("".join(c if c.isprintable() else " " for c in value or "").split())
    return shown or None


def parse_limit(raw: str | None, default: int, most: int) -> int:
    """A `?limit=` query parameter (`None`: not given), from 1 to `most`."""
    if raw is None:
        return default
    if not _decimal(raw) or not 1 <= int(raw) <= most:
        raise PayloadError(f"limit must be a whole number from 1 to {most}")
    return int(raw)


def search_text(raw: str | None) -> str:
    """What a person typed to find a client: not blank, at most `SEARCH_MAX_CHARS`."""
    if raw is None or not raw.strip():
        raise PayloadError(phrases.SEARCH_BLANK)
    if len(raw) > defaults.SEARCH_MAX_CHARS:
        raise PayloadError(
            phrases.SEARCH_TOO_LONG.format(length=len(raw), most=defaults.SEARCH_MAX_CHARS)
        )
    return raw


def _from_json(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        raise PayloadError(f'the JSON body must be an object such as {{"{FIELD}": 123}}')
    if FIELD in body:
        value = body[FIELD]
        return list(value) if isinstance(value, list) else [value]
    if "clientes" in body:
        clientes = body["clientes"]
        if not isinstance(clientes, list) or not all(
            isinstance(c, dict) and FIELD in c for c in clientes
        ):
            raise PayloadError(f'"clientes" must be a list of objects with "{FIELD}"')
        return [c[FIELD] for c in clientes]
    raise PayloadError(f'the JSON body has neither "{FIELD}" nor "clientes"')


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"
