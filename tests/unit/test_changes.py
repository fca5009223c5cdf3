"""Poller change detection: which field changes count, and the diff of two passes."""

import pytest

from tests.rows import row
from worker.core.changes import changed_clients, fingerprint, fingerprints
from worker.core.rules import MappingRules

RULES = MappingRules()
BASE = row(1, "10.0.0.1", "Activo", "Plan 10M", "Ana")


@pytest.mark.parametrize(
    ("change", "counts"),
    [
        ({"ip": "10.0.0.2"}, True),
        ({"estado": "Suspendido"}, True),
        ({"nombre": "Ana María"}, True),
        ({"plan_internet": {"id": 8, "nombre": "Plan 10M"}}, True),
        ({"plan_internet": {"id": 7, "nombre": "Plan 20M"}}, True),
        ({"plan_internet": None}, True),
        ({"usuario": "otro@isp"}, False),
        ({"saldo": "10.00", "telefono": "300 000 0000"}, False),
        ({"password_servicio": "changed"}, False),
        ({"ultimo_cambio": "02/02/2026 00:00:00"}, False),
    ],
)
def test_what_changes_a_fingerprint(change, counts):
    assert (fingerprint({**BASE, **change}, RULES) != fingerprint(BASE, RULES)) is counts


def test_the_subscriber_id_field_setting_decides_which_name_counts():
    rules = MappingRules(subscriber_id_field="usuario")
    renamed = {**BASE, "nombre": "Otra"}
    assert fingerprint(renamed, rules) == fingerprint(BASE, rules)
    assert fingerprint({**BASE, "usuario": "x@isp"}, rules) != fingerprint(BASE, rules)


def test_changed_clients_lists_new_vanished_and_changed():
    before = fingerprints([row(1), row(2), row(3)], RULES)
    after = fingerprints([row(1), row(2, estado="Suspendido"), row(4)], RULES)
    assert changed_clients(before, after) == [2, 3, 4]
    assert changed_clients(after, after) == []


def test_rows_without_an_id_are_left_out():
    assert fingerprints([{"ip": "10.0.0.1"}], RULES) == {}
