"""WispHub REST client: complete client-list passes and verified single-client reads.

Follows docs/wisphub-api.md: page URLs are built here (never from `next`, which comes back as
http://), a pass stops at `count`, rows are deduplicated by `id_servicio`, and a pass is
returned only when it is complete. Single reads use the list filter and check it narrowed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from worker import defaults
from worker.clients import http
from worker.clients.connection import Connection, RequestHook, unobserved
from worker.clients.parallel import run_all
from worker.core import phrases
from worker.core.desired import as_id, client_id, slim
from worker.core.errors import ApiError, ConfigError, FilterIgnored, IncompletePass
from worker.core.plans import detail_kinds
from worker.core.progress import Progress, Ticker, silent

log = logging.getLogger(__name__)

SERVICE = "WispHub"
AUTH_HINT = phrases.WISPHUB_REFUSED
CLIENTS_PATH = "/api/clientes/"
PLANS_PATH = "/api/plan-internet/"

Row = dict[str, Any]


class WispHubClient:
    """Reads WispHub over one keep-alive session."""

    def __init__(self, settings: Connection, observe: RequestHook = unobserved) -> None:
        self.settings = settings
        self.observe = observe
        adapter = HTTPAdapter(
            pool_connections=1,
            pool_maxsize=settings.concurrency,
            max_retries=http.retry_policy(settings.retries, settings.backoff),
        )
        self.session = http.make_session(adapter, settings.url)
        self.session.headers.update(
            {"Authorization": f"Api-Key {settings.secret}", "Accept": "application/json"}
        )
        # With no bundle of our own, REQUESTS_CA_BUNDLE's, else the system's (`make_session`).
        self.verify: bool | str = settings.ca_bundle or self.session.verify

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()

    def list_clients(
        self, progress: Progress = silent, keep: Callable[[Row], Row] = slim
    ) -> list[Row]:
        """Every client row, deduplicated by `id_servicio`, with only the fields the sync reads
        (`keep`; `ROW_FIELDS` by default: memory stays small at 100,000 clients); raises unless
        the pass is complete. `progress` hears of the rows read as pages arrive."""
        return self._complete_list(CLIENTS_PATH, client_id, "clients", progress, keep)

    def list_plans(self) -> list[Row]:
        """Every internet plan (`id`, `nombre`, `tipo`); raises unless the pass is complete."""
        return self._complete_list(PLANS_PATH, _plan_id, "plans")

    def get_client(self, id_servicio: int) -> Row | None:
        """The row of one client, or `None` when WispHub has no such client.

        Raises `FilterIgnored` when the answer is not narrowed to that client (WispHub silently
        ignores filters it does not know and then returns the whole list).
        """
        page = self._page(CLIENTS_PATH, {"id_servicio": id_servicio, "limit": 2, "offset": 0})
        count, results = page["count"], page["results"]
        if count == 0 and not results:
            return None
        if count == 1 and len(results) == 1 and client_id(results[0]) == id_servicio:
            return results[0]
        raise FilterIgnored(phrases.FILTER_IGNORED.format(id_servicio=id_servicio, count=count))

    def plan_detail(self, plan_id: int, tipo: str) -> Row | None:
        """A plan's detail (`bajada`, `subida`, ...) from the endpoint its `tipo` names, falling
        back to the other one; `None` for PCQ plans and plans with no detail."""
        for kind in detail_kinds(tipo):
            response = self._get(f"{PLANS_PATH}{kind}/{plan_id}/", {})
            if response.status_code == 404:
                continue
            body = http.json_body(response, SERVICE)
            if isinstance(body, dict):
                return body
        return None

    def _complete_list(
        self,
        path: str,
        key_of: Callable[[Row], int | None],
        what: str,
        progress: Progress = silent,
        keep: Callable[[Row], Row] = dict,
    ) -> list[Row]:
        for attempt in range(1, defaults.WISPHUB_PASS_ATTEMPTS + 1):
            rows, counts = self._one_pass(path, key_of, progress, keep)
            count = counts[-1]
            if len(rows) == count and len(set(counts)) == 1:
                log.debug("WispHub pass complete: %d %s", count, what)  # every poll reads one
                return rows
            log.warning(
                "WispHub pass %d read %d unique %s, count said %s (the list changed while paging)",
                attempt,
                len(rows),
                what,
                " then ".join(str(c) for c in sorted(set(counts), key=counts.index)),
            )
        raise IncompletePass(
            phrases.PASS_INCOMPLETE.format(
                what=what,
                attempts=defaults.WISPHUB_PASS_ATTEMPTS,
                rows=len(rows),
                count=counts[-1],
            )
        )

    def _one_pass(
        self,
        path: str,
        key_of: Callable[[Row], int | None],
        progress: Progress = silent,
        keep: Callable[[Row], Row] = dict,
    ) -> tuple[list[Row], list[int]]:
        """One limit/offset walk of a list: unique rows and the `count` each page said. The
        first page tells `count` and the page size the server allows; the other pages are then
        read with up to `WISPHUB_CONCURRENCY` requests in flight."""
        first = self._page(path, {"limit": self.settings.page_size, "offset": 0})
        count, pages = first["count"], [_kept(first["results"], keep)]
        counts = [count]
        step = len(first["results"])  # the server may cap `limit` below what was asked
        read = Ticker(progress, "clients read", count)
        read.tick(step)
        if step and step < count:

            def page_at(offset: int) -> dict[str, Any]:
                page = self._page(path, {"limit": step, "offset": offset})
                read.tick(len(page["results"]))
                return {"count": page["count"], "results": _kept(page["results"], keep)}

            rest = run_all(page_at, range(step, count, step), self.settings.concurrency)
            counts += [page["count"] for page in rest]
            pages += [page["results"] for page in rest]
        by_id: dict[int, Row] = {}
        without_id: list[Row] = []
        for row in (row for page in pages for row in page):
            key = key_of(row)
            if key is None:
                without_id.append(row)
            else:
                by_id[key] = row
        return [*by_id.values(), *without_id], counts

    def _page(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """One page of a list endpoint, checked for the DRF paging shape."""
        response = self._get(path, params)
        if response.status_code == 404 or "json" not in response.headers.get("Content-Type", ""):
            raise ConfigError(
                phrases.NOT_THE_API.format(
                    service=SERVICE,
                    code=response.status_code,
                    body=http.excerpt(response),
                    path=path,
                )
            )
        body = http.json_body(response, SERVICE)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("count"), int)
            or not isinstance(body.get("results"), list)
        ):
            raise ApiError(phrases.NO_COUNT.format(service=SERVICE))
        return body

    def _get(self, path: str, params: dict[str, Any]) -> requests.Response:
        return http.send(
            self.session,
            SERVICE,
            "GET",
            self.settings.url + path,
            params=params,
            timeout=self.settings.timeout,
            verify=self.verify,
            auth_hint=AUTH_HINT,
            operation=http.operation("GET", path, (CLIENTS_PATH, PLANS_PATH)),
            observe=self.observe,
        )


def _kept(rows: list[Any], keep: Callable[[Row], Row]) -> list[Any]:
    """Each row as `keep` makes it (anything that is not a row, as it is)."""
    return [keep(row) if isinstance(row, dict) else row for row in rows]


def _plan_id(row: Row) -> int | None:
    return as_id(row.get("id")) if isinstance(row, dict) else None
