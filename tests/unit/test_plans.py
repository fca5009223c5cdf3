"""Plans to policies: WispHub details, the override file, and the state of a policy."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.rows import row
from worker.core.client_overrides import is_rate_policy
from worker.core.errors import ConfigError
from worker.core.model import Policy
from worker.core.overrides import parse_csv, parse_yaml
from worker.core.plans import (
    Plan,
    Speeds,
    name_collisions,
    plan_from_wisphub,
    policy_names,
    policy_state,
    resolved,
    with_overrides,
)
from worker.core.rules import MappingRules

# Names that make one policy name once normalised, and the names no plan may take.
NAMES = ["A", "A ", " A", "A_", "A B", "A_B", "Wisphub block", "Wisphub throttle"]
NAMES += ["Wisphub override 7", "Wisphub_override_12"]
SUMMARY = {"id": 439219, "nombre": "Plan 10 Megas", "tipo": "Simple Queue"}


@pytest.mark.parametrize(
    ("summary", "detail", "speeds", "problem"),
    [
        (SUMMARY, {"bajada": "10M", "subida": "3M"}, Speeds(10_000, 3_000), None),
        (SUMMARY, {"bajada": "512k", "subida": "1.5M"}, Speeds(512, 1_500), None),
        (SUMMARY, {"bajada": "10M", "subida": "rápido"}, None, "unreadable speed 'rápido'"),
        (SUMMARY, {"bajada": None, "subida": "3M"}, None, "no speed given (None)"),
        (SUMMARY, None, None, "no detail"),
        ({**SUMMARY, "tipo": "PCQ"}, None, None, "PCQ plans have no speeds in WispHub"),
    ],
)
def test_plan_from_wisphub(summary, detail, speeds, problem):
    plan = plan_from_wisphub(summary, detail)
    assert plan.speeds == speeds
    assert plan.source == ("wisphub" if speeds else "none")
    assert plan.problem == problem
    assert plan.policy_name == "Plan_10_Megas"


def test_a_plan_policy_carries_the_plan_id_and_kbps():
    plan = plan_from_wisphub(SUMMARY, {"bajada": "10M", "subida": "3M"})
    assert plan.policy() == Policy(
        "Plan_10_Megas",
        {
            "policyId": "439219",
            "rateLimitDownlink": {"rate": 10_000},
            "rateLimitUplink": {"rate": 3_000},
        },
    )
    assert plan_from_wisphub(SUMMARY, None).policy() is None


def test_overrides_fill_and_replace_speeds_by_policy_name():
    pcq = plan_from_wisphub({"id": 1, "nombre": "Comunitario PCQ", "tipo": "PCQ"}, None)
    queue = plan_from_wisphub(SUMMARY, {"bajada": "10M", "subida": "3M"})
    other = plan_from_wisphub(
        {"id": 2, "nombre": "Otro", "tipo": "PPPoE"}, {"bajada": "1M", "subida": "1M"}
    )
    overrides = {
        "Comunitario_PCQ": Speeds(30_000, 10_000),
        "Plan_10_Megas": Speeds(12_000, 4_000, 20_000, 12_000, 10),
    }
    plans = with_overrides([pcq, queue, other], overrides)
    assert [(p.speeds, p.source) for p in plans] == [
        (Speeds(30_000, 10_000), "override"),
        (Speeds(12_000, 4_000, 20_000, 12_000, 10), "override"),
        (Speeds(1_000, 1_000), "wisphub"),
    ]
    assert plans[1].policy().fields["rateLimitDownlink"] == {
        "rate": 12_000,
        "burstRate": 20_000,
        "burstThreshold": 12_000,
        "burstDuration": 10,
    }


def test_plans_round_trip_through_their_dict_form():
    plan = with_overrides(
        [plan_from_wisphub(SUMMARY, {"bajada": "10M", "subida": "3M"})],
        {"Plan_10_Megas": Speeds(1, 2, 3, 4, 5)},
    )[0]
    assert Plan.from_dict(plan.to_dict()) == plan


WANT = Plan(1, "P", speeds=Speeds(10_000, 2_000))


@pytest.mark.parametrize(
    ("plan", "held", "state"),
    [
        (WANT, None, "missing"),
        (WANT, Policy("P"), "undefined"),
        (WANT, WANT.policy(), "ok"),
        (
            WANT,
            Policy(
                "P",
                {
                    **WANT.policy().fields,
                    "rateLimitDownlink": {"rate": 10_000, "burstRate": 1, "congestionMgmt": True},
                },
            ),
            "ok",
        ),
        (
            WANT,
            Policy("P", {**WANT.policy().fields, "rateLimitUplink": {"rate": 1_000}}),
            "different",
        ),
        (Plan(2, "Q"), None, "left for the operator"),
    ],
)
def test_policy_state(plan, held, state):
    assert policy_state(plan, held) == state


YAML = """
Comunitario PCQ:
  download: 30000
  upload: 10M
  burst_rate: 40M
  burst_threshold: 30M
  burst_duration: 10
"Plan 10 Megas":
  download: "12M"
  upload: 4000
"""

CSV = """plan,download,upload,burst_rate,burst_threshold,burst_duration
Comunitario PCQ,30000,10M,40M,30M,10
Plan 10 Megas,12M,4000,,,
"""


@pytest.mark.parametrize(
    ("parse", "text"), [(parse_yaml, YAML), (parse_csv, CSV)], ids=["yaml", "csv"]
)
def test_override_file_forms(parse, text):
    assert parse(text) == {
        "Comunitario PCQ": Speeds(30_000, 10_000, 40_000, 30_000, 10),
        "Plan 10 Megas": Speeds(12_000, 4_000),
    }


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (parse_yaml, "- a\n- b\n", "expected plan names"),
        (parse_yaml, "P: 10M\n", "expected download/upload"),
        (parse_yaml, "P: {download: 10M}\n", "no speed given"),
        (parse_yaml, "P: {download: 10M, upload: fast}\n", "unreadable speed"),
        (parse_yaml, "P: {download: 10M, upload: 1M, burst: 2M}\n", "unknown fields"),
        (parse_yaml, "P: {download: 10M, upload: 1M, burst_duration: -3}\n", "positive number"),
        (parse_yaml, "P: [unclosed\n", "not valid YAML"),
        (parse_csv, "name,down,up\nP,1M,1M\n", "header must name"),
        (parse_csv, "plan,download,upload\n,1M,1M\n", "line 2: no plan name"),
    ],
)
def test_bad_override_files_say_where(parse, text, message):
    with pytest.raises(ConfigError, match=message):
        parse(text)


# Policy names by plan id -------------------------------------------------------------------

RULES = MappingRules()


def plan(plan_id, nombre):
    return Plan(plan_id, nombre, speeds=Speeds(1_000, 1_000))


@pytest.mark.parametrize(
    ("plans", "names"),
    [
        pytest.param([plan(1, "Plan 10M")], {1: "Plan_10M"}, id="plain"),
        pytest.param(
            [plan(12, "Plan_Twin"), plan(11, "Plan Twin")],
            {11: "Plan_Twin", 12: "Plan_Twin-12"},
            id="twins-the-lower-id-keeps-the-name",
        ),
        pytest.param(
            [plan(3, "Plan_Twin-12"), plan(11, "Plan Twin"), plan(12, "Plan_Twin")],
            {3: "Plan_Twin-12", 11: "Plan_Twin", 12: "Plan_Twin-12-12"},
            id="a-suffix-never-takes-another-plans-name",
        ),
        pytest.param(
            [plan(5, "Wisphub block")], {5: "Wisphub_block-5"}, id="the-block-policy-is-reserved"
        ),
        pytest.param([plan(1, "."), plan(2, "..")], {1: "_", 2: "__"}, id="dots-are-not-paths"),
    ],
)
def test_policy_names(plans, names):
    resolved_plans = resolved(plans, [], RULES)
    assert policy_names(resolved_plans) == names
    assert {p.id: p.policy().name for p in resolved_plans} == names


def test_a_rename_shows_in_the_rows_before_the_catalogue():
    rows = [row(1, plan="Plan Nuevo") | {"plan_internet": {"id": 4, "nombre": "Plan Nuevo"}}]
    [renamed_plan] = resolved([plan(4, "Plan Viejo")], rows, RULES)
    assert (renamed_plan.nombre, renamed_plan.policy_name) == ("Plan Nuevo", "Plan_Nuevo")
    assert renamed_plan.speeds == Speeds(1_000, 1_000), "speeds stay with the plan id"


def test_a_plan_only_rows_name_gets_a_name_and_no_speeds():
    rows = [{"id_servicio": 1, "plan_internet": {"id": 9, "nombre": "Plan 10M"}}]
    plans = resolved([plan(4, "Plan 10M")], rows, RULES)
    assert [(p.id, p.policy_name, p.speeds is None) for p in plans] == [
        (4, "Plan_10M", False),
        (9, "Plan_10M-9", True),
    ]


def test_collisions_are_reported():
    plans = resolved([plan(11, "Plan Twin"), plan(12, "Plan_Twin")], [], RULES)
    [note] = name_collisions(plans)
    assert "plan 12" in note
    assert "Plan_Twin-12" in note


@given(
    st.dictionaries(
        st.integers(1, 50),
        st.sampled_from(NAMES),
    )
)
def test_policy_names_are_distinct_stable_and_never_the_block_policy(catalogue):
    """Nor the throttle policy, in either suspension mode: switching mode would otherwise
    find a plan holding the suspended clients' policy."""
    plans = [plan(key, nombre) for key, nombre in catalogue.items()]
    names = policy_names(resolved(plans, [], RULES))
    assert len(set(names.values())) == len(names)
    assert {RULES.block_policy, RULES.throttle_policy}.isdisjoint(names.values())
    assert not any(is_rate_policy(name) for name in names.values())  # a client's override's
    newer = plan(max(catalogue, default=0) + 1, "A")
    assert {
        key: name
        for key, name in policy_names(resolved([*plans, newer], [], RULES)).items()
        if key != newer.id
    } == names, "a new plan never renames the policies of older ones"


def test_twin_plans_may_each_have_their_own_override():
    twins = [Plan(11, "Plan Twin", tipo="PCQ"), Plan(12, "Plan_Twin", tipo="PCQ")]
    both = with_overrides(twins, {"Plan Twin": Speeds(1_000, 1_000)})
    own = with_overrides(
        twins, {"Plan Twin": Speeds(1_000, 1_000), "Plan_Twin": Speeds(2_000, 2_000)}
    )
    assert [p.speeds for p in both] == [Speeds(1_000, 1_000), Speeds(1_000, 1_000)]
    assert [p.speeds for p in own] == [Speeds(1_000, 1_000), Speeds(2_000, 2_000)]
