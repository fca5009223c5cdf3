"""What the status page's templates show, put in words: times in the ISP's zone, ages, a
client's events, the operations chart, speeds. Formatting only (the routes are in
`service/status.py`); every English phrase a page builds in Python is here, in one place.

Times are shown in the process's zone, the one its log lines use (`TZ`, read by the C
library), with the zone's abbreviation after each (`2026-12-07 13:05:12 -05`); the API keeps
ISO 8601 with an offset.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask


def install(app: Flask) -> None:
    """Give the templates the filters below."""
    app.jinja_env.filters.update(
        step=describe_event, ago=ago, since=since, when=when, rate=rate, shown=shown
    )


# Times -----------------------------------------------------------------------------------


def moment_of(value: str | float) -> datetime:
    """An ISO 8601 time or a Unix time, as an aware time (a time without an offset is UTC:
    the service writes none such, an older release may have)."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def when(value: str | float | None) -> str:
    """A time in the process's zone, to the second, with the zone's abbreviation:
    `2026-12-07 13:05:12 -05`; empty for None."""
    if value is None:
        return ""
    local = moment_of(value).astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or local.strftime("%z"))


def zone(name: str | None) -> str:
    """The zone the page's times are in, to say once on a page: `TZ`'s name (`name`) and its
    abbreviation now, `America/Bogota (-05)`; the abbreviation alone without a name."""
    abbreviation = datetime.now().astimezone().tzname() or ""
    name = (name or "").removeprefix(":")
    return f"{name} ({abbreviation})" if name and name != abbreviation else abbreviation


def ago(moment: str | float | None) -> str:
    """How long ago an ISO time or Unix timestamp was, in words."""
    if moment is None:
        return "never"
    return since(time.time() - moment_of(moment).timestamp())


def since(age: float | None) -> str:
    """An age in seconds (not a moment: see `ago`) in words, `12 s ago`; `never` for None."""
    if age is None:
        return "never"
    seconds = max(0, int(age))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


# Values ----------------------------------------------------------------------------------


def rate(kbps: int | None) -> str:
    """A speed in kbps as a person reads it: `10 Mbps`, `1.5 Mbps`, `512 kbps`."""
    if kbps is None:
        return "?"
    for unit, size in (("Gbps", 1_000_000), ("Mbps", 1_000)):
        if kbps >= size:
            return f"{kbps / size:g} {unit}"
    return f"{kbps} kbps"


def shown(value: Any) -> str:
    """A BQN field's value in a table cell: a list as its items, nothing as a dash."""
    if value is None:
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "(none)"
    return str(value)


# The operations chart --------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One hour of the operations chart."""

    label: str
    ok: int
    failed: int
    ok_height: float
    failed_height: float


def chart(hours: list[tuple[int, dict[str, int]]], height: float = 100) -> list[Bar]:
    """Bars for the operations-per-hour chart, scaled to the busiest hour, each labelled with
    its start in the process's zone."""
    totals = [
        (sum(counts.values()) - counts.get("failed", 0), counts.get("failed", 0))
        for _, counts in hours
    ]
    top = max((ok + failed for ok, failed in totals), default=0) or 1
    return [
        Bar(
            label=datetime.fromtimestamp(start, UTC).astimezone().strftime("%H:%M"),
            ok=ok,
            failed=failed,
            ok_height=height * ok / top,
            failed_height=height * failed / top,
        )
        for (start, _), (ok, failed) in zip(hours, totals, strict=True)
    ]


# A client's events -----------------------------------------------------------------------

# The events told in one line of their fields.
LINES = {
    "started": "a worker started the job (attempt {attempt})",
    "skipped": "skipped: {reason}",
    "retry": "failed for now, will retry: {error}",
    "superseded": "nothing to do: job {by}, waiting, takes the latest state",
    "failed": "FAILED, waiting in the failures list: {error}",
    "resolved": "failure of job {job_id} resolved: job {by} went through since",
    "dismissed": "failure of job {job_id} dismissed (via {via})",
}


def describe_event(event: dict[str, Any]) -> str:
    """One line saying what an event of a client's history means."""
    kind = event.get("event")
    if kind in ("queued", "coalesced"):
        how = "queued as" if kind == "queued" else "a waiting job will do it:"
        return f"sync asked for via {event.get('via')}; {how} {event.get('job_id')}"
    if kind in LINES:
        return LINES[kind].format_map(defaultdict(str, event))
    if kind == "read":
        if not event.get("found"):
            return "WispHub has no such client: its BQN entries are removed"
        return (
            f"WispHub says: estado {event.get('estado')}, plan {event.get('plan') or '(none)'},"
            f" IP {event.get('ip') or '(none)'}"
        )
    if kind == "operation":
        text = f"BQN: {event.get('action')} {event.get('kind')} {event.get('key')}"
        if event.get("policy"):
            text += f" with policy {event['policy']}"
        if event.get("result") == "ok":
            return text + ": done"
        return text + f": FAILED: {event.get('error')}"
    if kind == "done":
        counts = ", ".join(
            f"{event.get(name, 0)} {name}"
            for name in ("created", "updated", "deleted", "skipped", "failed")
            if event.get(name)
        )
        return f"done: {counts or 'nothing to change'}" + ("" if event.get("ok") else " (not ok)")
    return str(kind)
