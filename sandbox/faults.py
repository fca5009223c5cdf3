"""Fault injection and request counting, shared by both simulators.

Tests (or the `/_sim/faults` control endpoint) set fields on a `Faults` object; the hook
installed by `install` applies them to every API request (never to `/_sim/` paths) and
counts the request in a `Stats`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

from flask import Flask, Response, g, request

from sandbox.web import html_page, is_control_path, text_response

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UNMATCHED = "<unmatched>"


@dataclass
class Faults:
    """Faults applied to API requests. Change them with `update` (thread-safe).

    - `latency_ms`: added to every API request.
    - `stall_every`: every Nth API request sleeps `stall_seconds` first (0 = off), like
      WispHub's hung calls; the client is expected to time out.
    - `fail_next`: the next K API requests answer `fail_status`.
    - `fail_every`: every Nth API request answers `fail_status` (0 = off).
    - `html_errors`: injected failures carry an HTML page (WispHub) instead of plain text.
    - `writes_only`: stalls and failures hit POST/PUT/PATCH/DELETE only (reads go through).
    - `hide_rows`: the fraction (0 to 1) of its rows a list endpoint leaves out, with a `count`
      that agrees: WispHub's empty or half lists (a restricted key, a half-restored database).
    - `lose_every`: every Nth API request (of those `writes_only` selects) is carried out, but
      its answer is held back `stall_seconds`, so the client times out: a lost answer.
    """

    latency_ms: int = 0
    stall_every: int = 0
    stall_seconds: float = 30.0
    fail_next: int = 0
    fail_every: int = 0
    fail_status: int = 500
    html_errors: bool = False
    writes_only: bool = False
    hide_rows: float = 0.0
    lose_every: int = 0
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )
    _seen: int = field(default=0, init=False, repr=False, compare=False)

    def settings(self) -> dict[str, Any]:
        """The public fields as a JSON-ready dict."""
        with self._lock:
            return {name: getattr(self, name) for name in _setting_types()}

    def update(self, **changes: Any) -> None:
        """Change some fields at once; raises ValueError on an unknown name or bad value."""
        types = _setting_types()
        for name, value in changes.items():
            if name not in types:
                raise ValueError(f"unknown fault setting {name!r}")
            _check_setting(name, value, types[name])
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, float(value) if types[name] is float else value)

    def clear(self) -> None:
        """Switch every fault off (keeping `html_errors`) and restart the request count."""
        defaults = Faults(html_errors=self.html_errors)
        with self._lock:
            for name in _setting_types():
                setattr(self, name, getattr(defaults, name))
            self._seen = 0

    def next_request(self, method: str = "GET") -> Verdict:
        """Account for one API request: what happens to it."""
        with self._lock:
            delay = self.latency_ms / 1000
            if self.writes_only and method not in WRITE_METHODS:
                return Verdict(delay)
            self._seen += 1
            if self.stall_every and self._seen % self.stall_every == 0:
                delay += self.stall_seconds
            failure: int | None = None
            if self.fail_next > 0:
                self.fail_next -= 1
                failure = self.fail_status
            elif self.fail_every and self._seen % self.fail_every == 0:
                failure = self.fail_status
            lost = bool(self.lose_every) and self._seen % self.lose_every == 0
            return Verdict(delay, failure, self.stall_seconds if lost else 0.0)

    def visible(self, rows: list[Any]) -> list[Any]:
        """`rows` less the fraction `hide_rows` hides (the last ones)."""
        with self._lock:
            hidden = round(len(rows) * self.hide_rows)
        return rows[: len(rows) - hidden]


@dataclass(frozen=True)
class Verdict:
    """What happens to one request: a wait before it is handled, a status it fails with
    instead, and a wait before its answer is sent (a lost answer, once the client gives up)."""

    delay: float = 0.0
    failure: int | None = None
    answer_delay: float = 0.0


def _setting_types() -> dict[str, type]:
    """Public settings and their types, taken from the dataclass defaults."""
    return {f.name: type(f.default) for f in fields(Faults) if f.init}


def _check_setting(name: str, value: Any, kind: type) -> None:
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return
    numeric = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, numeric) or value < 0:
        raise ValueError(f"{name} must be a non-negative {kind.__name__}")
    if name == "hide_rows" and value > 1:
        raise ValueError("hide_rows must be a fraction from 0 to 1")
    if name == "fail_status" and not 400 <= value <= 599:
        raise ValueError("fail_status must be an HTTP error status (400-599)")


class Stats:
    """Thread-safe count of API requests by (method, route pattern)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def record(self, method: str, kind: str) -> None:
        """Count one request; `kind` is the matched route pattern or `<unmatched>`."""
        with self._lock:
            self._counts[(method, kind)] += 1

    def count(self, method: str | None = None, kind: str | None = None) -> int:
        """Requests matching the method and/or route pattern (all when both are None)."""
        with self._lock:
            return sum(
                n for (m, k), n in self._counts.items() if method in (None, m) and kind in (None, k)
            )

    def writes(self) -> int:
        """Number of POST/PUT/PATCH/DELETE API requests."""
        with self._lock:
            return sum(n for (m, _), n in self._counts.items() if m in WRITE_METHODS)

    def reset(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready totals: `{"total", "writes", "requests": {"GET /route": n}}`."""
        with self._lock:
            counts = dict(self._counts)
        return {
            "total": sum(counts.values()),
            "writes": sum(n for (m, _), n in counts.items() if m in WRITE_METHODS),
            "requests": {f"{m} {k}": n for (m, k), n in sorted(counts.items())},
        }


def install(app: Flask, faults: Faults, stats: Stats) -> None:
    """Add a `before_request` hook that counts API requests and applies `faults` to them.

    Install it before any other hook so that auth failures and 404s are delayed, counted
    and failed like everything else the real server answers.
    """

    @app.before_request
    def _apply_faults() -> Response | None:
        if is_control_path(request.path):
            return None
        rule = request.url_rule
        stats.record(request.method, rule.rule if rule is not None else UNMATCHED)
        verdict = faults.next_request(request.method)
        if verdict.delay:
            time.sleep(verdict.delay)
        g.answer_delay = verdict.answer_delay
        if verdict.failure is None:
            return None
        return html_page(verdict.failure) if faults.html_errors else text_response(verdict.failure)

    @app.after_request
    def _lose_answer(response: Response) -> Response:
        if g.get("answer_delay"):
            time.sleep(g.answer_delay)  # done, but the client stops waiting first
        return response
