"""BQN REST client: list, create (POST), modify (PUT) and delete subscribers and rate policies.

Follows docs/bqn-api.md: HTTP Basic over one keep-alive session, TLS verification off by default
(self-signed) with an optional CA bundle and a relaxed cipher list, exactly one
`Content-Type: application/json; charset=utf-8`, raw UTF-8 bodies, every path id
percent-encoded. POST replaces a whole entry, so it is used to create only; PUT sends the
managed fields only and falls back to POST when the entry is gone.
"""

from __future__ import annotations

import json
import logging
import ssl
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from requests.adapters import HTTPAdapter

from worker.clients import http
from worker.clients.connection import Connection, RequestHook, unobserved
from worker.core import phrases
from worker.core.addresses import normalise_key
from worker.core.errors import ApiError, ConfigError
from worker.core.model import Group, Policy, Subscriber

log = logging.getLogger(__name__)

SERVICE = "BQN"
AUTH_HINT = phrases.BQN_REFUSED
SUBSCRIBERS = "/subscribers"
POLICIES = "/policies/rate"
GROUPS = "/subscriberGroups"
COLLECTIONS = (SUBSCRIBERS, POLICIES, GROUPS)


class BqnTlsAdapter(HTTPAdapter):
    """An adapter whose TLS context uses the BQN cipher list and optional hostname checking."""

    def __init__(self, *, ciphers: str | None, check_hostname: bool, **kwargs: Any) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        # A certificate in BQN_CA_BUNDLE is trusted by itself, not only as a chain's root, so
        # the BQN's own certificate can be pinned (the default from Python 3.13 on).
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        if ciphers:
            context.set_ciphers(ciphers)
        self.pool_extras: dict[str, Any] = {"ssl_context": context}
        if not check_hostname:
            # The BQN's certificate rarely names its management IP; a CA bundle still
            # authenticates the chain.
            self.pool_extras["assert_hostname"] = False
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Build the pool manager with the BQN TLS settings."""
        super().init_poolmanager(*args, **kwargs, **self.pool_extras)


class BqnClient:
    """Talks to one BQN's REST API."""

    def __init__(self, settings: Connection, observe: RequestHook = unobserved) -> None:
        self.settings = settings
        self.observe = observe
        adapter = BqnTlsAdapter(
            ciphers=settings.ciphers,
            check_hostname=settings.check_hostname,
            pool_connections=1,
            pool_maxsize=settings.concurrency,
            max_retries=http.retry_policy(settings.retries, settings.backoff),
        )
        self.session = http.make_session(adapter, settings.url)
        # UTF-8, as curl on a UTF-8 terminal sends it (requests would use latin-1 for str).
        self.session.auth = (settings.user.encode(), settings.secret.encode())
        self.session.headers.update({"Accept": "application/json"})
        self.verify: bool | str = settings.ca_bundle or False
        if not settings.ca_bundle:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    @property
    def concurrency(self) -> int:
        """How many writes may be in flight at once (the connection pool is this big)."""
        return self.settings.concurrency

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()

    # Reads -----------------------------------------------------------------------------

    def list_subscribers(self) -> list[Subscriber]:
        """Every subscriber the BQN holds (including `rules` ones), keyed by canonical IP."""
        return [_subscriber(item) for item in self._items(SUBSCRIBERS) if "subscriberIp" in item]

    def get_subscriber(self, ip: str) -> Subscriber | None:
        """The subscriber at `ip`, or `None` when the BQN has none."""
        item = self._get_one(f"{SUBSCRIBERS}/{_encode(ip)}")
        if item is None:
            return None
        return _subscriber({"subscriberIp": ip, **item})

    def get_policy(self, name: str) -> Policy | None:
        """The rate policy `name`, or `None` when the BQN has none."""
        item = self._get_one(f"{POLICIES}/{_encode(name)}")
        return None if item is None else _policy({"policyName": name, **item})

    def list_policies(self) -> list[Policy]:
        """Every rate policy, with the fields the sync manages."""
        return [_policy(item) for item in self._items(POLICIES) if "policyName" in item]

    def list_groups(self) -> list[Group]:
        """Every subscriber group (the sync's own and others); none on a BQN without groups."""
        items = self._items(GROUPS, optional=True)
        return [_group(item) for item in items if "subscriberGroupName" in item]

    def get_group(self, name: str) -> Group | None:
        """The subscriber group `name`, or `None` when the BQN has none."""
        item = self._get_one(f"{GROUPS}/{_encode(name)}")
        return None if item is None else _group({"subscriberGroupName": name, **item})

    # Writes ----------------------------------------------------------------------------

    def create_subscriber(self, ip: str, fields: dict[str, Any]) -> None:
        """Create (POST) the subscriber at `ip`; an existing entry would be replaced whole."""
        self._write("POST", f"{SUBSCRIBERS}/{_encode(ip)}", fields)

    def update_subscriber(self, ip: str, fields: dict[str, Any]) -> None:
        """Change only `fields` (PUT); create the entry with them if it has disappeared."""
        self._put_or_create(f"{SUBSCRIBERS}/{_encode(ip)}", fields)

    def delete_subscriber(self, ip: str) -> None:
        """Delete the subscriber at `ip`; already gone (404) counts as done."""
        self._write("DELETE", f"{SUBSCRIBERS}/{_encode(ip)}", None)

    def create_policy(self, name: str, fields: dict[str, Any]) -> None:
        """Create (POST) the rate policy `name`."""
        self._write("POST", f"{POLICIES}/{_encode(name)}", fields)

    def update_policy(self, name: str, fields: dict[str, Any]) -> None:
        """Change only `fields` of the rate policy (PUT); create it if it has disappeared."""
        self._put_or_create(f"{POLICIES}/{_encode(name)}", fields)

    def create_group(self, name: str, fields: dict[str, Any]) -> None:
        """Create (POST) the subscriber group `name` (needs BQN R4.22+ for `policyRate`)."""
        self._write("POST", f"{GROUPS}/{_encode(name)}", fields)

    def update_group(self, name: str, fields: dict[str, Any]) -> None:
        """Change only `fields` of the group (PUT); create it if it has disappeared."""
        self._put_or_create(f"{GROUPS}/{_encode(name)}", fields)

    def delete_group(self, name: str) -> None:
        """Delete the group `name`; already gone (404) counts as done."""
        self._write("DELETE", f"{GROUPS}/{_encode(name)}", None)

    # Plumbing --------------------------------------------------------------------------

    def _put_or_create(self, path: str, fields: dict[str, Any]) -> None:
        if self._write("PUT", path, fields).status_code == 404:
            log.info("BQN PUT %s found nothing; creating it", path)
            self._write("POST", path, fields)

    def _items(self, path: str, *, optional: bool = False) -> list[dict[str, Any]]:
        """A collection's items; with `optional`, none when the BQN has no such collection."""
        response = self._send("GET", path)
        if response.status_code == 404 and optional:
            return []
        if response.status_code == 404:
            raise ConfigError(phrases.NO_PATH.format(service=SERVICE, path=path))
        body = http.json_body(response, SERVICE)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ApiError(phrases.NO_ITEMS.format(service=SERVICE, path=path))
        return [item for item in items if isinstance(item, dict)]

    def _get_one(self, path: str) -> dict[str, Any] | None:
        response = self._send("GET", path)
        if response.status_code == 404:
            return None
        body = http.json_body(response, SERVICE)
        if not isinstance(body, dict):
            raise ApiError(phrases.NOT_AN_OBJECT.format(service=SERVICE, path=path))
        return body

    def _write(self, method: str, path: str, fields: dict[str, Any] | None) -> requests.Response:
        if fields is None:
            return self._send(method, path)
        body = json.dumps(fields, ensure_ascii=False).encode("utf-8")
        response = self._send(
            method,
            path,
            data=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        if response.status_code == 404 and method == "POST":
            raise ApiError(phrases.POST_NOT_FOUND.format(service=SERVICE, path=path))
        return response

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return http.send(
            self.session,
            SERVICE,
            method,
            self.settings.url + path,
            timeout=self.settings.timeout,
            verify=self.verify,
            auth_hint=AUTH_HINT,
            operation=http.operation(method, path, COLLECTIONS),
            observe=self.observe,
            **kwargs,
        )


def _encode(path_id: str) -> str:
    """Percent-encode a path id with no safe characters (`/` and IPv6 `:` included)."""
    return quote(path_id, safe="")


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _subscriber(item: dict[str, Any]) -> Subscriber:
    return Subscriber(
        ip=normalise_key(str(item["subscriberIp"])),
        subscriber_id=_text(item.get("subscriberId")),
        policy_rate=_text(item.get("policyRate")),
        assigned_by=_text(item.get("policyAssignedBy")) or None,
    )


def _policy(item: dict[str, Any]) -> Policy:
    fields = {key: value for key, value in item.items() if key != "policyName"}
    return Policy(name=str(item["policyName"]), fields=fields)


def _group(item: dict[str, Any]) -> Group:
    return Group(
        name=str(item["subscriberGroupName"]),
        members=tuple(normalise_key(str(m)) for m in item.get("subscriberMembers") or ()),
        ranges=tuple(str(r) for r in item.get("subscriberRanges") or ()),
        policy_rate=_text(item.get("policyRate")),
    )
