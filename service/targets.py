"""`/api/v1/targets`: the BQNs the service keeps, behind `API_TOKEN`: each one's selector, its
circuit breaker, its last reconcile and the failed jobs that still owe it work (never its
password), and where one of them differs from WispHub now.

The drift is read, never corrected: the poller corrects it (`worker.queue.passes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from typing import Any

from flask import Blueprint, Response, abort, jsonify
from redis import Redis
from rq import Queue
from rq.job import Job

from service.api import plan_catalogue, upstream_error
from service.auth import require_api_token
from service.context import context
from worker.clients.wisphub import WispHubClient
from worker.core.errors import SyncError
from worker.queue import breaker, fanout, runs, store
from worker.sync import engine
from worker.sync.targets import SelectedClients, connected
from worker.targets import Target

blueprint = Blueprint("targets", __name__, url_prefix="/api/v1")

# How many items of each drift list an answer shows.
SHOWN = 10
# Failed jobs read from Redis per round trip.
CHUNK = 500


@blueprint.before_request
def _authenticate() -> None:
    require_api_token(context().service.api_token)


@blueprint.get("/targets")
def listing() -> Response:
    """Every target: name, url, selector, breaker, last reconcile, and how many failed jobs
    still owe it work."""
    ctx = context()
    owed = failures_by_target(ctx.queue, [target.name for target in ctx.sync.targets])
    views = described(ctx.redis, ctx.sync.targets, ctx.service.history.reconcile_reports)
    return jsonify({"targets": [{**view, "failures": owed[view["name"]]} for view in views]})


@blueprint.get("/targets/<name>/drift")
def drift(name: str) -> Response:
    """Where the target's BQN differs from a complete WispHub pass, read now: how many
    clients, clients gone, addresses and policies, and the first few of each."""
    ctx = context()
    target = next((target for target in ctx.sync.targets if target.name == name), None)
    if target is None:
        abort(404, description=f"no target named {name!r}")
    wisphub = WispHubClient(ctx.sync.wisphub)
    try:
        with closing(wisphub), connected([target]) as [shaper]:
            plans = plan_catalogue(wisphub)
            rows = SelectedClients(wisphub, shaper.selector).list_clients()
            found = engine.drift(shaper.bqn, ctx.rules(), plans, rows)
    except SyncError as exc:
        return upstream_error(exc)
    lists: dict[str, list[Any]] = {
        "clients": list(found.clients),
        "gone": list(found.gone),
        "addresses": list(found.addresses),
        "policies": [op.to_dict() for op in found.policies],
    }
    return jsonify(
        {
            "target": name,
            "wisphub_clients": len(rows),
            "differ": sum(len(items) for items in lists.values()),
            "counts": {kind: len(items) for kind, items in lists.items()},
            **{kind: items[:SHOWN] for kind, items in lists.items()},
        }
    )


def described(redis: Redis, targets: Sequence[Target], reconciles: int) -> list[dict[str, Any]]:
    """Each target as the API and the status page show it: `Target.describe()`, its breaker,
    and its outcome in the newest of the last `reconciles` reconciles that worked on it."""
    entries = runs.reconciles(redis, reconciles)
    return [
        {
            **target.describe(),
            "breaker": breaker.state(redis, store.target_keys(target.name)),
            "last_reconcile": last_reconcile(entries, target.name),
        }
        for target in targets
    ]


def last_reconcile(entries: Sequence[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """What the newest of `entries` (newest first) that worked on target `name` did there:
    when, whether it went through, and its counts or its error."""
    for entry in entries:
        outcome = (entry.get("targets") or {}).get(name)
        if outcome is None:
            continue
        found = {"job_id": entry["job_id"], "ended_at": entry["ended_at"], "ok": outcome["ok"]}
        if "error" in outcome:
            return {**found, "error": outcome["error"]}
        return {**found, "counts": {k: v for k, v in outcome.items() if k != "ok"}}
    return None


def failures_by_target(queue: Queue, names: Sequence[str]) -> dict[str, int]:
    """How many failed jobs still owe each of the targets `names` their work."""
    counts = dict.fromkeys(names, 0)
    job_ids = queue.failed_job_registry.get_job_ids()
    for start in range(0, len(job_ids), CHUNK):
        for job in Job.fetch_many(job_ids[start : start + CHUNK], connection=queue.connection):
            if job is not None:
                for name in fanout.targets_owed(job, names):
                    counts[name] += 1
    return counts
