"""WispHub REST API simulator (read paths), quirks included.

Implements what docs/wisphub-api.md describes: `Api-Key` auth with DRF-style 401/403,
DRF limit/offset paging whose `next`/`previous` links always say `http://`, a server-side
page cap, filters that work and filters that are silently ignored (returning every row),
a detail view with a different serializer, plan list/detail endpoints, HTML 404/500
pages, Django's APPEND_SLASH 301 redirect and a PATCH that answers 200 but persists
nothing.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from flask import Blueprint, Flask, Response, abort, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from sandbox import faults as fault_hooks
from sandbox.control import control_blueprint, control_error, json_body
from sandbox.faults import Faults, Stats
from sandbox.web import html_page, json_response, require, same_secret

DATE_FORMAT = "%d/%m/%Y %H:%M:%S"
ESTADOS = {"1": "Activo", "2": "Suspendido", "3": "Cancelado", "4": "Gratis"}
DEFAULT_LIMIT = 20

MISSING_CREDENTIALS = "Las credenciales de autenticación no se proveyeron."
INVALID_KEY = "Api-Key inválida."
NOT_AN_INTEGER = "Introduzca un número entero."

# The list serializer has these; the detail serializer leaves them out.
LIST_ONLY_FIELDS = ("saldo", "estado_facturas", "fecha_corte", "telefono")
# Plan detail endpoint per `tipo` (compared case-insensitively); PCQ plans have none.
PLAN_DETAIL_KINDS = {"pppoe": "pppoe", "simple queue": "queue", "queue": "queue"}


def now_stamp() -> str:
    """The current local time in WispHub's `DD/MM/YYYY HH:MM:SS` format."""
    return datetime.now().strftime(DATE_FORMAT)


@dataclass
class WispHubState:
    """The simulated tenant. Guard direct access to `clients`/`plans` with `lock`."""

    api_key: str = "demo-key"
    max_limit: int = 1000
    # Filters this tenant silently ignores on top of the usual ones (the set varies by tenant
    # and version), e.g. {"id_servicio"} to see how a client copes with an unnarrowed answer.
    ignored_filters: set[str] = field(default_factory=set)
    clients: dict[int, dict[str, Any]] = field(default_factory=dict)
    plans: dict[int, dict[str, Any]] = field(default_factory=dict)
    faults: Faults = field(default_factory=lambda: Faults(html_errors=True))
    stats: Stats = field(default_factory=Stats)
    # Called with its `offset` before a client list page is read: a test changes the tenant
    # between pages (a row deleted while a pass pages through the list, say).
    before_page: Callable[[int], None] | None = field(default=None, repr=False)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def upsert_client(self, row: dict[str, Any]) -> bool:
        """Store a full client row keyed by its `id_servicio`; True if it is new.

        A replaced row keeps its place in the list order.
        """
        id_servicio = row["id_servicio"]
        if isinstance(id_servicio, bool) or not isinstance(id_servicio, int):
            raise ValueError("id_servicio must be an integer")
        with self.lock:
            created = id_servicio not in self.clients
            self.clients[id_servicio] = copy.deepcopy(row)
            return created

    def update_client(self, id_servicio: int, **fields: Any) -> dict[str, Any]:
        """Change some fields of a client and bump `ultimo_cambio` (unless given).

        `plan_internet` may be a plan id. Raises KeyError if the client is unknown.
        Returns a copy of the updated row.
        """
        with self.lock:
            row = self.clients[id_servicio]
            plan = fields.get("plan_internet")
            if isinstance(plan, int) and not isinstance(plan, bool):
                fields["plan_internet"] = {"id": plan, "nombre": self.plans[plan]["nombre"]}
            fields.pop("id_servicio", None)
            row.update(copy.deepcopy(fields))
            if "ultimo_cambio" not in fields:
                row["ultimo_cambio"] = now_stamp()
            return copy.deepcopy(row)

    def remove_client(self, id_servicio: int) -> bool:
        """Delete a client; False if it did not exist."""
        with self.lock:
            return self.clients.pop(id_servicio, None) is not None

    def get_client(self, id_servicio: int) -> dict[str, Any] | None:
        """A copy of the stored row, or None."""
        with self.lock:
            row = self.clients.get(id_servicio)
            return copy.deepcopy(row) if row is not None else None

    def set_plan(
        self,
        *,
        id: int,
        nombre: str,
        tipo: str,
        bajada: str,
        subida: str,
        precio: str,
        descripcion: str = "",
        perfil: str | None = None,
    ) -> None:
        """Create or replace an internet plan. `perfil` is shown on PPPoE details only."""
        plan = {
            "id": id,
            "nombre": nombre,
            "tipo": tipo,
            "bajada": bajada,
            "subida": subida,
            "precio": precio,
            "descripcion": descripcion,
            "perfil": perfil if perfil is not None else nombre,
        }
        with self.lock:
            self.plans[id] = plan


def create_app(state: WispHubState) -> Flask:
    """The WispHub API (`/api/...`) plus the `/_sim/` control endpoints."""
    app = Flask("sandbox.wisphub")
    fault_hooks.install(app, state.faults, state.stats)

    @app.before_request
    def _append_slash() -> Response | None:
        redirect_to = request.routing_exception
        if isinstance(redirect_to, RequestRedirect):
            target = urlsplit(redirect_to.new_url)
            location = target.path + (f"?{target.query}" if target.query else "")
            return Response(status=301, headers={"Location": location})
        return None

    require(app, lambda: _check_api_key(state.api_key), routed_only=True)

    @app.errorhandler(404)
    def _not_found(_: HTTPException) -> Response:
        return html_page(404)

    @app.errorhandler(405)
    def _bad_method(_: HTTPException) -> Response:
        return json_response({"detail": f'Método "{request.method}" no permitido.'}, 405)

    @app.errorhandler(500)
    def _server_error(_: HTTPException) -> Response:
        return html_page(500)

    @app.get("/api/clientes/")
    def list_clients() -> Response:
        if state.before_page is not None:
            state.before_page(_positive_int(request.args.get("offset")) or 0)
        with state.lock:
            match = _client_filter(request.args, state.ignored_filters)
            candidates = _narrowed(request.args, state.ignored_filters, state.clients)
            rows = state.faults.visible([r for r in candidates if match(r)])
            return _page(rows, state.max_limit, lambda r: _list_row(r, state.plans))

    @app.get("/api/clientes/<int:id_servicio>/")
    def client_detail(id_servicio: int) -> Response:
        with state.lock:
            row = state.clients.get(id_servicio)
            if row is None:
                abort(404)
            return json_response(_detail_row(row, state.plans))

    @app.patch("/api/clientes/<int:id_servicio>/")
    def patch_client(id_servicio: int) -> Response:
        """Answers 200 with the change applied, but persists nothing (a known WispHub bug)."""
        changes = request.get_json(silent=True)
        with state.lock:
            row = state.clients.get(id_servicio)
            if row is None:
                abort(404)
            shown = {**row, **changes} if isinstance(changes, dict) else row
            return json_response(_detail_row(shown, state.plans))

    @app.get("/api/plan-internet/")
    def list_plans() -> Response:
        with state.lock:
            plans = list(state.plans.values())
        return _page(plans, state.max_limit, _plan_summary)

    @app.get("/api/plan-internet/<any(queue, pppoe):kind>/<int:plan_id>/")
    def plan_detail(kind: str, plan_id: int) -> Response:
        with state.lock:
            plan = state.plans.get(plan_id)
        if plan is None or PLAN_DETAIL_KINDS.get(plan["tipo"].casefold()) != kind:
            abort(404)
        fields = ["nombre", "precio", "bajada", "subida", "descripcion"]
        if kind == "pppoe":
            fields.append("perfil")
        return json_response({name: plan[name] for name in fields})

    app.register_blueprint(_control(state))
    return app


def _check_api_key(api_key: str) -> Response | None:
    header = request.headers.get("Authorization")
    if not header:
        return json_response({"detail": MISSING_CREDENTIALS}, 403)
    scheme, _, key = header.partition(" ")
    if scheme != "Api-Key" or not same_secret(key.strip(), api_key):
        return json_response({"detail": INVALID_KEY}, 401, {"WWW-Authenticate": "Api-Key"})
    return None


Row = dict[str, Any]


def _client_filter(args: Any, ignored: set[str]) -> Callable[[Row], bool]:
    """A predicate for the query's working filters; unknown parameters are ignored.

    Like django-filter: the last value of a repeated parameter counts, an empty value
    disables the filter, and a non-numeric value for a numeric filter is a 400.
    """
    tests: list[Callable[[Row], bool]] = []
    for name in args:
        value = args.getlist(name)[-1]
        build = _FILTERS.get(name)
        if build is not None and value != "" and name not in ignored:
            tests.append(build(name, value))
    return lambda row: all(test(row) for test in tests)


def _narrowed(args: Any, ignored: set[str], clients: dict[int, Row]) -> Iterable[Row]:
    """The rows a working `id_servicio` filter can match: one looked up, not every row
    scanned (a one-client read must cost the simulator little, or it is what a benchmark of
    thousands of them measures); every row otherwise."""
    value = args.getlist("id_servicio")[-1] if "id_servicio" in args else ""
    if value == "" or "id_servicio" in ignored:
        return clients.values()
    row = clients.get(_integer("id_servicio", value))
    return [] if row is None else [row]


def _integer(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        abort(json_response({name: [NOT_AN_INTEGER]}, 400))


def _exact_int(name: str, value: str) -> Callable[[Row], bool]:
    wanted = _integer(name, value)
    return lambda row: row.get(name) == wanted


def _related_id(name: str, value: str) -> Callable[[Row], bool]:
    wanted = _integer(name, value)
    return lambda row: (row.get(name) or {}).get("id") == wanted


def _exact(name: str, value: str) -> Callable[[Row], bool]:
    return lambda row: row.get(name) == value


def _icontains(name: str, value: str) -> Callable[[Row], bool]:
    wanted = value.casefold()
    return lambda row: wanted in str(row.get(name) or "").casefold()


def _contains(name: str, value: str) -> Callable[[Row], bool]:
    field_name = name.removesuffix("__contains")
    return lambda row: value in str(row.get(field_name) or "")


def _estado(_: str, value: str) -> Callable[[Row], bool]:
    wanted = ESTADOS.get(value)  # `estado=Activo` matches nothing: only codes work
    return lambda row: wanted is not None and row.get("estado") == wanted


_FILTERS: dict[str, Callable[[str, str], Callable[[Row], bool]]] = {
    "id_servicio": _exact_int,
    "usuario": _exact,
    "cedula": _exact,
    "ciudad": _exact,
    "localidad": _exact,
    "estado": _estado,
    "plan_internet": _related_id,
    "router": _related_id,
    "tecnico": _related_id,
    "nombre": _icontains,
    "telefono": _icontains,
    "nombre__contains": _contains,
    "usuario__contains": _contains,
}


def _page(items: list[Any], max_limit: int, render: Callable[[Any], Any]) -> Response:
    """DRF LimitOffsetPagination, `next`/`previous` rebuilt with the `http://` quirk."""
    limit = _positive_int(request.args.get("limit"), strict=True, cutoff=max_limit)
    limit = limit if limit is not None else DEFAULT_LIMIT
    offset = _positive_int(request.args.get("offset")) or 0
    count = len(items)
    next_url = None
    if offset + limit < count:
        next_url = _page_url(limit=limit, offset=offset + limit)
    previous_url = None
    if offset > 0:
        previous_url = _page_url(limit=limit, offset=max(offset - limit, 0) or None)
    body = {
        "count": count,
        "next": next_url,
        "previous": previous_url,
        "results": [render(item) for item in items[offset : offset + limit]],
    }
    return json_response(body)


def _positive_int(text: str | None, strict: bool = False, cutoff: int | None = None) -> int | None:
    if text is None:
        return None
    try:
        number = int(text)
    except ValueError:
        return None
    if number < 0 or (strict and number == 0):
        return None
    return min(number, cutoff) if cutoff else number


def _page_url(limit: int, offset: int | None) -> str:
    """This URL with `limit`/`offset` replaced (offset None: removed), keys sorted like
    DRF's replace_query_param, and always `http://` as observed on real tenants."""
    query = dict(parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True))
    query["limit"] = str(limit)
    query.pop("offset", None)
    if offset is not None:
        query["offset"] = str(offset)
    return f"http://{request.host}{quote(request.path)}?{urlencode(sorted(query.items()))}"


def _list_row(row: Row, plans: dict[int, dict[str, Any]]) -> Row:
    """The row as the list shows it, with its plan's current name (rendered at once, under
    the state lock, so a shallow copy is enough)."""
    plan_ref = row.get("plan_internet")
    if isinstance(plan_ref, dict) and plan_ref.get("id") in plans:
        return {**row, "plan_internet": {**plan_ref, "nombre": plans[plan_ref["id"]]["nombre"]}}
    return row


def _detail_row(row: Row, plans: dict[int, dict[str, Any]]) -> Row:
    shown = _list_row(row, plans)
    shown["nombre"] = None
    shown["usuario"] = None
    for name in LIST_ONLY_FIELDS:
        shown.pop(name, None)
    shown["facturas_pagadas"] = row["id_servicio"] % 24
    return shown


def _plan_summary(plan: dict[str, Any]) -> dict[str, Any]:
    return {"id": plan["id"], "nombre": plan["nombre"], "tipo": plan["tipo"]}


def _control(state: WispHubState) -> Blueprint:
    blueprint = control_blueprint(state.faults, state.stats)

    @blueprint.get("/clients/<int:id_servicio>")
    def get_client(id_servicio: int) -> Response:
        row = state.get_client(id_servicio)
        if row is None:
            return control_error(404, "no such client")
        return json_response(row)

    @blueprint.put("/clients/<int:id_servicio>")
    def put_client(id_servicio: int) -> Response:
        row = {**json_body(), "id_servicio": id_servicio}
        created = state.upsert_client(row)
        return json_response(state.get_client(id_servicio), 201 if created else 200)

    @blueprint.patch("/clients/<int:id_servicio>")
    def patch_client(id_servicio: int) -> Response:
        try:
            return json_response(state.update_client(id_servicio, **json_body()))
        except KeyError:
            return control_error(404, "no such client or plan")

    @blueprint.delete("/clients/<int:id_servicio>")
    def delete_client(id_servicio: int) -> Response:
        if not state.remove_client(id_servicio):
            return control_error(404, "no such client")
        return Response(status=204)

    @blueprint.put("/plans/<int:plan_id>")
    def put_plan(plan_id: int) -> Response:
        body = json_body()
        try:
            state.set_plan(id=plan_id, **{k: v for k, v in body.items() if k != "id"})
        except TypeError as exc:
            return control_error(400, str(exc))
        with state.lock:
            return json_response(state.plans[plan_id])

    return blueprint
