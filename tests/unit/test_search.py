"""Client search (pure): folding names, cédula digests, the index document, and what a typed
text finds."""

import unicodedata
from dataclasses import replace
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.rows import row
from worker.core import search
from worker.core.search import (
    CEDULA_DIGEST,
    Entry,
    Index,
    IndexFormatError,
    cedula_digest,
    cedula_key,
    encode,
    entries,
    entry,
    fold,
    normal_cedula,
    parse_query,
    searchable,
)

KEY = cedula_key("Xy12ab34.0123456789abcdef0123456789abcdef")


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("José Pérez", "jose perez"),
        ("PÉREZ JOSÉ", "perez jose"),
        ("Ñandú Güemes", "nandu guemes"),
        ("0026maria_godoy_urrea", "0026maria_godoy_urrea"),
        ("Straße", "strasse"),  # case folding, not lower-casing
        ("İnés", "ines"),  # the dot case folding brings back is dropped too
        ("\uff2a\uff2f\uff33\uff25", "jose"),  # full-width JOSE: a compatibility form
        ("Ångström", "angstrom"),
    ],
)
def test_fold(text, folded):
    assert fold(text) == folded


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("1.234.567.890", "1234567890"),
        ("1-234-567-890", "1234567890"),
        (" 1 234 567 890 ", "1234567890"),
        (1234567890, "1234567890"),
        ("V-12.345.678", "v12345678"),
        ("\uff11\uff12\uff13\uff14\uff15", "12345"),  # full-width digits
        ("", ""),
        (None, ""),
        (True, ""),
        (["1"], ""),
    ],
)
def test_normal_cedula(raw, normal):
    assert normal_cedula(raw) == normal


def test_a_cedula_digest_is_keyed_and_ignores_how_the_cedula_is_written():
    digest = cedula_digest(KEY, "1.234.567.890")
    assert digest == cedula_digest(KEY, "1234567890") == cedula_digest(KEY, 1234567890)
    assert digest != cedula_digest(cedula_key("another WispHub key"), "1234567890")
    assert digest != cedula_digest(KEY, "1234567891")
    assert cedula_digest(KEY, " .- ") is None
    assert "1234567890" not in digest


def test_a_searchable_row_keeps_the_cedula_digest_never_the_cedula():
    full = row(7, cedula="1.234.567.890", telefono="+57 300", email="a@b.example")
    kept = searchable(full, KEY)
    assert kept[CEDULA_DIGEST] == cedula_digest(KEY, "1234567890")
    assert {"cedula", "telefono", "email", "password_servicio", "ip_local"}.isdisjoint(kept)
    assert kept["nombre"] == "cliente"
    assert CEDULA_DIGEST not in searchable(row(8), KEY)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, Entry(7, "Ana", ("10.0.0.1",), "Activo", "Plan 10M", "Ana@isp")),
        ({"ip": "10.1.1.1, 10.1.1.2"}, {"ips": ("10.1.1.1", "10.1.1.2")}),
        ({"ip": "  "}, {"ips": ()}),
        ({"ip": None}, {"ips": ()}),
        ({"plan_internet": None}, {"plan": None}),
        ({"plan_internet": 439219}, {"plan": None}),
        ({"nombre": None, "usuario": None}, {"name": "", "usuario": None}),
        ({"nombre": " Ana "}, {"name": "Ana"}),
        ({CEDULA_DIGEST: "abc"}, {"cedula": "abc"}),
    ],
)
def test_entry(fields, expected):
    found = entry({**row(7, nombre="Ana"), **fields})
    if isinstance(expected, Entry):
        assert found == expected
    else:
        assert {name: getattr(found, name) for name in expected} == expected


def test_rows_without_an_id_have_no_entry():
    assert entry({**row(1), "id_servicio": None}) is None
    assert entries([row(1), {"nombre": "x"}, row(2)]) == [entry(row(1)), entry(row(2))]


def client(id_servicio, name, ip, usuario=None, cedula=None, estado="Activo", plan="Plan 10M"):
    digest = cedula_digest(KEY, cedula)
    ips = tuple(ip.split()) if ip else ()
    return Entry(id_servicio, name, ips, estado, plan, usuario, digest)


CLIENTS = [
    client(101, "José Pérez", "10.10.1.5", "jperez@isp", "1.234.567.890"),
    client(102, "Josefina Peralta", "10.10.1.77", "jperalta@isp"),
    client(103, "PEREZ JOSE ANTONIO", "10.10.10.9", "aperez@isp", estado="Suspendido"),
    client(104, "0104maria_godoy_urrea", "172.16.0.3", "0104maria_godoy_urrea@isp"),
    client(105, "Ana Gómez", "10.20.0.1 10.20.0.2", "agomez@isp", plan=None),
    client(10, "Diez", "10.30.0.10", "101@isp"),
    client(106, "", "10.40.0.1", None, estado=None),
]
INDEX = Index.decode(encode(CLIENTS))


def found(text, limit=20):
    result = INDEX.search(parse_query(text, KEY), limit)
    return result.total, [(hit.entry.id_servicio, hit.matched) for hit in result.hits]


@pytest.mark.parametrize(
    ("text", "total", "hits"),
    [
        # names: every word a part of the name, in any order, accents and case aside
        ("jose perez", 2, [(101, "name"), (103, "name")]),
        ("PÉREZ josé", 2, [(101, "name"), (103, "name")]),
        ("jose per", 3, [(101, "name"), (102, "name"), (103, "name")]),
        ("  jose   jose  ", 3, [(101, "name"), (102, "name"), (103, "name")]),
        ("godoy maria", 1, [(104, "name")]),
        ("gomez", 1, [(105, "name")]),
        ("perez ana", 0, []),
        # addresses: exact first, then those starting with the text, in address order
        ("10.10.1.5", 1, [(101, "ip")]),
        ("10.10.1.", 2, [(101, "ip"), (102, "ip")]),
        ("10.10.1", 3, [(101, "ip"), (102, "ip"), (103, "ip")]),
        ("10.20.0.2", 1, [(105, "ip")]),
        ("10.20.", 1, [(105, "ip")]),  # two addresses, one client
        # cédula: however written, exact only
        ("1.234.567.890", 1, [(101, "cedula")]),
        ("1234567890", 1, [(101, "cedula")]),
        ("1-234-567-890", 1, [(101, "cedula")]),
        ("1.234.567", 0, []),
        # PPPoE user: exact, case aside, then by its start
        ("JPEREZ@ISP", 1, [(101, "usuario")]),
        ("jper", 2, [(102, "usuario"), (101, "usuario")]),
        # service id: exact, before a usuario starting with it or a name holding it
        ("104", 1, [(104, "id")]),
        ("0104", 1, [(104, "id")]),
        ("10", 2, [(10, "id"), (104, "name")]),
        ("nadie", 0, []),
    ],
)
def test_search(text, total, hits):
    assert found(text, limit=3) == (total, hits[:3])


def test_the_limit_cuts_the_hits_not_the_total():
    assert found("jose", limit=1) == (3, [(101, "name")])
    assert found("10.", limit=2) == (6, [(101, "ip"), (102, "ip")])


def test_a_hit_shows_the_client_never_its_cedula():
    [hit] = INDEX.search(parse_query("1.234.567.890", KEY), 5).hits
    assert hit.entry.to_dict() == {
        "id_servicio": 101,
        "name": "José Pérez",
        "usuario": "jperez@isp",
        "ips": ["10.10.1.5"],
        "estado": "Activo",
        "plan": "Plan 10M",
    }
    [nameless] = INDEX.search(parse_query("10.40.0.1", KEY), 5).hits
    assert nameless.entry.to_dict()["estado"] is None


def test_a_client_is_got_by_its_id_without_its_cedula():
    """The client page reads the client from the pass: fails if `get` returns another
    client's place or leaks the cédula's digest into what a page shows."""
    for item in CLIENTS:
        assert INDEX.get(item.id_servicio) == replace(item, cedula=None)
    assert INDEX.get(999) is None


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("jose perez", {"words": ("jose", "perez"), "usuario": None, "ip": None}),
        ("104", {"id_servicio": 104, "usuario": "104", "ip": None}),
        ("0", {"id_servicio": None}),
        ("10.10.1", {"ip": "10.10.1", "id_servicio": None}),
        ("FE80::1", {"ip": "fe80::1"}),
        ("10.10 .1", {"ip": None, "usuario": None}),
        ("ana", {"cedula": None}),
        ("1.234", {"cedula": cedula_digest(KEY, "1234")}),
    ],
)
def test_parse_query(text, fields):
    query = parse_query(text, KEY)
    assert {name: getattr(query, name) for name in fields} == fields


def test_the_document_depends_on_the_clients_not_their_order():
    assert encode(CLIENTS) == encode(list(reversed(CLIENTS)))
    assert encode(CLIENTS) != encode(CLIENTS[1:])


@pytest.mark.parametrize("blob", [b"not json", b"[]", b'{"format": 0}'])
def test_a_document_of_another_format_is_refused(blob):
    with pytest.raises(IndexFormatError):
        Index.decode(blob)


# Properties ------------------------------------------------------------------------------

LETTERS = "abcdefghijklmnopqrstuvwxyzñáéíóúüçàèãõABCDEFGHIJKLMNOPQRSTUVWXYZÑÁÉÍÓÚÜ0123456789_"
word = st.text(alphabet=LETTERS, min_size=1, max_size=10)
# a name typed with a line break in it still holds its words
name = st.builds(
    str.join, st.sampled_from([" ", "  ", "\n"]), st.lists(word, min_size=1, max_size=4)
)


@given(st.text())
def test_folding_twice_changes_nothing(text):
    assert fold(fold(text)) == fold(text)


@given(name)
def test_accents_and_case_make_no_difference(text):
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    assert fold(text) == plain.lower()


@given(st.lists(name, min_size=1, max_size=8, unique=True), st.data())
def test_any_name_is_found_by_any_of_its_own_words(names, data):
    clients = [client(at + 1, text, f"10.0.0.{at + 1}") for at, text in enumerate(names)]
    index = Index.decode(encode(clients))
    at = data.draw(st.integers(0, len(names) - 1))
    typed = data.draw(st.sampled_from(names[at].split()))
    typed = data.draw(st.sampled_from([typed, typed.upper(), fold(typed)]))
    result = index.search(parse_query(typed, KEY), len(names) + 1)
    assert at + 1 in [hit.entry.id_servicio for hit in result.hits]


@pytest.mark.parametrize("sparse", [0, 10**9], ids=["occurrence-by-occurrence", "name-by-name"])
@given(names=st.lists(name, min_size=1, max_size=30), typed=st.lists(word, min_size=1, max_size=3))
def test_names_found_are_those_holding_every_word(sparse, names, typed):
    """Both ways of looking for the first word find the same names as a plain loop."""
    clients = [client(at + 1, text, "") for at, text in enumerate(names)]
    index = Index.decode(encode(clients))
    with patch.object(search, "SPARSE", sparse):
        result = index.search(parse_query(" ".join(typed), KEY), 100)
    plain = [fold(text) for text in names]
    expected = {
        at + 1 for at, text in enumerate(plain) if all(fold(part) in text for part in typed)
    }
    matched = {hit.entry.id_servicio: hit.matched for hit in result.hits}
    # every such name is found, and only those by name (typing "4" finds client 4 by its id)
    assert expected <= matched.keys()
    assert {key for key, how in matched.items() if how == "name"} <= expected
