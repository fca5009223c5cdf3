"""`/api/v1`: manual resync, plan preview, temporary overrides, full reconcile, job status,
the failures list and pausing writes, behind `API_TOKEN`."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request

from service.auth import require_api_token
from service.bodies import json_body
from service.context import Context, context
from service.errors import error_response
from service.payloads import (
    PayloadError,
    job_ids,
    parse_id,
    parse_job_id,
    parse_limit,
    pause_reason,
)
from worker.clients.wisphub import WispHubClient
from worker.core.client_overrides import OverrideError, parse_request
from worker.core.desired import REMOVED, Row, as_id
from worker.core.errors import ConfigError, SyncError, TransientError
from worker.core.overrides import load_overrides
from worker.core.plans import Plan, policy_state, resolved
from worker.core.preview import side_by_side
from worker.core.report import merged
from worker.core.rules import MappingRules
from worker.queue import client_overrides, history, pause, runs, store
from worker.queue.address_book import RedisAddressBook
from worker.queue.failures import (
    dismiss_failures,
    failures,
    recently_cleared,
    requeue_failures,
)
from worker.queue.queueing import Queued, describe, enqueue_plan_sync, enqueue_reconcile
from worker.sync import engine
from worker.sync.targets import (
    SelectedClients,
    Shaper,
    connected,
    each_target,
    reasons,
    unless_all_failed,
)
from worker.targets import Target

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")


@blueprint.before_request
def _authenticate() -> None:
    require_api_token(context().service.api_token)


@blueprint.post("/clients/<raw_id>/sync")
def sync_client(raw_id: str) -> tuple[Response, int]:
    """Queue a resync of one client (coalesced with a waiting one)."""
    [queued] = context().request_syncs([parse_id(raw_id)], "api")
    return jsonify({"job_id": queued.job_id, "coalesced": queued.coalesced}), 202


@blueprint.post("/clients/<raw_id>/override")
def set_override(raw_id: str) -> Response | tuple[Response, int]:
    """Override what WispHub says for a client until a time (`worker.core.client_overrides`),
    and queue its sync. 404 when WispHub has no such client, 409 when it has cancelled it."""
    id_servicio = parse_id(raw_id)
    ctx = context()
    body = json_body()
    wisphub = WispHubClient(ctx.sync.wisphub)
    try:
        with closing(wisphub):
            # the body is checked first (a bad one is a 400 even with WispHub down); the plan
            # catalogue, the one the service keeps, only for an override naming a policy
            wanted = isinstance(body, dict) and "policy" in body
            policies = _known_policies(ctx, wisphub) if wanted else frozenset()
            try:
                override = parse_request(
                    body,
                    id_servicio,
                    now=client_overrides.clock(ctx.redis),
                    set_by="api",
                    policies=policies,
                    max_days=ctx.service.override_max_days,
                )
            except OverrideError as exc:
                raise PayloadError(str(exc)) from None
            row = wisphub.get_client(id_servicio)
    except SyncError as exc:
        return upstream_error(exc)
    if row is None:
        abort(404, description=f"WispHub has no client {id_servicio}")
    if str(row.get("estado") or "").strip().lower() in REMOVED:
        return error_response(409, "cancelled", f"WispHub has cancelled client {id_servicio}")
    client_overrides.begin(ctx.queue, override, ctx.service)
    [queued] = ctx.request_syncs([id_servicio], "api")
    answer = {"job_id": queued.job_id, "coalesced": queued.coalesced}
    return jsonify({**answer, "override": override.to_dict()}), 202


def _known_policies(ctx: Context, wisphub: WispHubClient) -> frozenset[str]:
    """The policies an override may name: the plans' (of the catalogue the service keeps, or,
    before it has one, WispHub's) and the suspended clients'."""
    plans = store.saved_plans(ctx.redis)
    if plans is None:
        plans = plan_catalogue(wisphub)
    catalogue = resolved(plans, (), ctx.sync.rules)
    return frozenset(plan.policy_name for plan in catalogue) | {ctx.sync.rules.suspended_policy}


@blueprint.delete("/clients/<raw_id>/override")
def remove_override(raw_id: str) -> tuple[Response, int]:
    """End a client's override now and queue its sync (404 when it has none in force)."""
    id_servicio = parse_id(raw_id)
    queued = end_override(id_servicio, "api")
    if queued is None:
        abort(404, description=f"client {id_servicio} has no override in force")
    return jsonify({"job_id": queued.job_id, "coalesced": queued.coalesced}), 202


def end_override(id_servicio: int, by: str) -> Queued | None:
    """End the client's override in force (`by` api or status-page) and queue its sync, so
    that it returns to what WispHub says; `None` when it has none."""
    ctx = context()
    override = client_overrides.of_client(ctx.redis, id_servicio)
    if override is None or not client_overrides.end(
        ctx.redis, override, "removed", ctx.service, by=by
    ):
        return None
    [queued] = ctx.request_syncs([id_servicio], by)
    return queued


@blueprint.get("/overrides")
def overrides() -> Response:
    """The overrides in force, by client id."""
    found = client_overrides.in_force(context().redis)
    return jsonify({"overrides": [item.to_dict() for item in found.values()]})


@blueprint.get("/clients/<raw_id>/history")
def client_history(raw_id: str) -> Response:
    """What the service did for a client, newest first (`?limit=`, default 50), and what it
    last applied on each BQN (`applied`: on the first target of the list)."""
    id_servicio = parse_id(raw_id)
    ctx = context()
    applied = store.applied_by_target(
        ctx.redis, id_servicio, [target.name for target in ctx.sync.targets]
    )
    first = applied[ctx.sync.targets[0].name]
    return jsonify(
        {
            "id_servicio": id_servicio,
            "applied": None if first is None else first.to_dict(),
            "applied_on": {
                name: None if footprint is None else footprint.to_dict()
                for name, footprint in applied.items()
            },
            "events": history.read(ctx.redis, id_servicio, _limit(50, 1000)),
        }
    )


@blueprint.get("/reconciles")
def reconciles() -> Response:
    """The last full reconciles, newest first (`?limit=`, default 10)."""
    return jsonify({"reconciles": runs.reconciles(context().redis, _limit(10, 1000))})


@blueprint.get("/clients/<raw_id>/plan")
def client_plan(raw_id: str) -> Response | tuple[Response, int]:
    """What a sync of this client would change on each BQN, computed now, changing nothing:
    the dry-run report, and on each BQN (`bqn`) its entries at the client's keys as they are
    now and would be after. 404 when WispHub has no such client and no BQN holds anything of
    it to remove."""
    id_servicio = parse_id(raw_id)
    try:
        found = plan_now(id_servicio)
    except SyncError as exc:
        return upstream_error(exc)
    if found is None:
        abort(404, description=f"WispHub has no client {id_servicio}, and no BQN holds its entries")
    return jsonify(found.answer)


@dataclass(frozen=True)
class ClientPlan:
    """A client's plan computed now: the client as WispHub has it (`row`, `None`: no such
    client), its plan in the catalogue (`plan`), and what `GET /api/v1/clients/<id>/plan`
    answers (`answer`). The status page's client page shows the same."""

    row: Row | None
    plan: Plan | None
    answer: dict[str, Any]


def plan_now(id_servicio: int) -> ClientPlan | None:
    """What a sync of the client would change on each BQN, read now, writing nothing; `None`
    when WispHub has no such client and no BQN holds anything of it. `SyncError` when WispHub,
    or every BQN, could not be read (the BQNs not reached are listed in `unreached`)."""
    ctx = context()
    wisphub = WispHubClient(ctx.sync.wisphub)
    with closing(wisphub), connected(ctx.sync.targets) as shapers:
        plans = plan_catalogue(wisphub)
        rows = {id_servicio: wisphub.get_client(id_servicio)}
        rules = ctx.rules()

        def preview(shaper: Shaper) -> engine.ClientSync:
            keys = store.target_keys(shaper.name)
            return engine.sync_client(
                id_servicio,
                SelectedClients(wisphub, shaper.selector, rows=rows),
                shaper.bqn,
                rules,
                lambda _rows: plans,
                previous=store.last_applied(ctx.redis, id_servicio, keys),
                book=RedisAddressBook(ctx.redis, "plan-preview", keys),
                dry_run=True,
            )

        found, errors = unless_all_failed(*each_target(shapers, preview))
    row = rows[id_servicio]
    reports = {name: sync.report for name, sync in found.items()}
    if not errors and engine.no_such_client(row, reports.values()):
        return None
    answer = merged(reports, clients=1).to_dict()
    answer["in_wisphub"] = row is not None
    answer["bqn"] = {
        name: side_by_side(
            sync.held.subscribers, sync.held.groups, sync.held.policies, sync.report.planned
        )
        for name, sync in found.items()
    }
    if errors:
        answer["unreached"] = reasons(errors)
    return ClientPlan(row, _plan_of(row, plans, ctx.sync.rules), answer)


def _plan_of(row: Row | None, plans: list[Plan], rules: MappingRules) -> Plan | None:
    """The client's plan, named as the sync names it."""
    plan = None if row is None else row.get("plan_internet")
    wanted = as_id(plan.get("id")) if isinstance(plan, dict) else None
    if row is None or wanted is None:
        return None
    return next((item for item in resolved(plans, [row], rules) if item.id == wanted), None)


@blueprint.get("/plans")
def plans() -> Response | tuple[Response, int]:
    """Every plan: WispHub's speeds, the speeds used and where they come from, and the state of
    its policy on each BQN (read now; `bqn`: the same on every one, or `differs`)."""
    ctx = context()
    wisphub = WispHubClient(ctx.sync.wisphub)
    try:
        with closing(wisphub):
            catalogue = resolved(plan_catalogue(wisphub), (), ctx.sync.rules)
        states = policy_states(catalogue, ctx.sync.targets)
    except SyncError as exc:
        return upstream_error(exc)
    return jsonify({"read_seconds_ago": _rounded(store.plans_age(ctx.redis)), **states})


def policy_states(catalogue: Sequence[Plan], targets: Sequence[Target]) -> dict[str, Any]:
    """Each plan of `catalogue` with the state of its policy on each BQN of `targets`, read
    now (`bqn`: the same on every one, or `differs`; `bqn_on`, with several BQNs, each one's),
    and the BQNs that could not be read (`unreached`); `SyncError` when none could. The status
    page shows the same."""
    with connected(targets) as shapers:
        held, errors = unless_all_failed(
            *each_target(
                shapers,
                lambda shaper: {policy.name: policy for policy in shaper.bqn.list_policies()},
            )
        )
    listing = []
    for plan in catalogue:
        on = {name: policy_state(plan, found.get(plan.policy_name)) for name, found in held.items()}
        same = set(on.values())
        entry = {**plan.to_dict(), "bqn": same.pop() if len(same) == 1 else "differs"}
        if len(targets) > 1:
            entry["bqn_on"] = on
        listing.append(entry)
    answer: dict[str, Any] = {"plans": listing}
    if errors:
        answer["unreached"] = reasons(errors)
    return answer


@blueprint.post("/plans/sync")
def sync_plans() -> tuple[Response, int]:
    """Queue a plan catalogue refresh that also puts the policies in place."""
    return jsonify({"job_id": enqueue_plan_sync(context().queue)}), 202


@blueprint.post("/reconcile")
def reconcile() -> tuple[Response, int]:
    """Queue a full reconcile of every target, or of one (`{"target": "core-a"}`);
    `{"dry_run": true}` only computes the plan, `{"force": true}` lets through the deletions
    the guard would hold back."""
    options = _options()
    flags = {name: options.get(name, False) for name in ("dry_run", "force")}
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise PayloadError(f'"{name}" must be true or false')
    ctx = context()
    target = options.get("target")
    names = [t.name for t in ctx.sync.targets]
    if target is not None and target not in names:
        raise PayloadError(f'"target" must be one of {", ".join(names)}, not {target!r}')
    job_id = enqueue_reconcile(
        ctx.queue, dry_run=flags["dry_run"], force=flags["force"], target=target
    )
    return jsonify({"job_id": job_id}), 202


@blueprint.get("/failures")
def list_failures() -> Response:
    """Failed jobs, newest first (`?limit=`, default 100): what each was for, client, error,
    attempts, last try; and the failures cleared lately (resolved or dismissed)."""
    ctx = context()
    count, views = failures(ctx.queue, _limit(100, 1000))
    return jsonify({"count": count, "failures": views, "cleared": recently_cleared(ctx.redis)})


@blueprint.post("/failures/requeue")
def requeue() -> tuple[Response, int]:
    """Try failed jobs again: `{"job_ids": [...]}`, or every failed job without a body."""
    ctx = context()
    queued, missing = requeue_failures(ctx.queue, job_ids(_options()), ctx.service)
    return jsonify({"requeued": queued, "not_failed": missing}), 202


@blueprint.post("/failures/dismiss")
def dismiss() -> Response:
    """Take failed jobs off the list without running them again: `{"job_ids": [...]}`, or
    every failed job without a body (or with `{}`)."""
    ctx = context()
    wanted = job_ids(_options())
    dismissed, missing = dismiss_failures(ctx.queue, wanted, "api", ctx.service.history)
    return jsonify({"dismissed": dismissed, "not_failed": missing})


@blueprint.get("/pause")
def writes() -> Response:
    """Whether writes to the BQNs are paused (since when, where from, why), and the jobs
    running and waiting."""
    return jsonify(pause.state(context().queue))


@blueprint.post("/pause")
def pause_writes() -> Response:
    """Pause every write to the BQNs, for their maintenance (`{"reason": "..."}` optional):
    jobs keep being queued and coalesced, none starts until `/resume`; those running finish
    (`running` says how many)."""
    ctx = context()
    pause.pause(ctx.redis, "api", pause_reason(_options().get("reason")))
    return jsonify(pause.state(ctx.queue))


@blueprint.post("/resume")
def resume_writes() -> Response:
    """Let the workers write again: the jobs queued meanwhile run."""
    ctx = context()
    pause.resume(ctx.redis, "api")
    return jsonify(pause.state(ctx.queue))


@blueprint.get("/jobs/<job_id>")
def job(job_id: str) -> Response:
    """A job's status and, when done, its report."""
    view = describe(context().redis, parse_job_id(job_id))
    if view is None:
        abort(404, description=f"no job {job_id!r} (unknown, or its result has expired)")
    return jsonify(view)


def plan_catalogue(wisphub: WispHubClient) -> list[Plan]:
    """The kept plan catalogue, or one read now when none is kept yet."""
    saved = store.saved_plans(context().redis)
    if saved is not None:
        return saved
    return engine.read_plans(wisphub, load_overrides(context().sync.plan_speeds_file))


def upstream_error(exc: SyncError) -> Response:
    """WispHub or the BQN failed while answering a request."""
    if isinstance(exc, TransientError):
        return error_response(503, "upstream_unavailable", str(exc))
    if isinstance(exc, ConfigError):
        return error_response(502, "upstream_misconfigured", str(exc))
    return error_response(502, "upstream_error", str(exc))


def _limit(default: int, most: int) -> int:
    """The `?limit=` query parameter, checked."""
    return parse_limit(request.args.get("limit"), default, most)


def _rounded(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds)


def _options() -> dict[str, Any]:
    """An optional JSON object body."""
    if not request.get_data(cache=True).strip():
        return {}
    body = json_body()
    if not isinstance(body, dict):
        raise PayloadError('the body must be a JSON object such as {"dry_run": true}')
    return body
