"""What the status page's templates show, put in words: times in the ISP's zone, ages, a
client's events, the operations chart, speeds. Formatting only (the routes are in
`service/status.py`); every phrase a page builds in Python is here, in one place, in the page's
language (`service/i18n.py`: written in English, translated by the catalogs).

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
from flask_babel import gettext, ngettext

from worker.core import phrases
from worker.core.client_overrides import Override
from worker.core.words import say_job


def install(app: Flask) -> None:
    """Give the templates the filters below, and the words of the values they show."""
    app.jinja_env.filters.update(
        step=describe_event,
        ago=ago,
        since=since,
        when=when,
        rate=rate,
        shown=shown,
        job=job,
        said=said,
        overridden=overridden,
    )
    app.jinja_env.globals.update(counted=counted, operation=operation, entry=entry)

    @app.context_processor
    def _words() -> dict[str, dict[str, str]]:
        return {
            "outcomes": outcomes(),
            "policy_states": policy_states(),
            "plan_sources": {
                "wisphub": "WispHub",
                "override": gettext("speeds file"),
                "none": gettext("none"),
            },
            "worker_states": {
                "idle": gettext("idle"),
                "busy": gettext("busy"),
                "started": gettext("started"),
                "suspended": gettext("suspended"),
            },
        }


def outcomes() -> dict[str, str]:
    """The names of a reconcile's counts (`worker.core.report`), as a table's headings."""
    return {
        "created": gettext("created"),
        "updated": gettext("updated"),
        "deleted": gettext("deleted"),
        "unchanged": gettext("unchanged"),
        "skipped": gettext("skipped"),
        "failed": gettext("failed"),
    }


def operation(action: str, kind: str) -> str:
    """What a BQN operation does (`worker.core.model`'s Action and Kind): `create subscriber`."""
    actions = {
        "create": gettext("create"),
        "update": gettext("update"),
        "delete": gettext("delete"),
    }
    return gettext("%(action)s %(kind)s", action=actions.get(action, action), kind=entry(kind))


def entry(kind: str) -> str:
    """A kind of BQN entry (`worker.core.model`'s Kind) in words: `subscriber`."""
    kinds = {
        "subscriber": gettext("subscriber"),
        "policy": gettext("policy"),
        "group": gettext("group"),
    }
    return kinds.get(kind, kind)


def policy_states() -> dict[str, str]:
    """The states of a plan's policy on a BQN (`service/api.py`'s `policy_states`)."""
    return {
        "ok": gettext("ok"),
        "different": gettext("different"),
        "missing": gettext("missing"),
        "undefined": gettext("undefined"),
        "left for the operator": gettext("left for the operator"),
    }


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
        return gettext("never")
    return since(time.time() - moment_of(moment).timestamp())


def since(age: float | None) -> str:
    """An age in seconds (not a moment: see `ago`) in words, `12 s ago`; `never` for None."""
    if age is None:
        return gettext("never")
    seconds = max(0, int(age))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return gettext("%(amount)s ago", amount=f"{seconds // size} {unit}")
    return gettext("%(amount)s ago", amount=f"{seconds} s")


# Values ----------------------------------------------------------------------------------


def said(text: str | None) -> str:
    """A sentence the worker wrote (an error, a reason, a note: `worker.core.phrases`) in the
    page's language; as written when it is none of the worker's phrases."""
    return "" if text is None else phrases.say(str(text), gettext)


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
        return ", ".join(str(item) for item in value) or gettext("(none)")
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


def job(failure: dict[str, Any]) -> str:
    """What a failed job was for, in the page's language: from its `job` facts
    (`worker.core.words`), or its English `description` when it has none (a failure cleared
    before a release that kept them)."""
    facts = failure.get("job")
    if not facts:
        return str(failure.get("description", ""))
    phrases = {
        "client": gettext("sync of client {id}"),
        "batch": lambda count: ngettext(
            "batch of {count} client", "batch of {count} clients", count
        ),
        "address": gettext("sync of address {ip}"),
        "address_on": gettext("sync of address {ip} on {target}"),
        "reconcile": gettext("full reconcile"),
        "reconcile_of": gettext("full reconcile of {target}"),
        "dry_run": gettext(" (dry run)"),
        "forced": gettext(" (forced)"),
        "sync_plans": gettext("plan sync"),
        "poll_changes": gettext("change poll"),
        "other": "{name}",
    }
    return say_job(facts, phrases)


def counted(name: str, count: int) -> str:
    """A count of a reconcile's or a sync's outcome (`created`, `failed`...) in words."""
    phrases = {
        "created": ngettext("%(num)d created", "%(num)d created", count),
        "updated": ngettext("%(num)d updated", "%(num)d updated", count),
        "deleted": ngettext("%(num)d deleted", "%(num)d deleted", count),
        "unchanged": ngettext("%(num)d unchanged", "%(num)d unchanged", count),
        "skipped": ngettext("%(num)d skipped", "%(num)d skipped", count),
        "failed": ngettext("%(num)d failed", "%(num)d failed", count),
    }
    return phrases.get(name, f"{count} {name}")


def overridden(item: Override | dict[str, Any]) -> str:
    """What a temporary override gives the client (an `Override`, or the fields of its
    history event: `kind` and `value`)."""
    kind, value = (
        (item.kind, item.value) if isinstance(item, Override) else (item["kind"], item["value"])
    )
    phrases = {
        "policy": gettext("policy {value}"),
        "rate": gettext("rate {value}"),
        "estado": gettext("shaped as {value}"),
    }
    return phrases.get(kind, "{value}").format(value=value)


def describe_event(event: dict[str, Any]) -> str:
    """One line saying what an event of a client's history means."""
    kind = event.get("event")
    fields = defaultdict(str, event)
    if kind != "override":  # an override's reason is what a person typed: shown as typed
        fields.update({name: said(event[name]) for name in ("reason", "error") if event.get(name)})
    lines = {
        "started": gettext("a worker started the job (attempt {attempt})"),
        "skipped": gettext("skipped: {reason}"),
        "retry": gettext("failed for now, will retry: {error}"),
        "superseded": gettext("nothing to do: job {by}, waiting, takes the latest state"),
        "failed": gettext("FAILED, waiting in the failures list: {error}"),
        "resolved": gettext("failure of job {job_id} resolved: job {by} went through since"),
        "dismissed": gettext("failure of job {job_id} dismissed (via {via})"),
        "queued": gettext("sync asked for via {via}; queued as {job_id}"),
        "coalesced": gettext("sync asked for via {via}; a waiting job will do it: {job_id}"),
    }
    if kind in lines:
        return lines[kind].format_map(fields)
    if kind == "read":
        if not event.get("found"):
            return gettext("WispHub has no such client: its BQN entries are removed")
        none = gettext("(none)")
        return gettext("WispHub says: estado {estado}, plan {plan}, IP {ip}").format(
            estado=event.get("estado"), plan=event.get("plan") or none, ip=event.get("ip") or none
        )
    if kind == "operation":
        done = operation(str(event.get("action")), str(event.get("kind")))
        text = gettext("BQN: {operation} {key}").format(operation=done, key=event.get("key"))
        if event.get("policy"):
            text += gettext(" with policy {policy}").format_map(fields)
        if event.get("result") == "ok":
            return text + gettext(": done")
        return text + gettext(": FAILED: {error}").format_map(fields)
    if kind == "override":
        fields.update(what=overridden(event), until=when(event.get("until")))
        return gettext("override: {what} until {until}, set via {set_by}: {reason}").format_map(
            fields
        )
    if kind == "override_ended":
        why = {
            "expired": gettext("its time came"),
            "removed": gettext("removed via {by}").format_map(fields),
            "cancelled": gettext("WispHub cancelled the client"),
            "replaced": gettext("another took its place"),
        }.get(str(event.get("why")), str(event.get("why")))
        return gettext("override ended ({what}): {why}; back to what WispHub says").format(
            what=overridden(event), why=why
        )
    if kind == "done":
        counts = ", ".join(
            counted(name, event[name])
            for name in ("created", "updated", "deleted", "skipped", "failed")
            if event.get(name)
        )
        line = gettext("done: {counts}").format(counts=counts or gettext("nothing to change"))
        return line + ("" if event.get("ok") else gettext(" (not ok)"))
    return str(kind)
