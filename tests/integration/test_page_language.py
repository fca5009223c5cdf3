"""The pages in Spanish or English (issue 17, "Spanish first"): the sign-in page and the page
shown while Redis is down, rendered by the app against a real Redis, each declaring its
language; the JSON API stays English whatever the browser asks for."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient
from flask_babel import format_datetime
from werkzeug.test import TestResponse

from sandbox.redis_server import RedisServer
from service import i18n
from service.app import create_app
from tests.integration.conftest import API, API_TOKEN, notify
from tests.integration.test_client_page import polled  # noqa: F401 (a fixture)
from tests.rows import row

pytestmark = pytest.mark.integration

# What a browser sends for a page.
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
SIGN_IN = {
    "es": ("Iniciar sesión", "Token de la API", "autenticación HTTP básica"),
    "en": ("Sign in", "API token", "HTTP basic auth"),
}
REDIS_DOWN = {
    "es": ("Redis no responde", "Vuelva a cargar esta página", "«Otras respuestas»"),
    "en": ("Redis is unreachable", "Reload this page", '"Other answers"'),
}


@pytest.fixture
def web(app) -> FlaskClient:
    """A client that asks for no language unless a test says so (conftest's asks for English)."""
    return app.test_client()


def in_language(response: TestResponse, language: str, words: dict[str, tuple[str, ...]]) -> None:
    """The page is in `language`, says so, and holds no sentence of the other one."""
    html = response.get_data(as_text=True)
    assert re.search(r'<html lang="([a-z]+)">', html).group(1) == language
    assert response.headers["Content-Language"] == language
    for other, sentences in words.items():
        for sentence in sentences:
            assert (sentence in html) == (other == language), sentence


@pytest.mark.parametrize(
    ("accept_language", "language"),
    [
        ("es-CO,es;q=0.9,en;q=0.8", "es"),
        ("es-419", "es"),
        ("en-US,en;q=0.9", "en"),
        ("es;q=0.5, en;q=0.9", "en"),
        ("fr-FR,fr;q=0.9", "es"),  # neither: Spanish
        (None, "es"),  # a client that says nothing
    ],
)
def test_the_sign_in_page_speaks_the_browser_s_language(
    web: FlaskClient, accept_language: str | None, language: str
) -> None:
    headers = {} if accept_language is None else {"Accept-Language": accept_language}
    response = web.get("/login", headers=headers)
    assert response.status_code == 200
    in_language(response, language, SIGN_IN)
    assert "Accept-Language" in response.vary  # a cache keeps one copy per language


@pytest.mark.parametrize(("forced", "accept_language"), [("en", "es-CO"), ("es", "en-US")])
def test_ui_language_forces_the_language_whatever_the_browser_asks(
    service_env: dict[str, str], redis, forced: str, accept_language: str
) -> None:
    web = create_app({**service_env, "UI_LANGUAGE": forced}).test_client()
    response = web.get("/login", headers={"Accept-Language": accept_language})
    in_language(response, forced, SIGN_IN)
    assert "Accept-Language" not in response.vary


@pytest.mark.parametrize(
    ("tz", "shown"),
    [
        ("America/Bogota", "07/12/2026 07:00"),
        (":America/Bogota", "07/12/2026 07:00"),
        (None, "07/12/2026 12:00"),
    ],
)
def test_flask_babel_s_dates_are_in_the_zone_of_tz(
    service_env: dict[str, str], redis, tz: str | None, shown: str
) -> None:
    """Its date filters follow `TZ` as the C library does (UTC without it): a template using
    them would otherwise show UTC, five hours off in Bogotá."""
    env = service_env if tz is None else {**service_env, "TZ": tz}
    app = create_app(env)
    noon = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    with app.test_request_context(headers={"Accept-Language": "es-CO"}):
        assert format_datetime(noon, "dd/MM/yyyy HH:mm") == shown


def test_a_web_process_without_its_compiled_catalog_says_so_at_start(
    service_env: dict[str, str], redis, monkeypatch, tmp_path, caplog
) -> None:
    """An install that skipped `pybabel compile` would show English pages without a word."""
    monkeypatch.setattr(i18n, "TRANSLATIONS", tmp_path)
    create_app(service_env)
    assert "no compiled catalog for es: pages show English" in caplog.text


def test_with_redis_down_the_page_says_so_in_the_browser_s_language_and_the_api_in_english(
    service_env: dict[str, str], tmp_path
) -> None:
    with RedisServer(tmp_path) as server:
        client = create_app({**service_env, "REDIS_URL": server.url}).test_client()
        assert client.post("/login", data={"token": API_TOKEN}).status_code == 302
        server.stop()
        spanish = client.get("/", headers={**BROWSER, "Accept-Language": "es-CO"})
        english = client.get("/", headers={**BROWSER, "Accept-Language": "en-GB"})
        api = client.get("/api/v1/failures", headers={**API, **BROWSER, "Accept-Language": "es"})
    assert spanish.status_code == english.status_code == 503
    in_language(spanish, "es", REDIS_DOWN)
    in_language(english, "en", REDIS_DOWN)
    assert api.status_code == 503
    assert api.json["message"] == "the job queue (Redis) is unreachable; retry"
    assert "Content-Language" not in api.headers


# The console's sentences in each language: a page in one holds its own and none of the other's
# (a message left out of the catalog, or a phrase built in English, shows the English one).
OVERVIEW = {
    "es": (
        "Buscar un cliente",
        "Última conciliación completa",
        "Pausar escrituras",
        "Horas en",
        "No hay trabajos fallidos.",
        "Operaciones en el BQN por hora",
    ),
    "en": (
        "Find a client",
        "Last full reconcile",
        "Pause writes",
        "Times in",
        "No failed jobs.",
        "BQN operations per hour",
    ),
}
CLIENT = {
    "es": (
        "Sincronizar este cliente ahora",
        "Qué cambiaría",
        "WispHub junto al BQN",
        "Historial",
        "WispHub dice: estado Activo",
        "BQN: crear suscriptor 10.10.1.5",
    ),
    "en": (
        "Sync this client now",
        "What would change",
        "WispHub beside the BQN",
        "History",
        "WispHub says: estado Activo",
        "BQN: create subscriber 10.10.1.5",
    ),
}
FOUND = {"es": ("2 clientes encontrados", "Encontrado por"), "en": ("2 clients found", "Found by")}


@pytest.mark.usefixtures("polled")
@pytest.mark.parametrize(("accept_language", "language"), [("es-CO", "es"), ("en-US", "en")])
def test_the_console_speaks_the_browser_s_language(
    web: FlaskClient, accept_language: str, language: str
) -> None:
    """Fails if a heading, a button, a history step or a count of the overview, the client page
    or the search results is left in English (or is English only) for es-CO."""
    headers = {**API, "Accept-Language": accept_language}
    for path, words in (
        ("/", OVERVIEW),
        ("/clients/101", CLIENT),
        ("/clients?q=jose+perez", FOUND),
    ):
        response = web.get(path, headers=headers)
        assert response.status_code == 200, path
        in_language(response, language, words)


def test_what_the_worker_wrote_is_said_in_the_page_s_language(
    web: FlaskClient, work, wisphub_sim, bqn_sim
) -> None:
    """A failure's error and the breaker's last error (written by the worker, in English, as
    the API keeps them) read in Spanish on a Spanish page, in English on an English one; the
    search box's own errors too. Fails if a sentence of `worker.core.phrases` reaches the page
    as written, or if the API's answer stops being English."""
    wisphub_sim.state.upsert_client(row(131, "10.13.0.1", nombre="C131", plan="Online_basico"))
    bqn_sim.state.password = "not-the-password"
    notify(web, 131)
    work()
    api = web.get("/api/v1/failures", headers={**API, "Accept-Language": "es-CO"}).json
    assert api["failures"][0]["error"].startswith("BQN answered 401: the BQN refused the REST")
    said = {
        "es": ("BQN respondió 401: el BQN rechazó el usuario o la contraseña REST",),
        "en": ("BQN answered 401: the BQN refused the REST user or password",),
    }
    too_long = {
        "es": ("q tiene 101 caracteres; como mucho 100",),
        "en": ("q is 101 characters long; at most 100",),
    }
    for accept_language, language in (("es-CO", "es"), ("en-US", "en")):
        headers = {**API, "Accept-Language": accept_language}
        in_language(web.get("/", headers=headers), language, said)
        searched = web.get("/clients?q=" + "x" * 101, headers=headers)
        assert searched.status_code == 400
        in_language(searched, language, too_long)
