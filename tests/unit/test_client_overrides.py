"""Temporary overrides (pure): the request's validation, and what an override makes of a
client's entries, policies and fingerprint."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.rows import row
from worker.core.changes import fingerprint
from worker.core.client_overrides import (
    Override,
    OverrideError,
    active,
    parse_request,
    rate_policy_name,
)
from worker.core.desired import Entries, map_client
from worker.core.plans import wanted_policies
from worker.core.rules import MappingRules

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
SOON = "2026-07-02T12:00:00-05:00"
POLICIES = {"Plan_10M", "Plan_100M", "Wisphub_block"}


def parse(body: object) -> Override:
    return parse_request(body, 7, now=NOW, set_by="api", policies=POLICIES, max_days=31)


def override(kind: str, value: str, until: datetime = NOW + timedelta(days=1)) -> Override:
    return Override(7, kind, value, until, "promise", "api", NOW)


@pytest.mark.parametrize(
    ("body", "kind", "value"),
    [
        ({"policy": "Plan_100M", "until": SOON, "reason": "boost"}, "policy", "Plan_100M"),
        ({"rate": " 50M/10M ", "until": SOON, "reason": "boost"}, "rate", "50M/10M"),
        ({"estado": "activo", "until": SOON, "reason": "promesa"}, "estado", "Activo"),
        (
            {"estado": "Suspendido", "until": "2026-07-01T12:00:01Z", "reason": "x"},
            "estado",
            "Suspendido",
        ),
        ({"policy": "Wisphub_block", "until": SOON, "reason": "abuse"}, "policy", "Wisphub_block"),
    ],
)
def test_a_good_request_makes_its_override(body, kind, value):
    """Fails if a valid body is refused, or its kind or value are not kept as given."""
    made = parse(body)
    assert (made.kind, made.value, made.id_servicio, made.set_by) == (kind, value, 7, "api")
    assert made.until > NOW
    assert made.until.utcoffset() is not None
    assert Override.from_dict(made.to_dict()) == made


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "JSON object"),
        ({"policy": "Plan_100M", "reason": "x"}, "until is required"),
        ({"policy": "Plan_100M", "until": "2026-06-30T12:00:00Z", "reason": "x"}, "future"),
        ({"policy": "Plan_100M", "until": "2026-08-02T12:00:01Z", "reason": "x"}, "31 days"),
        ({"policy": "Plan_100M", "until": "2026-07-02T12:00:00", "reason": "x"}, "offset"),
        ({"policy": "Plan_100M", "until": "tomorrow", "reason": "x"}, "ISO-8601"),
        ({"policy": "Plan_100M", "rate": "1M/1M", "until": SOON, "reason": "x"}, "exactly one"),
        ({"until": SOON, "reason": "x"}, "exactly one"),
        ({"policy": "Plan_999M", "until": SOON, "reason": "x"}, "no plan's policy"),
        ({"rate": "50M", "until": SOON, "reason": "x"}, "download/upload"),
        ({"rate": "fast/slow", "until": SOON, "reason": "x"}, "rate:"),
        ({"estado": "Cancelado", "until": SOON, "reason": "x"}, "estado must be one of"),
        ({"policy": "Plan_100M", "until": SOON}, "reason is required"),
        ({"policy": "Plan_100M", "until": SOON, "reason": "x" * 201}, "longer than"),
        ({"policy": "Plan_100M", "until": SOON, "reason": "x", "who": 1}, "unknown fields"),
        ({"policy": 5, "until": SOON, "reason": "x"}, "non-empty string"),
    ],
)
def test_a_bad_request_says_why(body, words):
    """Fails if a bad body is taken, or its message does not name what is wrong."""
    with pytest.raises(OverrideError, match=words):
        parse(body)


ACTIVE = row(7, "10.0.0.7", plan="Plan 10M")
SUSPENDED = row(7, "10.0.0.7", estado="Suspendido", plan="Plan 10M")
CANCELLED = row(7, "10.0.0.7", estado="Cancelado", plan="Plan 10M")
NO_PLAN = row(7, "10.0.0.7", plan=None)


@pytest.mark.parametrize(
    ("client", "given_override", "policy"),
    [
        (ACTIVE, None, "Plan_10M"),
        (SUSPENDED, None, "Wisphub_block"),
        (SUSPENDED, override("estado", "Activo"), "Plan_10M"),
        (ACTIVE, override("estado", "Suspendido"), "Wisphub_block"),
        (ACTIVE, override("policy", "Plan_100M"), "Plan_100M"),
        (SUSPENDED, override("policy", "Plan_100M"), "Plan_100M"),
        (SUSPENDED, override("rate", "50M/10M"), rate_policy_name(7)),
        (NO_PLAN, override("rate", "50M/10M"), rate_policy_name(7)),
        (CANCELLED, override("estado", "Activo"), None),
        (CANCELLED, override("policy", "Plan_100M"), None),
    ],
)
def test_an_override_wins_over_wisphub_but_for_a_cancellation(client, given_override, policy):
    """Fails if an override is not applied, or brings back a client WispHub cancelled."""
    rules = MappingRules(overrides={} if given_override is None else {7: given_override})
    mapped = map_client(client, rules)
    if policy is None:
        assert mapped is None
    else:
        assert isinstance(mapped, Entries)
        assert [sub.policy_rate for sub in mapped.subscribers] == [policy]


def test_a_rate_override_brings_its_policy_in_kbps():
    """Fails if the sync would not create the rate override's policy, or not in kbps."""
    rules = MappingRules(overrides={7: override("rate", "50M/10M")})
    [wanted] = [p for p in wanted_policies([], rules) if p.name == rate_policy_name(7)]
    assert wanted.fields["rateLimitDownlink"] == {"rate": 50_000}
    assert wanted.fields["rateLimitUplink"] == {"rate": 10_000}


def test_an_override_changes_the_fingerprint_the_poller_compares():
    """Fails if the poller would not sync a client whose override began or ended."""
    plain = fingerprint(ACTIVE, MappingRules())
    boosted = fingerprint(ACTIVE, MappingRules(overrides={7: override("policy", "Plan_100M")}))
    other = fingerprint(row(8, "10.0.0.8"), MappingRules(overrides={7: override("rate", "1M/1M")}))
    assert plain != boosted
    assert other == fingerprint(row(8, "10.0.0.8"), MappingRules())


@given(st.lists(st.integers(min_value=-3600, max_value=3600), max_size=20))
def test_only_overrides_still_to_end_are_in_force(offsets):
    """Fails if an expired override is applied, or one in force is dropped: level-triggered,
    whether or not anything removed the expired ones."""
    items = [
        replace(override("policy", "Plan_100M", NOW + timedelta(seconds=s)), id_servicio=i)
        for i, s in enumerate(offsets)
    ]
    found = active(items, NOW)
    assert set(found) == {i for i, s in enumerate(offsets) if s > 0}
    assert all(found[i].until > NOW for i in found)
