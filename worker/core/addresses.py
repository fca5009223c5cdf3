"""Turning WispHub's free-text `ip` field into the addresses a client is shaped at (pure).

The field usually holds one IPv4 address, but some ISPs write a routed block (`200.1.2.0/29`)
or several addresses (`10.1.1.1, 10.1.1.2`). IPv6 addresses become the network address of
their prefix (a /64 by default), as the BQN keys IPv6 subscribers.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from worker.core import phrases

# Where WispHub's "Cancelar -> Liberar IP" parks a released address, and ranges that can never
# be a subscriber. 100.64.0.0/10 is also a placeholder, but only on cancelled rows: it is the
# ordinary CGNAT range many ISPs hand out, so it is accepted everywhere else.
NEVER_SUBSCRIBER = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("168.0.0.0/16"),
)
SEPARATORS = re.compile(r"[\s,;]+")
# The shortest prefix a client's block may have, by IP version (a /16, a /48).
LARGEST_BLOCK = {4: 16, 6: 48}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressError(ValueError):
    """An `ip` value that names no usable subscriber address."""


@dataclass(frozen=True)
class Addresses:
    """A client's addresses: single ones (BQN subscriber keys) and CIDR blocks."""

    members: tuple[str, ...] = ()
    ranges: tuple[str, ...] = ()

    @property
    def single(self) -> str | None:
        """The key when the client has exactly one address."""
        return self.members[0] if len(self.members) == 1 and not self.ranges else None


def read_addresses(raw: object, ipv6_prefix: int = 64) -> Addresses:
    """Every address in an `ip` value; `AddressError` says why when one is unusable."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        raise AddressError(phrases.EMPTY_IP)
    members: list[str] = []
    ranges: list[str] = []
    for token in SEPARATORS.split(text):
        if "/" in token:
            network = _network(token, ipv6_prefix)
            if network.prefixlen < (32 if network.version == 4 else ipv6_prefix):
                ranges.append(str(network))
                continue
            members.append(_key(network.network_address, ipv6_prefix))
        else:
            members.append(_key(_address(token), ipv6_prefix))
    return Addresses(tuple(dict.fromkeys(members)), tuple(dict.fromkeys(ranges)))


def expand(addresses: Addresses, limit: int) -> list[str]:
    """Every single address, blocks expanded; `AddressError` past `limit` addresses."""
    keys = list(addresses.members)
    for block in addresses.ranges:
        network = ipaddress.ip_network(block)
        if len(keys) + network.num_addresses > limit:
            raise AddressError(phrases.TOO_MANY_ADDRESSES.format(block=block))
        keys.extend(str(address) for address in network)
    return list(dict.fromkeys(keys))


def normalise_key(raw: str) -> str:
    """Canonical text of an address the BQN returned, so IPv6 spellings compare equal."""
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return raw.strip()


def _address(token: str) -> IPAddress:
    try:
        address = ipaddress.ip_address(token)
    except ValueError:
        raise AddressError(phrases.MALFORMED_IP.format(token=token)) from None
    _check(address)
    return address


def _network(token: str, ipv6_prefix: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        network = ipaddress.ip_network(token, strict=False)
    except ValueError:
        raise AddressError(phrases.MALFORMED_IP.format(token=token)) from None
    _check(network.network_address)
    if network.prefixlen < LARGEST_BLOCK[network.version]:
        raise AddressError(phrases.BLOCK_TOO_LARGE.format(network=network))
    return network


def _check(address: IPAddress) -> None:
    if any(address in net for net in NEVER_SUBSCRIBER if net.version == address.version):
        raise AddressError(phrases.PLACEHOLDER_IP.format(address=address))
    if (
        address.is_unspecified
        or address.is_multicast
        or address.is_link_local
        or address.is_loopback
        or (address.version == 4 and address.is_reserved)
    ):
        raise AddressError(phrases.NOT_A_SUBSCRIBER.format(address=address))


def _key(address: IPAddress, ipv6_prefix: int) -> str:
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/{ipv6_prefix}", strict=False).network_address)
    return str(address)
