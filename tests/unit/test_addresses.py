"""Reading WispHub's `ip` field into subscriber keys and blocks."""

import pytest

from worker.core.addresses import AddressError, Addresses, expand, normalise_key, read_addresses


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("172.16.60.28", "172.16.60.28"),
        ("  10.0.0.5 ", "10.0.0.5"),
        ("100.64.1.9", "100.64.1.9"),  # CGNAT is a real subscriber range
        ("10.0.0.5/32", "10.0.0.5"),
        ("2001:db8:1:2::1", "2001:db8:1:2::"),  # IPv6 becomes its /64
        ("2001:DB8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
        ("2001:db8:1:2::/64", "2001:db8:1:2::"),
        ("2001:db8:1:2:3::/80", "2001:db8:1:2::"),
        ("10.0.0.5, 10.0.0.5", "10.0.0.5"),  # the same address twice is one
    ],
)
def test_single_addresses(raw, key):
    assert read_addresses(raw).single == key


@pytest.mark.parametrize(
    ("raw", "members", "ranges"),
    [
        ("200.1.2.0/29", (), ("200.1.2.0/29",)),
        ("200.1.2.5/29", (), ("200.1.2.0/29",)),  # written with a host address
        ("10.1.1.1, 10.1.1.2", ("10.1.1.1", "10.1.1.2"), ()),
        ("10.1.1.1 10.1.1.2;10.1.1.3", ("10.1.1.1", "10.1.1.2", "10.1.1.3"), ()),
        ("10.1.1.1, 200.1.2.0/30", ("10.1.1.1",), ("200.1.2.0/30",)),
        ("2001:db8::/48", (), ("2001:db8::/48",)),
        ("2001:db8:0:1::5, 2001:db8:0:2::5", ("2001:db8:0:1::", "2001:db8:0:2::"), ()),
    ],
)
def test_several_addresses_and_blocks(raw, members, ranges):
    addresses = read_addresses(raw)
    assert (addresses.members, addresses.ranges) == (members, ranges)
    assert addresses.single is None


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "empty IP"),
        (None, "empty IP"),
        (17216, "empty IP"),
        ("N/A", "malformed IP"),
        ("192.168.1.300", "malformed IP"),
        ("10.0.0", "malformed IP"),
        ("010.0.0.1", "malformed IP"),
        ("10.1.1.1, N/A", "malformed IP 'N/A'"),
        ("10.0.0.0/8", "too large"),
        ("2001:db8::/32", "too large"),
        ("127.0.3.4", "placeholder"),
        ("169.254.9.9", "placeholder"),
        ("168.0.1.2", "placeholder"),
        ("10.1.1.1, 127.0.0.9", "placeholder"),
        ("0.0.0.0", "not a subscriber address"),
        ("224.0.0.1", "not a subscriber address"),
        ("255.255.255.255", "not a subscriber address"),
        ("fe80::1", "not a subscriber address"),
        ("::1", "not a subscriber address"),
    ],
)
def test_unusable_values_say_why(raw, problem):
    with pytest.raises(AddressError, match=problem):
        read_addresses(raw)


def test_ipv6_prefix_is_configurable():
    assert read_addresses("2001:db8:1:2:3:4::9", ipv6_prefix=56).single == "2001:db8:1::"


def test_blocks_expand_to_every_address_within_a_limit():
    addresses = Addresses(("10.9.9.9",), ("200.1.2.0/30",))
    assert expand(addresses, 5) == ["10.9.9.9", "200.1.2.0", "200.1.2.1", "200.1.2.2", "200.1.2.3"]
    with pytest.raises(AddressError, match="too many"):
        expand(addresses, 4)


@pytest.mark.parametrize(
    ("raw", "key"),
    [("2001:0db8:0001:0002:0000:0000:0000:0000", "2001:db8:1:2::"), ("10.0.0.1", "10.0.0.1")],
)
def test_bqn_keys_are_canonical(raw, key):
    assert normalise_key(raw) == key
