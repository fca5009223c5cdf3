"""Which BQNs a client belongs to (pure): each target's selector, and the targets a WispHub row
selects.

A target with no selector takes every client (the two BQNs of an HA pair); with selectors, a
client belongs to it when any selector matches: one of its addresses inside one of the
`networks`, its `router` id among `routers`, or its `zona` id among `zonas`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from worker.core.addresses import AddressError, read_addresses
from worker.core.desired import Row, as_id

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The name of the one target made from BQN_URL/BQN_USER/BQN_PASSWORD when no targets file is
# given; its state in Redis keeps the keys of the versions before targets.
DEFAULT_TARGET = "default"


@dataclass(frozen=True)
class Selector:
    """The clients a target takes; empty, every client."""

    networks: tuple[Network, ...] = ()
    routers: frozenset[int] = frozenset()
    zonas: frozenset[int] = frozenset()

    @property
    def everyone(self) -> bool:
        """Whether the target takes every client."""
        return not (self.networks or self.routers or self.zonas)

    def matches(self, row: Row) -> bool:
        """Whether the client of `row` belongs to the target."""
        if self.everyone:
            return True
        return (
            _place_id(row, "router") in self.routers
            or _place_id(row, "zona") in self.zonas
            or any(_inside(network, self.networks) for network in _networks_of(row))
        )

    def select(self, rows: list[Row]) -> list[Row]:
        """The rows of the clients the target takes (`rows` itself when it takes every one)."""
        return rows if self.everyone else [row for row in rows if self.matches(row)]

    def to_dict(self) -> dict[str, list[str] | list[int]]:
        """The selector as the targets file writes it (empty lists left out)."""
        found: dict[str, list[str] | list[int]] = {}
        if self.networks:
            found["networks"] = [str(network) for network in self.networks]
        if self.routers:
            found["routers"] = sorted(self.routers)
        if self.zonas:
            found["zonas"] = sorted(self.zonas)
        return found


def targets_of(row: Row, selectors: Mapping[str, Selector]) -> list[str]:
    """The names of the targets `row`'s client belongs to, in the order given."""
    return [name for name, selector in selectors.items() if selector.matches(row)]


def unplaced(rows: Iterable[Row], selectors: Mapping[str, Selector]) -> list[Row]:
    """The rows no target takes (reported, never silently dropped)."""
    return [row for row in rows if not targets_of(row, selectors)]


def address_key(ip: str, target: str = DEFAULT_TARGET) -> str:
    """How an address job names the address it settles: `ip` on the `default` target, else
    `ip@target`."""
    return ip if target == DEFAULT_TARGET else f"{ip}@{target}"


def split_address_key(key: str) -> tuple[str, str]:
    """The address and the target of an address job's key (`address_key`)."""
    ip, _, target = key.partition("@")
    return ip, target or DEFAULT_TARGET


def _place_id(row: Row, field: str) -> int | None:
    """The id of a row's `router` or `zona` (an object `{"id", "nombre"}`, or a bare id)."""
    place = row.get(field)
    return as_id(place.get("id") if isinstance(place, Mapping) else place)


def _networks_of(row: Row) -> list[Network]:
    """A row's addresses and blocks as networks; none when its `ip` is unusable."""
    try:
        addresses = read_addresses(row.get("ip"), ipv6_prefix=128)
    except AddressError:
        return []
    return [ipaddress.ip_network(text) for text in (*addresses.members, *addresses.ranges)]


def _inside(network: Network, networks: Iterable[Network]) -> bool:
    """Whether `network` (an address or a client's block) overlaps one of `networks`."""
    return any(
        network.version == other.version and network.overlaps(other)  # type: ignore[arg-type]
        for other in networks
    )
