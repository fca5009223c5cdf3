"""Desired BQN subscribers from WispHub rows: the mapping rules, table-driven."""

import pytest

from tests.rows import row
from worker.core.desired import (
    Entries,
    desired_state,
    last_change,
    map_client,
    policy_name,
    suspended_policy,
)
from worker.core.model import Group, Skip, Subscriber
from worker.core.rules import MappingRules

RULES = MappingRules()


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (
            row(1, "10.0.0.1", "Activo", "Plan 10M", "José Pérez"),
            Entries((Subscriber("10.0.0.1", "José Pérez", "Plan_10M", 1),)),
        ),
        (
            row(2, "10.0.0.2", "Gratis", "Fibra Óptica 50M", "Ana"),
            Entries((Subscriber("10.0.0.2", "Ana", "Fibra_Óptica_50M", 2),)),
        ),
        (
            row(3, "10.0.0.3", "Suspendido", "Plan 10M", "Luis"),
            Entries((Subscriber("10.0.0.3", "Luis", "Wisphub_block", 3),)),
        ),
        (
            row(4, "10.0.0.4", "Suspendido", None, "Sin plan"),
            Entries((Subscriber("10.0.0.4", "Sin plan", "Wisphub_block", 4),)),
        ),
        (row(5, "10.0.0.5", "Cancelado"), None),
        (row(6, "127.0.0.6", "Cancelado"), None),
        (row(7, "", "Cancelado"), None),
        (
            row(8, "10.0.0.8", " activo ", "Plan 10M", "x"),
            Entries((Subscriber("10.0.0.8", "x", "Plan_10M", 8),)),
        ),
        (row(9, "N/A"), Skip(9, "N/A", "malformed IP 'N/A'")),
        (row(10, ""), Skip(10, "", "empty IP")),
        (
            row(11, "10.0.0.11", "Cortado"),
            Skip(11, "10.0.0.11", "unknown estado 'Cortado'", kept=("10.0.0.11",)),
        ),
        (
            row(12, "10.0.0.12", "Activo", None),
            Skip(12, "10.0.0.12", "no internet plan", kept=("10.0.0.12",)),
        ),
        (
            row(13, "10.0.0.13", "Activo", "  "),
            Skip(13, "10.0.0.13", "no internet plan", kept=("10.0.0.13",)),
        ),
        (
            row(14, "168.0.3.4", "Activo"),
            Skip(14, "168.0.3.4", "placeholder or loopback IP 168.0.3.4"),
        ),
        (
            row(15, "2001:db8:0:7::99"),
            Entries((Subscriber("2001:db8:0:7::", "cliente", "Plan_10M", 15),)),
        ),
        (
            {"ip": "10.0.0.16", "estado": "Activo"},
            Skip(None, "10.0.0.16", "row without a valid id_servicio"),
        ),
        (row("17", "10.0.0.17"), Entries((Subscriber("10.0.0.17", "cliente", "Plan_10M", 17),))),
        (
            row(18, "10.0.0.18", nombre="  "),
            Entries((Subscriber("10.0.0.18", "18", "Plan_10M", 18),)),
        ),
    ],
)
def test_map_client(client, expected):
    assert map_client(client, RULES) == expected


@pytest.mark.parametrize(
    ("field", "expected"),
    [("nombre", "María Godoy"), ("usuario", "María Godoy@isp"), ("id_servicio", "21")],
)
def test_subscriber_id_field_is_configurable(field, expected):
    rules = MappingRules(subscriber_id_field=field)
    mapped = map_client(row(21, nombre="María Godoy"), rules)
    assert mapped.subscribers[0].subscriber_id == expected


def test_block_policy_name_is_configurable():
    mapped = map_client(row(1, estado="Suspendido"), MappingRules(block_policy="Corte"))
    assert mapped.subscribers[0].policy_rate == "Corte"


THROTTLED = MappingRules(suspended_action="throttle", suspended_rate=(256, 128))


@pytest.mark.parametrize(
    ("rules", "policy", "fields"),
    [
        (MappingRules(), "Wisphub_block", {"policyId": "block", "down": 0, "up": 0}),
        (THROTTLED, "Wisphub_throttle", {"policyId": "throttle", "down": 256, "up": 128}),
        (
            MappingRules(
                suspended_action="throttle", throttle_policy="Lento", suspended_rate=(1000, 512)
            ),
            "Lento",
            {"policyId": "throttle", "down": 1000, "up": 512},
        ),
    ],
)
def test_a_suspended_client_gets_the_suspension_mode_s_policy(rules, policy, fields):
    """Fails if throttle mode still blocks, or its policy lacks the rates in kbps."""
    mapped = map_client(row(1, estado="Suspendido"), rules)
    assert mapped.subscribers[0].policy_rate == policy
    active = map_client(row(2, estado="Activo", plan="Plan 10M"), rules)
    assert active.subscribers[0].policy_rate == "Plan_10M"  # active clients are not touched
    wanted = suspended_policy(rules)
    assert (wanted.name, wanted.fields) == (
        policy,
        {
            "policyId": fields["policyId"],
            "rateLimitDownlink": {"rate": fields["down"]},
            "rateLimitUplink": {"rate": fields["up"]},
        },
    )


@pytest.mark.parametrize(
    ("plan", "policy"),
    [
        ("Plan 10 Megas", "Plan_10_Megas"),
        ("Online_basico", "Online_basico"),
        (" Básico 5M ", "Básico_5M"),
        (".", "_"),
        ("..", "__"),
        ("...", "..."),
        ("Plan .", "Plan_."),
    ],
)
def test_policy_name(plan, policy):
    assert policy_name(plan) == policy


def test_latest_change_wins_a_shared_ip_and_the_conflict_is_reported():
    rows = [
        row(1, "10.0.0.9", ultimo_cambio="01/03/2026 10:00:00", nombre="old"),
        row(2, "10.0.0.9", ultimo_cambio="02/03/2026 09:00:00", nombre="new"),
        row(3, "10.0.0.9", ultimo_cambio="garbage", nombre="unknown"),
        row(4, "10.0.0.9", estado="Cancelado", nombre="gone"),
    ]
    desired = desired_state(rows, RULES)
    assert desired.subscribers["10.0.0.9"].id_servicio == 2
    assert [(c.ip, c.winner, c.losers) for c in desired.conflicts] == [("10.0.0.9", 2, (1, 3))]
    assert {s.id_servicio for s in desired.skips} == {1, 3}
    assert desired.clients == 4


def test_a_tie_on_change_time_goes_to_the_higher_id():
    rows = [row(5, "10.0.0.9"), row(50, "10.0.0.9"), row(7, "10.0.0.9")]
    desired = desired_state(rows, RULES)
    assert desired.subscribers["10.0.0.9"].id_servicio == 50
    assert desired.conflicts[0].losers == (7, 5)


def test_unknowable_clients_protect_their_addresses_and_group():
    rows = [row(1, "10.0.0.1", "Moroso"), row(2, "N/A"), row(3, "10.3.0.1, 10.3.0.2", plan=None)]
    desired = desired_state(rows, RULES)
    assert desired.subscribers == {}
    assert desired.protected == frozenset({"10.0.0.1", "10.3.0.1", "10.3.0.2"})
    assert desired.protected_groups == frozenset({"wisphub-1", "wisphub-3"})


MULTI = row(30, "10.3.0.1, 200.1.2.0/30", "Activo", "Plan 10M", "Empresa")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            "group",
            Entries(group=Group("wisphub-30", ("10.3.0.1",), ("200.1.2.0/30",), "Plan_10M", 30)),
        ),
        (
            "subscribers",
            Entries(
                tuple(
                    Subscriber(ip, "Empresa", "Plan_10M", 30)
                    for ip in ("10.3.0.1", "200.1.2.0", "200.1.2.1", "200.1.2.2", "200.1.2.3")
                )
            ),
        ),
        (
            "skip",
            Skip(30, "10.3.0.1, 200.1.2.0/30", "several addresses or a block (MULTI_IP_MODE=skip)"),
        ),
    ],
)
def test_several_addresses_in_each_mode(mode, expected):
    assert map_client(MULTI, MappingRules(multi_ip_mode=mode)) == expected


def test_a_suspended_group_gets_the_block_policy():
    mapped = map_client({**MULTI, "estado": "Suspendido"}, RULES)
    assert mapped.group.policy_rate == "Wisphub_block"


def test_a_block_too_large_to_expand_is_skipped():
    mapped = map_client(row(31, "10.4.0.0/22"), MappingRules(multi_ip_mode="subscribers"))
    assert isinstance(mapped, Skip)
    assert "too many addresses" in mapped.reason


def test_groups_are_part_of_the_desired_state():
    desired = desired_state([MULTI, row(32, "10.5.0.1")], RULES)
    assert set(desired.groups) == {"wisphub-30"}
    assert set(desired.subscribers) == {"10.5.0.1"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30/04/2026 11:08:11", (2026, 4, 30, 11, 8, 11)),
        ("30/04/2026 11:08", (2026, 4, 30, 11, 8, 0)),
        ("30/04/2026", (2026, 4, 30, 0, 0, 0)),
    ],
)
def test_last_change_formats(text, expected):
    moment = last_change({"ultimo_cambio": text})
    assert (
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
    ) == expected


@pytest.mark.parametrize("value", [None, "", "2026-04-30T11:08:11", 12345])
def test_unreadable_change_times_rank_oldest(value):
    assert last_change({"ultimo_cambio": value}).year == 1
