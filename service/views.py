"""What the status page's views gather beyond the overview's numbers: a client's page (the
client as WispHub has it, what each BQN holds beside it, what the sync last applied, its
history), the plans with their policy's state on each BQN, and the names of clients a list
shows by id. The JSON API computes the same things (`service/api.py`, `service/search.py`):
the pages call that code rather than a copy of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from flask import Flask, current_app

from service import api, search
from service.context import context
from worker import defaults
from worker.core.errors import SyncError
from worker.core.model import Footprint
from worker.core.plans import Plan, resolved
from worker.core.preview import by_field
from worker.core.search import Entry, entry
from worker.queue import history, store
from worker.queue.client_index import Indexed
from worker.targets import Target

# Where the app keeps its process's plan states.
KEY = "wisphub_bqn_sync.plan_states"


def install(app: Flask) -> None:
    """Keep the plans' policy states per process (`plan_states`)."""
    app.extensions[KEY] = Kept(defaults.STATUS_PLANS_SECONDS)


# A client's page -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientView:
    """A client's page. `entry` is the client as WispHub has it now (`live`) or had it in the
    last complete pass (`None`: neither knows it); `compared` holds, per BQN, each entry at
    the client's keys as it is now and would be after a sync (`worker.core.preview`), with its
    fields side by side; `preview` is the `GET /api/v1/clients/<id>/plan` answer, `plan` the
    client's plan with its speeds; `error` says why WispHub or the BQNs could not be read now.
    `missing`: WispHub has no such client and no BQN holds anything of it."""

    id_servicio: int
    entry: Entry | None
    live: bool
    pass_read_at: float | None
    plan: Plan | None
    compared: dict[str, list[dict[str, Any]]]
    preview: dict[str, Any] | None
    error: str | None
    applied: dict[str, Footprint | None]
    events: list[dict[str, Any]]

    @property
    def missing(self) -> bool:
        return self.error is None and self.preview is None

    @property
    def differences(self) -> int:
        """How many entries a sync would write, on every BQN together."""
        return sum(row["change"] is not None for rows in self.compared.values() for row in rows)


def client_view(id_servicio: int) -> ClientView:
    """A client's page, WispHub and each BQN read now (writing nothing), the rest from Redis."""
    ctx = context()
    indexed = _index()
    try:
        planned, error = api.plan_now(id_servicio), None
    except SyncError as exc:
        planned, error = None, str(exc)
    row = None if planned is None else planned.row
    answer = None if planned is None else planned.answer
    from_pass = None if indexed is None else indexed.index.get(id_servicio)
    return ClientView(
        id_servicio=id_servicio,
        entry=from_pass if row is None else entry(row),
        live=row is not None,
        pass_read_at=None if indexed is None else indexed.read_at,
        plan=None if planned is None else planned.plan,
        compared={
            name: [{**item, "fields": by_field(item)} for item in rows]
            for name, rows in (answer or {}).get("bqn", {}).items()
        },
        preview=answer,
        error=error,
        applied=store.applied_by_target(
            ctx.redis, id_servicio, [target.name for target in ctx.sync.targets]
        ),
        events=history.read(ctx.redis, id_servicio, defaults.STATUS_HISTORY_SHOWN),
    )


def names(ids: Iterable[int | None]) -> dict[int, str]:
    """The names the last complete pass gives the clients `ids` (those it has)."""
    wanted = [key for key in ids if key]
    indexed = _index() if wanted else None
    if indexed is None:
        return {}
    return {key: found.name for key in wanted if (found := indexed.index.get(key)) is not None}


def _index() -> Indexed | None:
    return current_app.extensions[search.KEY].current(context().redis)


# The plans -------------------------------------------------------------------------------


def plan_states() -> dict[str, Any] | None:
    """The plans with their policy's state on each BQN, as `GET /api/v1/plans` has them, for
    the overview: the catalogue the service keeps (no WispHub call; `None` before one is
    kept), the BQNs read at most every `STATUS_PLANS_SECONDS` per process, each given
    `STATUS_BQN_TIMEOUT` seconds and one try (`error`: none answered)."""
    return current_app.extensions[KEY].get(_read_plan_states)


def _read_plan_states() -> dict[str, Any] | None:
    ctx = context()
    saved = store.saved_plans(ctx.redis)
    if saved is None:
        return None
    catalogue = resolved(saved, (), ctx.sync.rules)
    targets = [_hurried(target) for target in ctx.sync.targets]
    try:
        states = api.policy_states(catalogue, targets)
    except SyncError as exc:
        states = {"plans": [plan.to_dict() for plan in catalogue], "error": str(exc)}
    return {**states, "targets": [target.name for target in targets], "read_at": time.time()}


def _hurried(target: Target) -> Target:
    """`target` reached with one short try: a page waits for it."""
    limit = defaults.STATUS_BQN_TIMEOUT
    bqn = target.bqn
    quick = replace(
        bqn,
        retries=0,
        connect_timeout=min(bqn.connect_timeout, limit),
        read_timeout=min(bqn.read_timeout, limit),
    )
    return replace(target, bqn=quick)


class Kept:
    """A value read at most every `seconds` in this process (`None` is not kept: there is
    nothing yet); the requests that find it old while one reads it again wait for that
    read."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._kept: tuple[float, Any] | None = None
        self._lock = threading.Lock()

    def get(self, read: Callable[[], Any]) -> Any:
        kept = self._kept
        if kept is not None and time.monotonic() - kept[0] < self.seconds:
            return kept[1]
        with self._lock:
            kept = self._kept
            if kept is None or time.monotonic() - kept[0] >= self.seconds:
                kept = (time.monotonic(), read())
                self._kept = None if kept[1] is None else kept
            return kept[1]
