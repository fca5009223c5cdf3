"""Location groups worked out from a pass (pure): names, members, the per-address limit, and
the writes that bring a BQN in line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.rows import row
from worker.core.desired import desired_state
from worker.core.locations import diff_locations, digest, pass_digest, place, place_names
from worker.core.model import Action, Group
from worker.core.rules import MappingRules

RULES = MappingRules()


def located(key: int, ip: str, zona=None, router=None, sectorial=None, **extra) -> dict:
    places = {"zona": zona, "router": router, "sectorial": sectorial}
    return row(key, ip, **{name: value for name, value in places.items() if value}, **extra)


def placed(rows, fields=("zona", "router"), per_ip=3, rules=RULES):
    return place(rows, desired_state(rows, rules), fields, per_ip)


@pytest.mark.parametrize(
    ("places", "names"),
    [
        ([{"id": 7, "nombre": "LA ESTRELLA"}], {7: "Z-LA_ESTRELLA"}),
        ([{"id": 7, "nombre": "  Norte  "}], {7: "Z-Norte"}),
        ([{"id": 7, "nombre": "Peñalolén/Alto?#1"}], {7: "Z-Peñalolén_Alto__1"}),
        ([{"id": 7, "nombre": ""}], {7: "Z-7"}),
        # two names that differ only in what is replaced: the lowest id keeps the name
        ([{"id": 9, "nombre": "A B"}, {"id": 4, "nombre": "A_B"}], {4: "Z-A_B", 9: "Z-A_B-9"}),
        ([{"id": 4, "nombre": "A B"}, {"id": 9, "nombre": "A\tB"}], {4: "Z-A_B", 9: "Z-A_B-9"}),
        ([{"nombre": "Sin id"}], {"Sin id": "Z-Sin_id"}),
        # a suffixed name another place already has: suffixed again, never shared
        (
            [{"id": 1, "nombre": "A-3"}, {"id": 2, "nombre": "A"}, {"id": 3, "nombre": "A"}],
            {1: "Z-A-3", 2: "Z-A", 3: "Z-A-3-3"},
        ),
    ],
)
def test_each_place_makes_one_group_name(places, names):
    rows = [located(key, f"10.0.0.{key}", zona=place) for key, place in enumerate(places, 1)]
    assert place_names(rows, ("zona",)) == {("zona", key): name for key, name in names.items()}


@given(
    st.lists(
        st.tuples(st.integers(1, 30), st.sampled_from(["A B", "A_B", "A  B", "A/B", "A_B-3", "C"])),
        max_size=20,
    )
)
def test_names_are_distinct_and_a_place_keeps_its_own(places):
    """However names collide once normalised, each place has one name no other place has."""
    rows = [
        located(number, f"10.1.0.{number}", zona={"id": key, "nombre": nombre})
        for number, (key, nombre) in enumerate(places, 1)
    ]
    made = place_names(rows, ("zona",))
    assert len(set(made.values())) == len(made)
    assert set(made) == {("zona", key) for key, _ in places}


def test_members_are_the_addresses_of_the_live_clients_of_each_place():
    north, south = {"id": 1, "nombre": "Norte"}, {"id": 2, "nombre": "Sur"}
    tower = {"id": 5, "nombre": "Torre 1"}
    rows = [
        located(1, "10.0.0.1", zona=north, router=tower),
        located(2, "10.0.0.2", zona=north, router=tower, estado="Suspendido"),
        located(3, "10.0.0.3", zona=south, router=tower, estado="Cancelado"),
        located(4, "10.0.0.4", zona=south),
        located(5, "10.0.0.5, 10.0.0.6", zona=south),  # several addresses: its own group too
        located(6, "10.0.0.9", zona=north, estado="Desconocido"),  # state unknown: not placed
    ]
    found = placed(rows)
    assert found.groups == {
        "R-Torre_1": Group("R-Torre_1", ("10.0.0.1", "10.0.0.2")),
        "Z-Norte": Group("Z-Norte", ("10.0.0.1", "10.0.0.2")),
        "Z-Sur": Group("Z-Sur", ("10.0.0.4", "10.0.0.5", "10.0.0.6")),
    }
    assert found.left_out == {}


def test_an_address_joins_at_most_the_groups_the_bqn_allows_its_own_group_first():
    places = {"zona": {"id": 1, "nombre": "Z"}, "router": {"id": 2, "nombre": "R"}}
    places["sectorial"] = {"id": 3, "nombre": "S"}
    rows = [
        located(1, "10.0.0.1", **places),
        located(2, "10.0.0.2, 10.0.0.3", **places),  # its own multi-IP group takes one
    ]
    found = placed(rows, ("sectorial", "zona", "router"), per_ip=3)
    assert {name: group.members for name, group in found.groups.items()} == {
        "S-S": ("10.0.0.1", "10.0.0.2", "10.0.0.3"),
        "Z-Z": ("10.0.0.1", "10.0.0.2", "10.0.0.3"),
        "R-R": ("10.0.0.1",),
    }
    assert found.left_out == {"router": 1}
    assert placed(rows, ("sectorial", "zona", "router"), per_ip=1).left_out == {
        "zona": 2,
        "router": 2,
        "sectorial": 1,  # the multi-IP client's own group took its one place
    }


def test_a_block_joins_as_a_range():
    rows = [located(1, "10.9.0.0/30", zona={"id": 1, "nombre": "Z"})]
    assert placed(rows).groups["Z-Z"].ranges == ("10.9.0.0/30",)


def test_the_writes_touch_only_the_groups_of_the_sync():
    want = {
        "Z-A": Group("Z-A", ("10.0.0.1",)),
        "Z-B": Group("Z-B", ("10.0.0.2",)),
        "Z-C": Group("Z-C", ("10.0.0.3",)),
        "Z-D": Group("Z-D", ("10.0.0.4",)),
    }
    held = {
        "Z-A": None,  # missing: created
        "Z-B": Group("Z-B", ("10.0.0.9",)),  # ours, members differ: updated
        "Z-C": Group("Z-C", ("10.0.0.3",), policy_rate="Torre_limit"),  # a policy set by hand
        "Z-D": Group("Z-D", ("10.0.0.7",)),  # made by hand: never touched
        "Z-E": Group("Z-E", ("10.0.0.5",)),  # ours, no client there any more: deleted
        "Z-F": Group("Z-F", ()),  # not ours: never deleted
    }
    changes = diff_locations(want, held, {"Z-B", "Z-C", "Z-E"}, gone=["Z-E", "Z-F"])
    assert [(op.action, op.key) for op in changes.operations] == [
        (Action.CREATE, "Z-A"),
        (Action.UPDATE, "Z-B"),
        (Action.DELETE, "Z-E"),
    ]
    assert changes.operations[1].fields == {
        "subscriberMembers": ["10.0.0.2"],
        "subscriberRanges": [],
    }
    assert (changes.foreign, changes.unchanged) == (("Z-D",), 1)


def test_the_digest_follows_the_members_not_their_order():
    assert digest(Group("Z", ("a", "b"))) == digest(Group("Z", ("b", "a")))
    assert digest(Group("Z", ("a",))) != digest(Group("Z", ("a", "b")))
    assert digest(Group("Z", ("a",))) != digest(Group("Z", (), ("a",)))


def test_the_pass_digest_follows_what_the_groups_depend_on():
    rules = MappingRules(location_groups=("zona",))
    rows = [located(1, "10.0.0.1", zona={"id": 1, "nombre": "A"}), located(2, "10.0.0.2")]
    assert pass_digest(rows, rules) == pass_digest(rows[::-1], rules)
    moved = [located(1, "10.0.0.1", zona={"id": 2, "nombre": "B"}), rows[1]]
    assert pass_digest(moved, rules) != pass_digest(rows, rules)
    suspended = [located(1, "10.0.0.1", zona={"id": 1, "nombre": "A"}, estado="Cancelado"), rows[1]]
    assert pass_digest(suspended, rules) != pass_digest(rows, rules)
    other_rules = MappingRules(location_groups=("zona",), groups_per_ip=1)
    assert pass_digest(rows, other_rules) != pass_digest(rows, rules)
