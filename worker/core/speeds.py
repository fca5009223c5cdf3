"""MikroTik-style speed strings, as WispHub plans carry them, to the BQN's kbps (pure).

`"10M"` is 10,000 kbps, `"512k"` 512, `"1G"` 1,000,000, `"1.5M"` (or `"1,5M"`) 1,500: decimal
units, case-insensitive, an optional `bps`/`b` after the unit. A bare number is **bits per
second**, as MikroTik reads it (`"10000000"` is 10,000 kbps). Anything else, or a speed under
1 kbps, is not guessed at: it is reported and the plan is left for the operator.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from worker.core import phrases

UNITS = {"": Decimal("0.001"), "k": Decimal(1), "m": Decimal(1000), "g": Decimal(1_000_000)}
PATTERN = re.compile(r"^\s*(\d+(?:[.,]\d+)?)\s*([kmg]?)\s*(?:bps|b|bit/s)?\s*$", re.IGNORECASE)


class SpeedError(ValueError):
    """A speed string that cannot be read."""


def parse_speed(text: object) -> int:
    """The speed in kbps; `SpeedError` says why when it cannot be read."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise SpeedError(phrases.NO_SPEED_GIVEN.format(text=text))
    match = PATTERN.match(str(text))
    if match is None:
        raise SpeedError(phrases.UNREADABLE_SPEED.format(text=text))
    number, unit = match.groups()
    try:
        kbps = Decimal(number.replace(",", ".")) * UNITS[unit.lower()]
    except InvalidOperation:
        raise SpeedError(phrases.UNREADABLE_SPEED.format(text=text)) from None
    if kbps < 1:
        raise SpeedError(phrases.SPEED_TOO_LOW.format(text=text))
    return int(kbps.to_integral_value())
