"""Speed strings from WispHub plans to kbps, junk included."""

import pytest

from worker.core.speeds import SpeedError, parse_speed


@pytest.mark.parametrize(
    ("text", "kbps"),
    [
        ("10M", 10_000),
        ("10m", 10_000),
        ("512k", 512),
        ("512K", 512),
        ("1G", 1_000_000),
        ("1.5M", 1_500),
        ("1,5M", 1_500),
        (" 20 M ", 20_000),
        ("20Mbps", 20_000),
        ("20 mbps", 20_000),
        ("256kb", 256),
        ("0.5M", 500),
        ("10000000", 10_000),  # a bare number is bits per second
        (10_000_000, 10_000),
        ("1500k", 1_500),
        ("2.5G", 2_500_000),
    ],
)
def test_speeds(text, kbps):
    assert parse_speed(text) == kbps


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "unreadable"),
        ("   ", "unreadable"),
        ("rápido", "unreadable"),
        ("10 Megas", "unreadable"),
        ("10M/5M", "unreadable"),
        ("-10M", "unreadable"),
        ("10T", "unreadable"),
        ("M", "unreadable"),
        ("1e3M", "unreadable"),
        ("10", "under 1 kbps"),
        ("0M", "under 1 kbps"),
        ("0.0001M", "under 1 kbps"),
        (None, "no speed"),
        (True, "no speed"),
        (10.5, "no speed"),
        ({"rate": 10}, "no speed"),
    ],
)
def test_junk_is_not_guessed(text, reason):
    with pytest.raises(SpeedError, match=reason):
        parse_speed(text)
