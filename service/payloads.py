"""Reading client ids out of a notification, whatever shape its sender can produce (pure).

Accepted: JSON `{"id_servicio": 123}`, `{"id_servicio": [123, 456]}`,
`{"clientes": [{"id_servicio": 123}, ...]}`, and `id_servicio` as form fields or query
parameters (repeated, or comma-separated). Ids are positive whole numbers, at most
`defaults.MAX_IDS` per request; duplicates count once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from worker import defaults

FIELD = "id_servicio"
# 2**63 - 1, the largest id, has 19 digits.
MAX_ID_DIGITS = 19
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


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
