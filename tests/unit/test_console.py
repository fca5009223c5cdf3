"""What the status page's templates show, in words (`service.console`), and the per-process
keeping of the plans' states (`service.views.Kept`)."""

import time
from collections.abc import Iterator

import pytest
from flask import Flask
from flask_babel import Babel

from service import i18n
from service.console import ago, chart, describe_event, job, rate, shown, since, when, zone
from service.views import Kept
from worker.core.words import say_job
from worker.queue import runs


@pytest.fixture
def in_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process in `TZ=America/Bogota` (UTC-5 all year), as a web process started so."""
    monkeypatch.setenv("TZ", "America/Bogota")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        ("2026-12-07T18:05:09+00:00", "2026-12-07 13:05:09 -05"),
        ("2026-12-07T18:05:09.123+00:00", "2026-12-07 13:05:09 -05"),
        ("2026-12-07T13:05:09-05:00", "2026-12-07 13:05:09 -05"),
        ("2026-12-08T01:30:00+05:30", "2026-12-07 15:00:00 -05"),
        ("2026-12-07T18:05:09", "2026-12-07 13:05:09 -05"),  # no offset: UTC
        (1796666709.0, "2026-12-07 13:05:09 -05"),
        (1796666709, "2026-12-07 13:05:09 -05"),
        (None, ""),
    ],
)
def test_times_show_in_the_process_zone(in_zone, moment, text):
    """Fails if a time is shown in UTC, or its offset is read wrong."""
    assert when(moment) == text


def test_the_zone_is_named_once_with_its_abbreviation(in_zone):
    assert zone("America/Bogota") == "America/Bogota (-05)"
    assert zone(":America/Bogota") == "America/Bogota (-05)"
    assert zone(None) == "-05"


def test_the_chart_scales_to_the_busiest_hour_labelled_in_the_zone(in_zone):
    bars = chart([(0, {}), (3600, {"create": 6, "failed": 2}), (7200, {"update": 4})], height=80)
    assert [(bar.label, bar.ok, bar.failed) for bar in bars] == [
        ("19:00", 0, 0),  # the Unix epoch, in Bogotá
        ("20:00", 6, 2),
        ("21:00", 4, 0),
    ]
    assert bars[1].ok_height + bars[1].failed_height == 80
    assert bars[2].ok_height == 40
    assert chart([(0, {})])[0].ok_height == 0


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5 s ago"), (125, "2 min ago"), (7300, "2 h ago"), (90000, "1 d ago")]
)
def test_ago(seconds, text):
    assert ago(time.time() - seconds) == text
    assert ago(runs.iso(time.time() - seconds)) == text
    assert since(seconds) == text


@pytest.mark.parametrize(
    ("kbps", "text"),
    [(512, "512 kbps"), (1_000, "1 Mbps"), (1_500, "1.5 Mbps"), (1_000_000, "1 Gbps"), (None, "?")],
)
def test_rate(kbps, text):
    assert rate(kbps) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (["10.0.0.1", "10.0.0.2"], "10.0.0.1, 10.0.0.2"), ([], "(none)"), ("P", "P")],
)
def test_shown(value, text):
    assert shown(value) == text


def test_a_kept_value_is_read_again_only_when_old():
    """Fails if every page view reads the BQN again, or if a value is kept for ever."""
    reads = []

    def read():
        reads.append(1)
        return len(reads)

    kept = Kept(seconds=0.2)
    assert [kept.get(read), kept.get(read)] == [1, 1]
    time.sleep(0.25)
    assert kept.get(read) == 2


def test_nothing_is_not_kept():
    """Before a plan catalogue exists, the next view looks again at once."""
    answers = iter([None, "plans"])
    kept = Kept(seconds=60)
    assert kept.get(lambda: next(answers)) is None
    assert kept.get(lambda: next(answers)) == "plans"


@pytest.fixture
def spanish() -> Iterator[None]:
    """A request whose page is in Spanish, from the compiled catalog (`make` compiles it)."""
    app = Flask(__name__)
    Babel(app, default_translation_directories=str(i18n.TRANSLATIONS), locale_selector=lambda: "es")
    with app.test_request_context():
        yield


@pytest.mark.parametrize(
    ("facts", "english", "spanish_words"),
    [
        ({"kind": "client", "id": 7}, "sync of client 7", "sincronización del cliente 7"),
        ({"kind": "batch", "count": 1}, "batch of 1 client", "lote de 1 cliente"),
        ({"kind": "batch", "count": 3}, "batch of 3 clients", "lote de 3 clientes"),
        (
            {"kind": "address", "ip": "10.0.0.9", "target": "core-b"},
            "sync of address 10.0.0.9 on core-b",
            "sincronización de la dirección 10.0.0.9 en core-b",
        ),
        (
            {"kind": "reconcile", "target": None, "dry_run": True, "forced": False},
            "full reconcile (dry run)",
            "conciliación completa (simulacro)",
        ),
        ({"kind": "other", "name": "some job"}, "some job", "some job"),
    ],
)
def test_a_job_in_the_page_s_language(spanish, facts, english, spanish_words):
    """Fails if the page words a job from a second table of kinds that drifts from the English
    one (`worker.core.words`), or leaves it in English, or gets a Spanish plural wrong."""
    assert say_job(facts) == english
    assert job({"job": facts, "description": english}) == spanish_words
    assert job({"description": english}) == english  # cleared before jobs kept their facts


def test_a_history_step_and_an_age_in_spanish(spanish):
    """Fails if a history step or an age is built in English on a Spanish page."""
    event = {
        "event": "operation",
        "action": "update",
        "kind": "subscriber",
        "key": "10.0.0.9",
        "policy": "Plan_10M",
        "result": "ok",
    }
    assert (
        describe_event(event)
        == "BQN: actualizar suscriptor 10.0.0.9 con la política Plan_10M: hecho"
    )
    done = {"event": "done", "ok": True, "created": 1, "updated": 2}
    assert describe_event(done) == "terminado: 1 creada, 2 actualizadas"
    assert since(5) == "hace 5 s"
    assert ago(None) == "nunca"
