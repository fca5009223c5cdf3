"""Targets: which BQNs a client belongs to, the targets file's checks, and one report of the
same work on several targets."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.clients.connection import Connection
from worker.core.desired import slim
from worker.core.errors import ConfigError, TransientError
from worker.core.model import Action, Kind, Operation
from worker.core.report import Report, merged
from worker.core.rules import MappingRules
from worker.core.targets import Selector, targets_of, unplaced
from worker.sync.engine import map_pass
from worker.sync.targets import mapped_per_selector, unless_all_failed
from worker.targets import parse_targets, read_targets


def client(ip: str = "10.10.1.5", router: int | None = 3, zona: int | None = 2) -> dict:
    return {
        "id_servicio": 1,
        "ip": ip,
        "router": None if router is None else {"id": router, "nombre": "Torre"},
        "zona": None if zona is None else {"id": zona, "nombre": "Centro"},
    }


def networks(*texts: str) -> tuple:
    return tuple(ipaddress.ip_network(text) for text in texts)


@pytest.mark.parametrize(
    ("selector", "row", "taken"),
    [
        (Selector(), client(), True),  # no selector: every client (an HA pair)
        (Selector(), {"id_servicio": 1, "ip": ""}, True),
        (Selector(networks=networks("10.10.0.0/16")), client(), True),
        (Selector(networks=networks("10.20.0.0/16")), client(), False),
        (Selector(networks=networks("10.10.1.5/32")), client(), True),
        (Selector(networks=networks("10.10.0.0/16")), client("10.20.1.5, 10.10.9.9"), True),
        (Selector(networks=networks("10.10.0.0/16")), client("10.10.1.0/29"), True),
        (Selector(networks=networks("10.10.1.4/30")), client("10.10.1.0/29"), True),  # overlap
        (Selector(networks=networks("10.10.0.0/16")), client("no address"), False),
        (Selector(networks=networks("2001:db8::/32")), client("2001:db8::5"), True),
        (Selector(networks=networks("2001:db8::/32")), client("10.10.1.5"), False),
        (Selector(routers=frozenset({3})), client(), True),
        (Selector(routers=frozenset({4})), client(), False),
        (Selector(routers=frozenset({3})), client(router=None), False),
        (Selector(routers=frozenset({3})), {"id_servicio": 1, "router": "3"}, True),  # bare id
        (Selector(zonas=frozenset({2})), client(), True),
        (Selector(zonas=frozenset({2})), client(zona=5), False),
        # any selector matching is enough
        (Selector(networks=networks("10.99.0.0/16"), routers=frozenset({3})), client(), True),
        (Selector(networks=networks("10.99.0.0/16"), zonas=frozenset({9})), client(), False),
    ],
)
def test_a_selector_takes_a_client_when_any_of_its_parts_matches(selector, row, taken):
    assert selector.matches(row) is taken


def test_the_targets_of_a_client_in_the_order_given():
    selectors = {
        "site-b": Selector(routers=frozenset({7})),
        "core-a": Selector(),
        "site-a": Selector(networks=networks("10.10.0.0/16")),
    }
    assert targets_of(client(router=7), selectors) == ["site-b", "core-a", "site-a"]
    assert targets_of(client("10.30.0.1", router=8), selectors) == ["core-a"]


def test_clients_no_target_takes_are_found():
    selectors = {"site-a": Selector(routers=frozenset({3}))}
    lost = client(router=4) | {"id_servicio": 2}
    assert unplaced([client(), lost], selectors) == [lost]


def test_a_pass_is_mapped_once_per_selector_each_with_its_own_clients():
    pair = Selector()
    site = Selector(routers=frozenset({7}))
    rows = [
        client("10.10.1.5", router=3) | {"estado": "Activo", "plan_internet": {"nombre": "P"}},
        client("10.10.1.6", router=7)
        | {"id_servicio": 2, "estado": "Suspendido", "plan_internet": {"nombre": "P"}},
    ]
    rules = MappingRules()
    mapped = mapped_per_selector(rows, [pair, site, pair], rules, [])
    assert list(mapped) == [pair, site]  # the HA pair's two targets share one mapping
    assert mapped[pair] == map_pass(rows, rules, [])
    assert set(mapped[pair].desired.subscribers) == {"10.10.1.5", "10.10.1.6"}
    assert set(mapped[site].desired.subscribers) == {"10.10.1.6"}
    assert mapped[site].rows == [rows[1]]


@given(
    st.ip_addresses(v=4).map(str),
    st.integers(min_value=8, max_value=32),
    st.ip_addresses(v=4).map(str),
)
def test_a_network_selector_takes_exactly_the_addresses_inside(base, prefix, address):
    network = ipaddress.ip_network(f"{base}/{prefix}", strict=False)
    row = {"id_servicio": 1, "ip": address}
    usable = Selector(networks=(ipaddress.ip_network("0.0.0.0/0"),)).matches(row)
    inside = ipaddress.ip_address(address) in network
    assert Selector(networks=(network,)).matches(row) is (usable and inside)


# The targets file ---------------------------------------------------------------------------


def connect(url: str, user: str, password: str, ca_bundle: str | None) -> Connection:
    if not url.startswith("https://"):
        raise ConfigError(f"not a host or http(s) URL: {url!r}")
    return Connection(url, 1, 1, 0, 1, 1, user=user, secret=password, ca_bundle=ca_bundle)


def entry(**fields: object) -> dict:
    return {"name": "core-a", "url": "https://10.0.0.1", "user": "sync", "password": "pw"} | fields


def parse(*entries: dict, env: dict | None = None) -> list:
    return parse_targets({"targets": list(entries)}, env or {}, connect, where="targets.yaml")


def test_a_good_file_gives_each_target_its_connection_and_selector():
    first, second = parse(
        entry(),
        {
            "name": "site-b",
            "url": "https://10.0.0.2",
            "user": "sync",
            "password_env": "SITE_B_PASSWORD",
            "networks": ["10.20.0.0/16"],
            "routers": [3, 7],
            "zonas": [2],
        },
        env={"SITE_B_PASSWORD": "from-env"},
    )
    assert (first.name, first.bqn.secret, first.selector.everyone) == ("core-a", "pw", True)
    assert second.bqn.secret == "from-env"
    assert second.selector.to_dict() == {
        "networks": ["10.20.0.0/16"],
        "routers": [3, 7],
        "zonas": [2],
    }
    assert "from-env" not in repr(second)
    assert "from-env" not in str(second.describe())


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"targets": []}, "`targets` must be a list of at least one BQN"),
        ({"targets": [entry()], "extra": 1}, "must hold one key, `targets`"),
        ([entry()], "must hold one key, `targets`"),
        ({"targets": [entry(name="Core A")]}, "target 1: name must be 1 to 40 of a-z"),
        ({"targets": [entry(), entry()]}, "target 'core-a': name used twice"),
        ({"targets": [entry(pasword="x")]}, "target 'core-a': unknown key 'pasword'"),
        ({"targets": [entry(password_env="X")]}, "target 'core-a': give password or"),
        ({"targets": [{k: v for k, v in entry().items() if k != "password"}]}, "exactly one"),
        ({"targets": [entry(user="")]}, "target 'core-a': user is missing"),
        ({"targets": [entry(url="ftp://x")]}, "target 'core-a': url: not a host"),
        ({"targets": [entry(networks=["10.10.0.1/16"])]}, "networks: 10.10.0.1/16 has host"),
        ({"targets": [entry(networks="10.0.0.0/8")]}, "networks must be a list"),
        ({"targets": [entry(routers=["3"])]}, "routers: WispHub ids are whole numbers"),
        ({"targets": [entry(zonas=[0])]}, "zonas: WispHub ids are whole numbers"),
        ({"targets": [entry(ca_bundle="/nonexistent.pem")]}, "ca_bundle: no such file"),
    ],
)
def test_a_bad_file_names_the_target_and_the_key(document, message):
    with pytest.raises(ConfigError, match=r"^targets\.yaml: ") as caught:
        parse_targets(document, {}, connect, where="targets.yaml")
    assert message in str(caught.value)


def test_a_password_variable_that_is_not_set_is_named():
    without = {k: v for k, v in entry(password_env="CORE_A_PW").items() if k != "password"}
    document = {"targets": [without]}
    with pytest.raises(ConfigError) as caught:
        parse_targets(document, {}, connect, where="targets.yaml")
    assert str(caught.value) == "targets.yaml: target 'core-a': password_env: CORE_A_PW is not set"


# One report of several targets -----------------------------------------------------------------


def report(*operations: Operation, failed: int | None = None, guard: str | None = None) -> Report:
    done = Report(dry_run=False, clients=len(operations), unchanged=2, planned=operations)
    for number, op in enumerate(operations):
        if number == failed:
            done.record_failure(op, "timed out")
        else:
            done.record_success(op)
    done.guard = guard
    return done


def write(ip: str, action: Action = Action.CREATE) -> Operation:
    return Operation(action, Kind.SUBSCRIBER, ip, {"policyRate": "Plan_10M"}, id_servicio=1)


def test_the_report_of_several_targets_names_each_operation_target():
    total = merged(
        {
            "core-a": report(write("10.0.0.1"), write("10.0.0.2", Action.UPDATE)),
            "core-b": report(write("10.0.0.1"), failed=0, guard="10 of 12 held back"),
        },
        clients=2,
    )
    assert [op.target for op in total.planned] == ["core-a", "core-a", "core-b"]
    assert total.counts() == {
        "created": 1, "updated": 1, "deleted": 0, "unchanged": 4, "skipped": 0, "failed": 1,
    }  # fmt: skip
    [failure] = total.failures
    assert failure.operation.target == "core-b"
    assert failure.operation.describe().endswith("on core-b")
    outcomes = [(op.target, found is failure) for op, found in total.results()]
    assert outcomes == [("core-a", False), ("core-a", False), ("core-b", True)]
    assert total.guard == "core-b: 10 of 12 held back"
    assert total.clients == 2


def test_the_one_default_target_names_none():
    only = report(write("10.0.0.1"))
    total = merged({"default": only}, clients=5)
    assert [op.target for op in total.planned] == [None]
    assert "on " not in total.planned[0].describe()
    assert total.clients == 5


def test_a_single_named_target_is_named():
    total = merged({"site-a": report(write("10.0.0.1"))}, clients=1)
    assert total.planned[0].to_dict()["target"] == "site-a"


def test_a_file_that_is_not_yaml_is_named_without_the_text_of_its_line(tmp_path):
    path = tmp_path / "targets.yaml"
    path.write_text(
        'targets:\n  - name: core-a\n    password: "S3cret-pa55" extra\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        read_targets(str(path), {}, connect)
    assert str(caught.value).startswith(f"BQN_TARGETS_FILE {path}: not valid YAML (")
    assert "line 3, column " in str(caught.value)
    assert "S3cret" not in str(caught.value)


def test_when_every_target_failed_a_transient_error_wins():
    refused, down = ConfigError("core-a: wrong password"), TransientError("core-b: timed out")
    with pytest.raises(TransientError):  # retried: core-b may answer later
        unless_all_failed({}, {"core-a": refused, "core-b": down})
    with pytest.raises(ConfigError):
        unless_all_failed({}, {"core-a": refused})
    assert unless_all_failed({"core-a": 1}, {"core-b": down}) == ({"core-a": 1}, {"core-b": down})


@pytest.mark.parametrize("place", [{"id": 3, "nombre": "Torre"}, 3, "3"])
def test_a_list_pass_keeps_the_router_a_selector_reads(place):
    row = {"id_servicio": 1, "ip": "10.0.0.1", "router": place, "telefono": "300"}
    assert Selector(routers=frozenset({3})).matches(slim(row))
    assert "telefono" not in slim(row)
