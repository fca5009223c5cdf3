"""A client's plan beside what the BQN holds (`worker.core.preview`)."""

import pytest

from worker.core.model import Action, Group, Kind, Operation, Policy, Subscriber
from worker.core.preview import side_by_side

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
