"""Turning WispHub's free-text `ip` field into the address a BQN subscriber is keyed by."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# Where WispHub's "Cancelar -> Liberar IP" parks a released address, and ranges that can never
# be a subscriber. 100.64.0.0/10 is also a placeholder, but only on cancelled rows: it is the
# ordinary CGNAT range many ISPs hand out, so it is accepted everywhere else.
NEVER_SUBSCRIBER = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("168.0.0.0/16"),
)


@dataclass(frozen=True)
class Address:
    """The outcome of reading an `ip` field: a BQN key, or the reason there is none."""

    key: str | None
    problem: str | None = None


def subscriber_address(raw: object, ipv6_prefix: int = 64) -> Address:
    """Normalise a WispHub `ip` value to a BQN subscriber key.

    IPv4 stays as is; IPv6 becomes the network address of its prefix (a /64 by default).
    Empty, malformed, multi-address and placeholder values give a problem instead of a key.
    """
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        return Address(None, "empty IP")
    if any(sep in text for sep in (",", " ", ";")):
        return Address(None, "several addresses in one client (not supported yet)")
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)
            single = 32 if network.version == 4 else ipv6_prefix
            if network.prefixlen < single:
                return Address(None, f"subnet {network} (not supported yet)")
            address = network.network_address
        else:
            address = ipaddress.ip_address(text)
    except ValueError:
        return Address(None, f"malformed IP {text!r}")
    if any(address in net for net in NEVER_SUBSCRIBER if net.version == address.version):
        return Address(None, f"placeholder or loopback IP {address}")
    if (
        address.is_unspecified
        or address.is_multicast
        or address.is_link_local
        or address.is_loopback
        or (address.version == 4 and address.is_reserved)
    ):
        return Address(None, f"not a subscriber address: {address}")
    if address.version == 6:
        address = ipaddress.ip_network(f"{address}/{ipv6_prefix}", strict=False).network_address
    return Address(str(address))


def normalise_key(raw: str) -> str:
    """Canonical text of an address the BQN returned, so IPv6 spellings compare equal."""
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return raw.strip()
