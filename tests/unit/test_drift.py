"""What the poller finds when it compares a complete pass with the BQN itself."""

import pytest

from tests.ops import policy, sub
from tests.rows import row
from worker.core.desired import desired_state, suspended_policy
from worker.core.drift import Drift, find_drift
from worker.core.model import Action, Group, Kind, Operation
from worker.core.rules import MappingRules

RULES = MappingRules()
WANTED = [suspended_policy(RULES), policy("Plan_10M", "7", 10_000, 2_000)]
ROWS = [row(1, "10.0.0.1", nombre="Ana"), row(2, "10.0.0.2", "Suspendido", nombre="Beto")]
IN_LINE = [sub("10.0.0.1", "Ana", "Plan_10M"), sub("10.0.0.2", "Beto", "Wisphub_block")]


@pytest.mark.parametrize(
    ("held", "groups", "policies", "drift"),
    [
        pytest.param(IN_LINE, [], WANTED, Drift(), id="in-line"),
        pytest.param(IN_LINE[1:], [], WANTED, Drift(clients=(1,)), id="deleted-by-hand"),
        pytest.param(
            [IN_LINE[0], sub("10.0.0.2", "Beto", "Plan_10M")],
            [],
            WANTED,
            Drift(clients=(2,)),
            id="policy-changed-by-hand",
        ),
        pytest.param(
            [*IN_LINE, sub("10.0.0.9", "Nadie", "Plan_10M")],
            [],
            WANTED,
            Drift(addresses=("10.0.0.9",)),
            id="entry-nobody-claims",
        ),
        pytest.param(
            [*IN_LINE, sub("10.0.0.9", "x", "rate-default", assigned_by="rules")],
            [],
            WANTED,
            Drift(),
            id="rules-entries-are-not-drift",
        ),
        pytest.param(
            IN_LINE,
            [Group("wisphub-5", ("10.0.5.1",), (), "Plan_10M"), Group("tower-1", ("10.0.0.1",))],
            WANTED,
            Drift(gone=(5,)),
            id="a-group-of-a-client-gone",
        ),
        pytest.param(
            IN_LINE,
            [],
            [WANTED[0], policy("Plan_10M", "7", 99_000, 2_000)],
            Drift(
                policies=(
                    Operation(
                        Action.UPDATE,
                        Kind.POLICY,
                        "Plan_10M",
                        {
                            "policyId": "7",
                            "rateLimitDownlink": {"rate": 10_000},
                            "rateLimitUplink": {"rate": 2_000},
                        },
                    ),
                )
            ),
            id="policy-rates-changed-by-hand",
        ),
    ],
)
def test_find_drift(held, groups, policies, drift):
    assert find_drift(desired_state(ROWS, RULES), held, groups, policies, WANTED) == drift
