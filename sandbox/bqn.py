"""Bequant BQN REST API (v1) simulator: subscribers, rate policies and subscriber groups.

Implements what docs/bqn-api.md describes, quirks included: HTTP Basic auth, POST as
create-or-FULL-replace (201/200) and PUT as partial update (404 when missing), strict
JSON bodies (exactly one `application/json` Content-Type, UTF-8, no unknown fields),
IPv4 or IPv6 /64 network addresses as subscriber keys, "undefined" placeholder policies
for names that subscribers or groups reference before they exist, static policies that
ignore writes, GET echoing defaults (`congestionMgmt`, `flowLimit`), subscribers whose
policy comes from the BQN's local rules, and the undeletable `all-subscribers` group.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, abort, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_options_header

from sandbox import faults as fault_hooks
from sandbox.control import control_blueprint, control_error, json_body
from sandbox.faults import Faults, Stats
from sandbox.web import json_response, require, same_secret, text_response

API = "/api/v1"
ALL_SUBSCRIBERS = "all-subscribers"
RATE_LIMITS = ("rateLimitDownlink", "rateLimitUplink")
MAX_SUBSCRIBER_GROUPS = 7

Record = dict[str, Any]
Check = Callable[[Any], str | None]  # returns what is wrong with a value, or None


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def _name(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "must be a non-empty string"


def _integer(minimum: int) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            return f"must be an integer >= {minimum}"
        return None

    return check


def _flow_limit(value: Any) -> str | None:
    return None if value is None else _integer(0)(value)


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be an object"


def _list_of(item: Check, limit: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, list):
            return "must be a list"
        if limit is not None and len(value) > limit:
            return f"accepts at most {limit} entries"
        for entry in value:
            problem = item(entry)
            if problem is not None:
                return f"entry {entry!r} {problem}"
        return None

    return check


def subscriber_ip(text: str) -> str | None:
    """The canonical form of a valid subscriber key (IPv4, or IPv6 /64 network), or None."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and int(address) & ((1 << 64) - 1):
        return None
    return str(address)


def _address(value: Any) -> str | None:
    if isinstance(value, str) and subscriber_ip(value) is not None:
        return None
    return "must be an IPv4 address or an IPv6 /64 network address"


def _cidr(value: Any) -> str | None:
    try:
        ipaddress.ip_network(value, strict=True)
    except (TypeError, ValueError):
        return "must be a CIDR network such as 10.0.0.0/24"
    return None


_RATE_LIMIT_FIELDS: dict[str, Check] = {
    "rate": _integer(-1),
    "burstRate": _integer(0),
    "burstThreshold": _integer(0),
    "burstDuration": _integer(0),
    "burstThresholdWindow": _integer(0),
    "congestionMgmt": _boolean,
}


def _rate_limit(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be an object"
    for key, item in value.items():
        check = _RATE_LIMIT_FIELDS.get(key)
        if check is None:
            return f"has unknown field {key!r}"
        problem = check(item)
        if problem is not None:
            return f"field {key!r} {problem}"
    return None


SUBSCRIBER_FIELDS: dict[str, Check] = {
    "subscriberIp": _string,
    "subscriberId": _string,
    "policyRate": _name,
    "subscriberGroups": _list_of(_name, MAX_SUBSCRIBER_GROUPS),
    "quota": _object,
    "callingStationId": _string,
    "nasIdentifier": _string,
    "nasIpAddress": _string,
    "nasPort": _integer(0),
    "userName": _string,
}
POLICY_FIELDS: dict[str, Check] = {
    "policyName": _string,
    "policyId": _string,
    "rateLimitDownlink": _rate_limit,
    "rateLimitUplink": _rate_limit,
    "flowLimit": _flow_limit,
}
GROUP_FIELDS: dict[str, Check] = {
    "subscriberGroupName": _string,
    "subscriberMembers": _list_of(_address),
    "subscriberRanges": _list_of(_cidr),
    "policyRate": _name,
    "subscriberGroupType": _name,
}
READ_ONLY_FIELDS = frozenset({"policyAssignedBy"})


def _all_subscribers_group() -> Record:
    return {
        "subscriberGroupName": ALL_SUBSCRIBERS,
        "subscriberGroupType": ALL_SUBSCRIBERS,
        "subscriberMembers": [],
        "subscriberRanges": ["0.0.0.0/0", "::/0"],
    }


@dataclass
class BqnState:
    """The simulated BQN. Guard direct access to the dicts with `lock`.

    `policies` holds static, REST-created and "undefined" placeholder policies (a
    placeholder is a record with only `policyName`); `static_policies` names the ones
    configured on the BQN itself.
    """

    user: str = "demo"
    password: str = "demo"
    subscribers: dict[str, Record] = field(default_factory=dict)
    policies: dict[str, Record] = field(default_factory=dict)
    groups: dict[str, Record] = field(
        default_factory=lambda: {ALL_SUBSCRIBERS: _all_subscribers_group()}
    )
    static_policies: set[str] = field(default_factory=set)
    # Older releases let an address be a member of few groups besides all-subscribers: a group
    # write that would put one in more answers 409 (None: no limit).
    groups_per_ip: int | None = None
    faults: Faults = field(default_factory=Faults)
    stats: Stats = field(default_factory=Stats)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def add_static_policy(self, policy: Record) -> None:
        """Install a policy configured on the BQN itself (REST writes to it are ignored)."""
        with self.lock:
            self.policies[policy["policyName"]] = copy.deepcopy(policy)
            self.static_policies.add(policy["policyName"])

    def add_rules_subscriber(
        self, ip: str, policy_rate: str, subscriber_id: str | None = None
    ) -> Record:
        """Add a subscriber the BQN detected in traffic and gave a policy by local rules."""
        key = subscriber_ip(ip)
        if key is None:
            raise ValueError(f"invalid subscriber address {ip!r}")
        record: Record = {"subscriberIp": key}
        if subscriber_id is not None:
            record["subscriberId"] = subscriber_id
        record |= {"policyRate": policy_rate, "policyAssignedBy": "rules"}
        with self.lock:
            self.subscribers[key] = record
            self.reference_policy(policy_rate)
            return copy.deepcopy(record)

    def snapshot(self) -> dict[str, list[Record]]:
        """Everything, as the API's GETs would show it."""
        with self.lock:
            return {
                "subscribers": copy.deepcopy(list(self.subscribers.values())),
                "policies": [policy_view(p) for p in self.policies.values()],
                "groups": copy.deepcopy(list(self.groups.values())),
            }

    def reference_policy(self, name: str) -> None:
        """Something now points at `name`: create an "undefined" placeholder if needed."""
        with self.lock:
            if name not in self.policies:
                self.policies[name] = {"policyName": name}

    def is_referenced(self, name: str) -> bool:
        """Whether a subscriber or group uses the policy `name`."""
        with self.lock:
            return any(s.get("policyRate") == name for s in self.subscribers.values()) or any(
                g.get("policyRate") == name for g in self.groups.values()
            )


def is_placeholder(policy: Record) -> bool:
    """True for an "undefined" policy the BQN made up for an unknown `policyRate`."""
    return "policyId" not in policy


def policy_view(policy: Record) -> Record:
    """A policy as GET shows it: defaults never sent are echoed (placeholders bare)."""
    if is_placeholder(policy):
        return {"policyName": policy["policyName"]}
    shown = copy.deepcopy(policy)
    for key in RATE_LIMITS:
        if key in shown:
            shown[key].setdefault("congestionMgmt", True)
    shown.setdefault("flowLimit", None)
    return shown


def _replace(state: BqnState, table: dict[str, Record], key: str, record: Record) -> Response:
    """POST semantics: create (201) or replace whole (200); a named policy that does not exist
    gets its "undefined" placeholder."""
    with state.lock:
        created = key not in table
        table[key] = record
        if "policyRate" in record:
            state.reference_policy(record["policyRate"])
        return json_response(record, 201 if created else 200)


def create_app(state: BqnState) -> Flask:
    """The BQN REST API under `/api/v1` plus the `/_sim/` control endpoints."""
    app = Flask("sandbox.bqn")
    fault_hooks.install(app, state.faults, state.stats)
    require(app, lambda: _check_basic_auth(state))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        return text_response(error.code or 500)

    _subscriber_routes(app, state)
    _policy_routes(app, state)
    _group_routes(app, state)
    app.register_blueprint(_control(state))
    return app


def _subscriber_routes(app: Flask, state: BqnState) -> None:
    @app.get(f"{API}/subscribers")
    def list_subscribers() -> Response:
        with state.lock:
            return json_response({"items": list(state.subscribers.values())})

    @app.get(f"{API}/subscribers/<path:ip>")
    def get_subscriber(ip: str) -> Response:
        key = _subscriber_key(ip)
        with state.lock:
            return json_response(_existing(state.subscribers, key))

    @app.post(f"{API}/subscribers/<path:ip>")
    def post_subscriber(ip: str) -> Response:
        key = _subscriber_key(ip)
        body = _body(SUBSCRIBER_FIELDS, key_field="subscriberIp", key=key)
        record: Record = {
            "subscriberIp": key,
            "subscriberId": body.get("subscriberId", ""),
            "subscriberGroups": body.get("subscriberGroups", []),
        }
        record |= {k: v for k, v in body.items() if k not in record}
        if "policyRate" in body:
            record["policyAssignedBy"] = "rest"
        return _replace(state, state.subscribers, key, record)

    @app.put(f"{API}/subscribers/<path:ip>")
    def put_subscriber(ip: str) -> Response:
        key = _subscriber_key(ip)
        body = _body(SUBSCRIBER_FIELDS, key_field="subscriberIp", key=key)
        with state.lock:
            record = _existing(state.subscribers, key)
            record.update(body)
            if "policyRate" in body:
                record["policyAssignedBy"] = "rest"
                state.reference_policy(body["policyRate"])
            return json_response(record)

    @app.delete(f"{API}/subscribers/<path:ip>")
    def delete_subscriber(ip: str) -> Response:
        key = _subscriber_key(ip)
        with state.lock:
            _existing(state.subscribers, key)
            del state.subscribers[key]
        return Response(status=204)


def _policy_routes(app: Flask, state: BqnState) -> None:
    @app.get(f"{API}/policies/rate")
    def list_policies() -> Response:
        with state.lock:
            return json_response({"items": [policy_view(p) for p in state.policies.values()]})

    @app.get(f"{API}/policies/rate/<path:name>")
    def get_policy(name: str) -> Response:
        with state.lock:
            return json_response(policy_view(_existing(state.policies, name)))

    @app.post(f"{API}/policies/rate/<path:name>")
    def post_policy(name: str) -> Response:
        body = _body(POLICY_FIELDS, key_field="policyName", key=name)
        with state.lock:
            if name in state.static_policies:
                return json_response(policy_view(state.policies[name]))
            created = name not in state.policies
            state.policies[name] = {"policyName": name, "policyId": "", **body}
            return json_response(policy_view(state.policies[name]), 201 if created else 200)

    @app.put(f"{API}/policies/rate/<path:name>")
    def put_policy(name: str) -> Response:
        body = _body(POLICY_FIELDS, key_field="policyName", key=name)
        with state.lock:
            policy = _existing(state.policies, name)
            if name not in state.static_policies:
                policy.setdefault("policyId", "")  # a PUT defines a placeholder
                policy.update(body)
            return json_response(policy_view(policy))

    @app.delete(f"{API}/policies/rate/<path:name>")
    def delete_policy(name: str) -> Response:
        with state.lock:
            _existing(state.policies, name)
            if name in state.static_policies:
                abort(text_response(403, f"policy {name!r} is static and cannot be deleted"))
            del state.policies[name]
            if state.is_referenced(name):
                state.reference_policy(name)
        return Response(status=204)


def _group_routes(app: Flask, state: BqnState) -> None:
    @app.get(f"{API}/subscriberGroups")
    def list_groups() -> Response:
        with state.lock:
            return json_response({"items": list(state.groups.values())})

    @app.get(f"{API}/subscriberGroups/<path:name>")
    def get_group(name: str) -> Response:
        with state.lock:
            return json_response(_existing(state.groups, name))

    @app.post(f"{API}/subscriberGroups/<path:name>")
    def post_group(name: str) -> Response:
        body = _group_body(name)
        group: Record = {
            "subscriberGroupName": name,
            "subscriberGroupType": "generic",
            "subscriberMembers": [],
            "subscriberRanges": [],
        }
        group |= body
        with state.lock:
            _check_groups_per_ip(state, name, group)
            return _replace(state, state.groups, name, group)

    @app.put(f"{API}/subscriberGroups/<path:name>")
    def put_group(name: str) -> Response:
        body = _group_body(name)
        with state.lock:
            group = _existing(state.groups, name)
            _check_groups_per_ip(state, name, {**group, **body})
            group.update(body)
            if "policyRate" in body:
                state.reference_policy(body["policyRate"])
            return json_response(group)

    @app.delete(f"{API}/subscriberGroups/<path:name>")
    def delete_group(name: str) -> Response:
        _writable_group(name)
        with state.lock:
            _existing(state.groups, name)
            del state.groups[name]
        return Response(status=204)


def _check_groups_per_ip(state: BqnState, name: str, group: Record) -> None:
    """Abort with 409 when `group`, written as `name`, would put a member in more groups
    than `state.groups_per_ip` (all-subscribers aside)."""
    if state.groups_per_ip is None:
        return
    elsewhere = Counter(
        member
        for key, other in state.groups.items()
        if key not in (name, ALL_SUBSCRIBERS)
        for member in set(other.get("subscriberMembers") or ())
    )
    for member in set(group.get("subscriberMembers") or ()):
        count = 1 + elsewhere[member]
        if count > state.groups_per_ip:
            abort(
                text_response(
                    409,
                    f"{member} would be in {count} subscriber groups; this release allows "
                    f"{state.groups_per_ip} besides {ALL_SUBSCRIBERS}",
                )
            )


def _check_basic_auth(state: BqnState) -> Response | None:
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        user_ok = same_secret(auth.username or "", state.user)
        password_ok = same_secret(auth.password or "", state.password)
        if user_ok and password_ok:
            return None
    response = text_response(401)
    response.headers["WWW-Authenticate"] = 'Basic realm="BQN REST API"'
    return response


def _subscriber_key(ip: str) -> str:
    key = subscriber_ip(ip)
    if key is None:
        abort(text_response(400, f"invalid subscriber address {ip!r}: use IPv4 or an IPv6 /64"))
    return key


def _existing(records: dict[str, Record], key: str) -> Record:
    record = records.get(key)
    if record is None:
        abort(text_response(404, f"{key!r} not found"))
    return record


def _writable_group(name: str) -> None:
    if name == ALL_SUBSCRIBERS:
        abort(text_response(403, f"{ALL_SUBSCRIBERS} is built in and cannot be changed"))
    if " " in name:
        abort(text_response(400, "subscriber group names cannot contain spaces"))


def _group_body(name: str) -> Record:
    _writable_group(name)
    return _body(GROUP_FIELDS, key_field="subscriberGroupName", key=name)


def _body(fields: dict[str, Check], key_field: str, key: str) -> Record:
    """The request's JSON object, checked against the resource's fields; aborts on error."""
    content_type = request.headers.get("Content-Type")
    if content_type is None:
        abort(text_response(415, "Content-Type application/json is required"))
    if "," in content_type:
        abort(text_response(400, "duplicate Content-Type header"))
    mimetype, options = parse_options_header(content_type)
    charset = options.get("charset", "utf-8").lower()
    if mimetype.lower() != "application/json" or charset not in ("utf-8", "utf8"):
        abort(text_response(415, f"unsupported Content-Type {content_type!r}"))
    try:
        body = json.loads(request.get_data().decode("utf-8"))
    except UnicodeDecodeError:
        abort(text_response(400, "body is not valid UTF-8"))
    except ValueError:
        abort(text_response(400, "body is not valid JSON"))
    if not isinstance(body, dict):
        abort(text_response(400, "body must be a JSON object"))
    for name, value in body.items():
        if name in READ_ONLY_FIELDS:
            abort(text_response(400, f"field {name!r} is read-only"))
        check = fields.get(name)
        if check is None:
            abort(text_response(400, f"unknown field {name!r}"))
        problem = check(value)
        if problem is not None:
            abort(text_response(400, f"field {name!r} {problem}"))
    given_key = body.pop(key_field, key)
    if key_field == "subscriberIp":
        given_key = subscriber_ip(given_key)
    if given_key != key:
        abort(text_response(400, f"{key_field} does not match the path"))
    return body


def _control(state: BqnState) -> Blueprint:
    blueprint = control_blueprint(state.faults, state.stats)

    @blueprint.get("/state")
    def get_state() -> Response:
        return json_response(state.snapshot())

    @blueprint.put("/rules/<path:ip>")
    def put_rules_subscriber(ip: str) -> Response:
        body = json_body()
        policy_rate = body.get("policyRate")
        subscriber_id = body.get("subscriberId")
        if not isinstance(policy_rate, str) or not isinstance(subscriber_id, str | None):
            return control_error(400, "policyRate (string) is required")
        try:
            return json_response(state.add_rules_subscriber(ip, policy_rate, subscriber_id))
        except ValueError as exc:
            return control_error(400, str(exc))

    return blueprint
