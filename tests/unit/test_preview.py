"""A client's plan beside what the BQN holds (`worker.core.preview`)."""

import pytest

from worker.core.model import Action, Group, Kind, Operation, Policy, Subscriber
from worker.core.preview import by_field, side_by_side

ANA = Subscriber("10.1.0.1", "Ana", "Plan_10M", id_servicio=1)
BLOCK = {"subscriberId": "Ana", "policyRate": "Wisphub_block"}
GROUP = Group("wisphub-1", ("10.1.0.1", "10.1.0.2"), (), "Plan_10M", 1)


def op(action, kind, key, fields=None):
    return Operation(action, kind, key, fields or {}, 1)


@pytest.mark.parametrize(
    ("subscribers", "groups", "policies", "planned", "expected"),
    [
        pytest.param(
            {ANA.ip: ANA},
            {},
            {},
            [],
            [("subscriber", ANA.ip, ANA.managed_fields(), ANA.managed_fields(), None)],
            id="in-step",
        ),
        pytest.param(
            {ANA.ip: ANA},
            {},
            {},
            [op(Action.UPDATE, Kind.SUBSCRIBER, ANA.ip, BLOCK)],
            [("subscriber", ANA.ip, ANA.managed_fields(), BLOCK, "update")],
            id="suspended",
        ),
        pytest.param(
            {ANA.ip: None},
            {},
            {},
            [op(Action.CREATE, Kind.SUBSCRIBER, ANA.ip, BLOCK)],
            [("subscriber", ANA.ip, None, BLOCK, "create")],
            id="new",
        ),
        pytest.param(
            {ANA.ip: ANA, "10.9.9.9": None},
            {},
            {},
            [op(Action.DELETE, Kind.SUBSCRIBER, ANA.ip)],
            [("subscriber", ANA.ip, ANA.managed_fields(), None, "delete")],
            id="cancelled-and-nothing-at-an-old-address",
        ),
        pytest.param(
            {},
            {GROUP.name: GROUP, "wisphub-2": None},
            {"Plan_10M": Policy("Plan_10M", {"policyId": "Plan_10M", "rateLimitDownlink": 1})},
            [],
            [("group", GROUP.name, GROUP.managed_fields(), GROUP.managed_fields(), None)],
            id="a-group-and-a-policy-nothing-writes",
        ),
        pytest.param(
            {},
            {},
            {
                "Plan_10M": Policy(
                    "Plan_10M", {"policyId": "Plan_10M", "rateLimitDownlink": 1, "burst": 5}
                )
            },
            [op(Action.UPDATE, Kind.POLICY, "Plan_10M", {"rateLimitDownlink": 2})],
            [("policy", "Plan_10M", {"rateLimitDownlink": 1}, {"rateLimitDownlink": 2}, "update")],
            id="a-policy-shows-the-fields-written",
        ),
    ],
)
def test_side_by_side(subscribers, groups, policies, planned, expected):
    rows = side_by_side(subscribers, groups, policies, planned)
    assert [(r["kind"], r["key"], r["now"], r["after"], r["change"]) for r in rows] == expected


def row(now, after, change):
    return {"kind": "subscriber", "key": ANA.ip, "now": now, "after": after, "change": change}


ANA_NOW = {"subscriberId": "Ana", "policyRate": "Plan_10M"}


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param(
            row(ANA_NOW, ANA_NOW, None),
            [("subscriberId", "Ana", "Ana", False), ("policyRate", "Plan_10M", "Plan_10M", False)],
            id="in-step",
        ),
        pytest.param(
            row(ANA_NOW, BLOCK, "update"),
            [
                ("subscriberId", "Ana", "Ana", False),
                ("policyRate", "Plan_10M", "Wisphub_block", True),
            ],
            id="only-the-policy-differs",
        ),
        pytest.param(
            row(None, BLOCK, "create"),
            [("subscriberId", None, "Ana", True), ("policyRate", None, "Wisphub_block", True)],
            id="nothing-there-yet",
        ),
        pytest.param(
            row(ANA_NOW, None, "delete"),
            [("subscriberId", "Ana", None, True), ("policyRate", "Plan_10M", None, True)],
            id="to-be-removed",
        ),
        pytest.param(
            row({"subscriberId": "Ana"}, {"subscriberId": "Ana", "policyRate": "P"}, "update"),
            [("subscriberId", "Ana", "Ana", False), ("policyRate", None, "P", True)],
            id="a-field-missing-now",
        ),
        pytest.param(
            {
                "kind": "group",
                "key": GROUP.name,
                "now": {"subscriberMembers": ["10.1.0.2", "10.1.0.1"], "policyRate": "Plan_10M"},
                "after": {"subscriberMembers": ["10.1.0.1", "10.1.0.2"], "policyRate": "Plan_10M"},
                "change": None,
            },
            [
                ("subscriberMembers", ["10.1.0.2", "10.1.0.1"], ["10.1.0.1", "10.1.0.2"], False),
                ("policyRate", "Plan_10M", "Plan_10M", False),
            ],
            id="members-in-another-order-are-no-change",
        ),
    ],
)
def test_by_field(entry, expected):
    """Fails if a field that changes is not marked, or one that stays is."""
    fields = by_field(entry)
    assert [(f["field"], f["now"], f["after"], f["differs"]) for f in fields] == expected
