"""Reading WispHub's `ip` field into a BQN subscriber key."""

import pytest

from worker.addresses import normalise_key, subscriber_address


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
    ],
)
def test_usable_addresses(raw, key):
    assert subscriber_address(raw).key == key


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
        ("10.1.1.1, 10.1.1.2", "several addresses"),
        ("10.1.1.1 10.1.1.2", "several addresses"),
        ("200.1.2.0/29", "subnet"),
        ("2001:db8::/48", "subnet"),
        ("127.0.3.4", "placeholder"),
        ("169.254.9.9", "placeholder"),
        ("168.0.1.2", "placeholder"),
        ("0.0.0.0", "not a subscriber address"),
        ("224.0.0.1", "not a subscriber address"),
        ("255.255.255.255", "not a subscriber address"),
        ("fe80::1", "not a subscriber address"),
        ("::1", "not a subscriber address"),
    ],
)
def test_unusable_addresses_say_why(raw, problem):
    address = subscriber_address(raw)
    assert address.key is None
    assert problem in (address.problem or "")


def test_ipv6_prefix_is_configurable():
    assert subscriber_address("2001:db8:1:2:3:4::9", ipv6_prefix=56).key == "2001:db8:1::"


@pytest.mark.parametrize(
    ("raw", "key"),
    [("2001:0db8:0001:0002:0000:0000:0000:0000", "2001:db8:1:2::"), ("10.0.0.1", "10.0.0.1")],
)
def test_bqn_keys_are_canonical(raw, key):
    assert normalise_key(raw) == key
