"""Finding clients (`GET /api/v1/clients?q=`) from the index of the last complete WispHub pass,
through the real poll and reconcile jobs, a real Redis and the WispHub simulator."""

from __future__ import annotations

import logging
import random
import unicodedata

import pytest
from rq.job import Job

from tests.integration.conftest import API, API_TOKEN
from tests.rows import row
from worker.core.search import normal_cedula, parse_query
from worker.queue import client_index, store
from worker.rqworker import PromptStop

pytestmark = pytest.mark.integration

PLAN = "Online_basico"
CLIENTS = [
    row(
        101, "10.10.1.5", nombre="José Pérez", plan=PLAN, usuario="jperez@isp", cedula="1234567890"
    ),
    row(102, "10.10.1.77", nombre="Josefina Peralta", plan=PLAN, usuario="jperalta@isp"),
    row(103, "10.10.10.9", "Suspendido", PLAN, "PEREZ JOSE ANTONIO", usuario="aperez@isp"),
    row(104, "172.16.0.3", nombre="0104maria_godoy_urrea", plan=PLAN, usuario="mgodoy@isp"),
]


def poll(queue, redis, work):
    """Run the poller once now (and the syncs it queues); its result."""
    if redis.exists(store.SNAPSHOT_TAKEN):
        redis.set(store.SNAPSHOT_TAKEN, 0)  # the last pass is old: this poll is not skipped
    job = queue.enqueue("worker.jobs.poll_changes")
    work()
    result = Job.fetch(job.id, connection=redis).return_value()
    assert result["ok"], result
    return result


def search(web, q, **params):
    response = web.get("/api/v1/clients", headers=API, query_string={"q": q, **params})
    assert response.status_code == 200, response.json
    return response.json


def found(web, q, **params):
    answer = search(web, q, **params)
    return answer["total"], [(hit["id_servicio"], hit["matched"]) for hit in answer["hits"]]


@pytest.fixture
def polled(wisphub_sim, queue, redis, work, caplog):
    caplog.set_level(logging.DEBUG)
    for client in CLIENTS:
        wisphub_sim.state.upsert_client(client)
    poll(queue, redis, work)


def test_a_poll_pass_makes_clients_findable_by_what_the_operator_knows(
    web, polled, wisphub_sim, caplog
):
    """Fails if a way of searching is lost (accents, word order, address prefixes, a cédula
    written with dots, the PPPoE user), or if a search calls WispHub."""
    before = wisphub_sim.state.stats.count()
    cases = {
        "jose perez": (2, [(101, "name"), (103, "name")]),
        "PÉREZ josé": (2, [(101, "name"), (103, "name")]),
        "Jose Perez": (2, [(101, "name"), (103, "name")]),
        "jose per": (3, [(101, "name"), (102, "name"), (103, "name")]),
        "maria godoy": (1, [(104, "name")]),
        "10.10.1.5": (1, [(101, "ip")]),
        "10.10.1.": (2, [(101, "ip"), (102, "ip")]),
        "10.10.1": (3, [(101, "ip"), (102, "ip"), (103, "ip")]),
        "1.234.567.890": (1, [(101, "cedula")]),
        "1-234-567-890": (1, [(101, "cedula")]),
        "JPEREZ@isp": (1, [(101, "usuario")]),
        "jper": (2, [(102, "usuario"), (101, "usuario")]),
        "104": (1, [(104, "id")]),
        "nadie": (0, []),
    }
    assert {q: found(web, q) for q in cases} == cases
    assert wisphub_sim.state.stats.count() == before, "a search called WispHub"
    assert found(web, "jose", limit="1") == (3, [(101, "name")])
    for personal in ("José", "Pérez", "PEREZ", "1234567890", "jperez"):
        assert personal not in caplog.text


def test_a_hit_says_what_wisphub_had_what_the_bqn_holds_and_how_the_last_sync_went(web, polled):
    """Fails if a hit leaves out the client's data, its BQN entries or its last outcome."""
    answer = search(web, "José Pérez")
    assert answer["pass"]["clients"] == len(CLIENTS)
    hit = answer["hits"][0]
    assert {key: hit[key] for key in ("id_servicio", "name", "ips", "estado", "plan")} == {
        "id_servicio": 101,
        "name": "José Pérez",
        "ips": ["10.10.1.5"],
        "estado": "Activo",
        "plan": PLAN,
    }
    assert hit["applied_on"] == {
        "default": {"subscriber_id": "José Pérez", "ips": ["10.10.1.5"], "group": None}
    }
    assert (hit["last_sync"]["event"], hit["last_sync"]["ok"]) == ("done", True)


def test_a_change_in_wisphub_shows_after_the_next_complete_pass(
    web, polled, wisphub_sim, queue, redis, work
):
    """The index is the last complete pass: a change is not seen before the next one (no
    WispHub call per search), and is seen after it (fails if a pass does not replace the
    index, or leaves the old document behind)."""
    wisphub_sim.state.update_client(
        101, nombre="José Pérez Gómez", ip="10.10.2.9", estado="Suspendido"
    )
    assert found(web, "gomez") == (0, [])
    first = redis.hget(client_index.POINTER, "version").decode()
    poll(queue, redis, work)
    [hit] = search(web, "jose gomez")["hits"]
    assert (hit["id_servicio"], hit["ips"], hit["estado"]) == (101, ["10.10.2.9"], "Suspendido")
    assert found(web, "10.10.1.5") == (0, [])
    assert hit["applied_on"]["default"]["ips"] == ["10.10.2.9"]
    assert not redis.exists(client_index.document_key(first)), "the old document was kept"
    assert len(list(redis.scan_iter(client_index.DOCUMENT_PREFIX + "*"))) == 1


def test_a_reconcile_pass_makes_the_index_too(web, wisphub_sim, work):
    """Fails if only the poller writes the index (the first pass of a fresh service is often
    the start-up reconcile's)."""
    for client in CLIENTS:
        wisphub_sim.state.upsert_client(client)
    assert web.post("/api/v1/reconcile", headers=API).status_code == 202
    work()
    assert found(web, "peralta") == (1, [(102, "name")])


def test_before_any_pass_the_search_says_so(web):
    assert search(web, "jose") == {"total": 0, "hits": [], "pass": None}


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ({"q": "jose"}, 401, "unauthorized"),
        ({}, 400, "q is required"),
        ({"q": "   "}, 400, "q is required"),
        ({"q": "x" * 101}, 400, "at most 100"),
        ({"q": "jose", "limit": "0"}, 400, "from 1 to 100"),
        ({"q": "jose", "limit": "101"}, 400, "from 1 to 100"),
        ({"q": "jose", "limit": "ten"}, 400, "from 1 to 100"),
    ],
)
def test_bad_searches_are_refused(web, query, status, words):
    headers = {} if status == 401 else API
    response = web.get("/api/v1/clients", headers=headers, query_string=query)
    assert response.status_code == status
    assert words in response.json["message"] or words == response.json["error"]


def test_a_wrong_token_is_refused(web):
    response = web.get("/api/v1/clients?q=jose", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert API_TOKEN not in response.get_data(as_text=True)


def values(redis):
    """Every key and value Redis holds, as bytes."""
    for key in redis.scan_iter(count=1000):
        yield key
        kind = redis.type(key).decode()
        if kind == "string":
            yield redis.get(key)
        elif kind == "hash":
            for field, value in redis.hgetall(key).items():
                yield field + b" " + value
        elif kind == "list":
            yield from redis.lrange(key, 0, -1)
        elif kind == "set":
            yield from redis.smembers(key)
        elif kind == "zset":
            yield from redis.zrange(key, 0, -1)
        elif kind == "stream":
            for _, fields in redis.xrange(key):
                yield from fields.values()


def cedulas_held(redis, cedulas):
    held = b"\n".join(values(redis)).decode(errors="replace")
    assert client_index.POINTER in held  # the scan saw the index
    return [cedula for cedula in cedulas if cedula in held]


def test_no_cedula_in_an_answer_nor_in_redis(web, wisphub_sim, queue, redis, work):
    """Seeded clients, each with a cédula: after a pass, with the syncs it queued still
    waiting, then run, and searches by cédula, the cédulas are nowhere in Redis nor in the
    answers (fails if the index, or the rows the pass hands its sync jobs, kept them)."""
    rows = wisphub_sim.load(120)
    cedulas = [normal_cedula(client["cedula"]) for client in rows]
    assert all(len(cedula) >= 9 for cedula in cedulas)
    job = queue.enqueue("worker.jobs.poll_changes")
    PromptStop([queue], connection=redis).work(burst=True, max_jobs=1)
    assert Job.fetch(job.id, connection=redis).return_value()["jobs"], "no sync was queued"
    assert cedulas_held(redis, cedulas) == []
    work()
    for client in rows[:10]:
        cedula = client["cedula"]
        dotted = f"{cedula[:-6]}.{cedula[-6:-3]}.{cedula[-3:]}"
        answer = web.get("/api/v1/clients", headers=API, query_string={"q": dotted})
        assert [hit["id_servicio"] for hit in answer.json["hits"]] == [client["id_servicio"]]
        assert cedula not in answer.get_data(as_text=True)
    assert cedulas_held(redis, cedulas) == []


def plain(text):
    """Folded the way a test can tell independently of the code: the seed's names are Latin."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


@pytest.mark.slow
def test_a_10000_client_pass(web, wisphub_sim, queue, redis, work, monkeypatch):
    """The poller's pass over 10,000 seeded clients (the fingerprints alone: no BQN comparison,
    nothing queued), then searches whose answers are worked out here from the rows: fails if
    a client is missed or counted twice at that size."""
    rows = wisphub_sim.load(10_000)
    monkeypatch.setenv("POLL_BQN_EVERY", "1000")
    redis.incr(store.POLLS)  # the first pass is not one that compares with the BQN
    result = poll(queue, redis, work)
    assert (result["clients"], result["drift"], result["jobs"]) == (10_000, None, [])
    assert search(web, "x")["pass"]["clients"] == 10_000
    picked = random.Random(17).sample(rows, 25)
    for client in picked:
        key = client["id_servicio"]
        assert found(web, str(key))[1][0] == (key, "id")
        cedula = client["cedula"]
        assert found(web, f"{cedula[:3]}.{cedula[3:6]}-{cedula[6:]}") == (1, [(key, "cedula")])
        assert (key, "usuario") in found(web, client["usuario"].upper())[1]
        words = plain(client["nombre"]).split()
        typed = " ".join(reversed(words[:2]))
        expected = {
            other["id_servicio"]
            for other in rows
            if all(word in plain(other["nombre"]) for word in typed.split())
        }
        answer = search(web, typed, limit="100")
        names = {hit["id_servicio"] for hit in answer["hits"] if hit["matched"] == "name"}
        assert names <= expected
        if " " in typed:  # words: nothing but names can match
            assert answer["total"] == len(expected)
        if len(expected) <= 100:
            assert key in {hit["id_servicio"] for hit in answer["hits"]}
    for prefix in ("10.10.1.", "172.16.", "192.168.3"):
        expected = {
            other["id_servicio"]
            for other in rows
            if any(ip.startswith(prefix) for ip in other["ip"].replace(",", " ").split())
        }
        assert search(web, prefix)["total"] == len(expected) > 0


def test_an_older_pass_finishing_late_never_replaces_a_newer_one(redis):
    """A reconcile's pass read before the poller's, but done after it, leaves the poller's
    index (fails if the last writer wins, or if the loser's document is left behind)."""
    newer, older = [row(1, nombre="Nuevo")], [row(1, nombre="Viejo")]
    assert client_index.save(redis, newer, read_at=200.0)
    assert not client_index.save(redis, older, read_at=100.0)
    indexed = client_index.Copy().current(redis)
    assert (indexed.read_at, len(indexed.index)) == (200.0, 1)
    [hit] = indexed.index.search(parse_query("nuevo", b"key"), 5).hits
    assert hit.entry.name == "Nuevo"
    assert len(list(redis.scan_iter(client_index.DOCUMENT_PREFIX + "*"))) == 1


def test_a_pass_that_changed_nothing_writes_no_document(redis):
    """Fails if every pass rewrites the index (20 MB at 100,000 clients, every minute)."""
    rows = [row(1, nombre="Ana"), row(2, nombre="Beto")]
    assert client_index.save(redis, rows, read_at=100.0)
    sets = redis.info("commandstats")["cmdstat_set"]["calls"]
    assert client_index.save(redis, list(reversed(rows)), read_at=160.0)
    assert redis.info("commandstats")["cmdstat_set"]["calls"] == sets
    assert client_index.Copy().current(redis).read_at == 160.0


def counted(monkeypatch, name: str) -> list[int]:
    """Count the calls of `client_index`'s `name` (still made): one item a call."""
    calls: list[int] = []
    real = getattr(client_index, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(client_index, name, spy)
    return calls


def test_a_pass_with_the_indexed_rows_builds_no_document(redis, monkeypatch):
    """Fails if a pass with the rows of the current document builds it again (seconds of CPU at
    100,000 clients, every poll), or if a changed pass, or one whose document was lost, is not
    indexed anew."""
    built = counted(monkeypatch, "encode")
    rows = [row(1, nombre="Ana"), row(2, nombre="Beto")]
    assert client_index.save(redis, rows, read_at=100.0)
    version = redis.hget(client_index.POINTER, "version")
    sets = redis.info("commandstats")["cmdstat_set"]["calls"]
    assert client_index.save(redis, list(reversed(rows)), read_at=160.0)
    assert len(built) == 1, "the same rows, in another order, were encoded again"
    assert redis.info("commandstats")["cmdstat_set"]["calls"] == sets
    assert redis.hget(client_index.POINTER, "version") == version
    assert client_index.Copy().current(redis).read_at == 160.0

    changed = [row(1, nombre="Ana"), row(2, nombre="Berta")]
    assert client_index.save(redis, changed, read_at=220.0)
    assert len(built) == 2
    indexed = client_index.Copy().current(redis)
    assert indexed.version != version.decode()
    [hit] = indexed.index.search(parse_query("berta", b"key"), 5).hits
    assert hit.entry.id_servicio == 2

    redis.delete(client_index.document_key(indexed.version))
    assert client_index.save(redis, changed, read_at=280.0)
    assert len(built) == 3
    assert client_index.Copy().current(redis).version == indexed.version


def test_the_rows_digest_changes_with_any_row_and_the_release(monkeypatch):
    """Fails if two passes that differ in any field of any row, or one built by another
    release, have the same digest (the index would keep the old document)."""
    rows = [row(1, nombre="Ana"), row(2, nombre="Beto", cedula_digest="ab12")]
    same = client_index.digest(rows)
    assert client_index.digest(list(reversed(rows))) == same
    assert client_index.digest([rows[0], {**rows[1], "cedula_digest": "ab13"}]) != same
    assert client_index.digest([rows[0], {**rows[1], "nombre": "Beto\n"}]) != same
    assert client_index.digest(rows[:1]) != same
    monkeypatch.setattr(client_index, "ENCODER", client_index.ENCODER + "+1")
    assert client_index.digest(rows) != same
