"""The plan catalogue the jobs work from: kept in Redis, read again from WispHub when asked,
when it is missing, or when client rows name a plan it lacks or name one otherwise."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from redis import Redis

from worker.core.desired import Row, as_id
from worker.core.errors import SyncError
from worker.core.overrides import load_overrides
from worker.core.plans import Plan
from worker.queue import store
from worker.queue.runtime import Runtime
from worker.sync import engine

log = logging.getLogger(__name__)


def current_plans(redis: Redis, rt: Runtime, *, refresh: bool) -> list[Plan]:
    """The plan catalogue, read from WispHub when asked (or when none is kept yet).

    A failed WispHub read keeps the last good catalogue; a broken override file is an error.
    """
    saved = store.saved_plans(redis)
    if saved is not None and not refresh:
        return saved
    overrides = load_overrides(rt.settings.plan_speeds_file)
    try:
        plans = engine.read_plans(rt.wisphub, overrides)
    except SyncError as exc:
        if saved is None:
            raise
        log.warning("plan catalogue not refreshed, keeping the last good one: %s", exc)
        return saved
    store.save_plans(redis, plans)
    return plans


def plans_renamed(redis: Redis, rt: Runtime) -> bool:
    """Whether WispHub's plan list (one cheap read, no details) names plans otherwise than the
    kept catalogue, or has others."""
    try:
        listed = {
            plan_id: str(summary.get("nombre") or plan_id)
            for summary in rt.wisphub.list_plans()
            if (plan_id := as_id(summary.get("id"))) is not None
        }
    except SyncError as exc:
        log.warning("poll: plan list not read: %s", exc)
        return False
    kept = {plan.id: plan.nombre for plan in store.saved_plans(redis) or ()}
    return listed != kept


def plan_source(redis: Redis, rt: Runtime) -> engine.PlanSource:
    """The kept plan catalogue, read again when client rows name a plan it lacks or name one
    otherwise (a rename). A plan still missing after that is not looked for again for a
    minute, so a plan WispHub does not list costs one catalogue read a minute, not one per job.
    """

    def catalogue(rows: Sequence[Row]) -> list[Plan]:
        plans = current_plans(redis, rt, refresh=False)
        known = {plan.id: plan.nombre for plan in plans}
        stale = sorted(
            {
                plan_id
                for row in rows
                if isinstance(shown := row.get("plan_internet"), dict)
                and (plan_id := as_id(shown.get("id"))) is not None
                and known.get(plan_id) != shown.get("nombre")
            }
        )
        if any(store.may_look_for_plan(redis, plan_id) for plan_id in stale):
            plans = current_plans(redis, rt, refresh=True)
        return plans

    return catalogue
