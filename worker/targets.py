"""The BQNs the service keeps in step (`BQN_TARGETS_FILE`), read and checked at start-up.

Without the file, `BQN_URL`, `BQN_USER` and `BQN_PASSWORD` make one target named `default`.
Every mistake in the file stops the process with a message naming the target and the key: a
typo must never leave a BQN silently unsynced.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from worker.clients.connection import Connection
from worker.core.errors import ConfigError
from worker.core.targets import DEFAULT_TARGET, Network, Selector

SELECTOR_KEYS = ("networks", "routers", "zonas")
# How each selector is written, for the error of one that is not a list.
_EXAMPLES = {"networks": "10.10.0.0/16", "routers": "3, 7", "zonas": "2"}
NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")
KEYS = ("name", "url", "user", "password", "password_env", "ca_bundle", *SELECTOR_KEYS)


@dataclass(frozen=True)
class Target:
    """One BQN: its name (in logs, metrics, history and the API), how to reach it, and the
    clients it takes."""

    name: str
    bqn: Connection
    selector: Selector = field(default_factory=Selector)

    def describe(self) -> dict[str, Any]:
        """What the API and the status page show of it: never its password."""
        return {"name": self.name, "url": self.bqn.url, "selector": self.selector.to_dict()}


# Builds a target's connection from its url, user, password and CA bundle, with what every
# target shares (timeouts, retries, ciphers) from the BQN_* settings.
ConnectionFactory = Callable[[str, str, str, str | None], Connection]


def default_target(bqn: Connection) -> Target:
    """The one target of a service configured with `BQN_URL`."""
    return Target(DEFAULT_TARGET, bqn)


def read_targets(path: str, env: Mapping[str, str], connect: ConnectionFactory) -> list[Target]:
    """The targets of the file at `path`; `ConfigError` names the first mistake."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"BQN_TARGETS_FILE {path}: cannot read it ({exc.strerror})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"BQN_TARGETS_FILE {path}: not valid YAML ({_where(exc)})") from None
    return parse_targets(document, env, connect, where=f"BQN_TARGETS_FILE {path}")


def _where(error: yaml.YAMLError) -> str:
    """What PyYAML found wrong, and where, without the text of the line (which may hold a
    password)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or "cannot be read"
    return problem if mark is None else f"{problem}, line {mark.line + 1}, column {mark.column + 1}"


def parse_targets(
    document: object, env: Mapping[str, str], connect: ConnectionFactory, *, where: str
) -> list[Target]:
    """The targets of a loaded targets file (see `read_targets`)."""
    if not isinstance(document, dict) or set(document) != {"targets"}:
        raise ConfigError(f"{where}: must hold one key, `targets`, with a list of BQNs")
    entries = document["targets"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: `targets` must be a list of at least one BQN")
    targets: list[Target] = []
    for number, entry in enumerate(entries, start=1):
        target = _target(entry, env, connect, where, number)
        if any(other.name == target.name for other in targets):
            raise ConfigError(f"{where}: target {target.name!r}: name used twice")
        targets.append(target)
    return targets


def _target(
    entry: object, env: Mapping[str, str], connect: ConnectionFactory, file: str, number: int
) -> Target:
    """One entry of the list (the `number`th), its errors naming it by name once it has one."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{file}: target {number}: must be a mapping with name, url, user, ...")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"{file}: target {number}: name must be 1 to 40 of a-z, 0-9 and '-' (not starting "
            f"or ending with '-'), not {name!r}"
        )
    where = f"{file}: target {name!r}"
    unknown = sorted(str(key) for key in entry if key not in KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    url, user = (_text(entry, key, where) for key in ("url", "user"))
    ca_bundle = entry.get("ca_bundle")
    if ca_bundle is not None and not (isinstance(ca_bundle, str) and Path(ca_bundle).is_file()):
        raise ConfigError(f"{where}: ca_bundle: no such file {ca_bundle!r}")
    password = _password(entry, env, where)
    try:
        bqn = connect(url, user, password, ca_bundle)
    except ConfigError as exc:
        raise ConfigError(f"{where}: url: {exc}") from None
    selector = Selector(
        networks=tuple(_network(value, where) for value in _list(entry, "networks", where)),
        routers=frozenset(_id(value, "routers", where) for value in _list(entry, "routers", where)),
        zonas=frozenset(_id(value, "zonas", where) for value in _list(entry, "zonas", where)),
    )
    return Target(name, bqn, selector)


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    """A key's text, which must not be empty."""
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} is missing")
    return value.strip()


def _password(entry: Mapping[str, Any], env: Mapping[str, str], where: str) -> str:
    """The password written in the file, or read from the variable `password_env` names."""
    if ("password" in entry) == ("password_env" in entry):
        raise ConfigError(f"{where}: give password or password_env, exactly one of them")
    if "password" in entry:
        return _text(entry, "password", where)
    variable = _text(entry, "password_env", where)
    value = env.get(variable, "").strip()
    if not value:
        raise ConfigError(f"{where}: password_env: {variable} is not set")
    return value


def _list(entry: Mapping[str, Any], key: str, where: str) -> list[object]:
    """A selector's list (none: empty)."""
    value = entry.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{where}: {key} must be a list, such as [{_EXAMPLES[key]}]")
    return value


def _network(value: object, where: str) -> Network:
    """A network as written, its address a network's (`10.10.0.0/16`, not `10.10.0.1/16`)."""
    try:
        return ipaddress.ip_network(str(value))
    except ValueError as exc:
        raise ConfigError(f"{where}: networks: {exc}") from None


def _id(value: object, key: str, where: str) -> int:
    """A WispHub router or zona id."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: {key}: WispHub ids are whole numbers from 1, not {value!r}")
    return value
