"""The pages' language and zone (service/i18n.py) and the UI_LANGUAGE setting, without an app."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from service.i18n import choose_language, page_zone
from worker.core.errors import ConfigError
from worker.settings import ServiceSettings

REDIS = {"REDIS_URL": "redis://127.0.0.1:6399/0"}


@pytest.mark.parametrize(
    ("header", "forced", "language"),
    [
        # Spanish for any Spanish: a match on the exact tag only would miss these
        ("es-CO", None, "es"),
        ("es-419,es;q=0.9", None, "es"),
        ("en-US,en;q=0.9", None, "en"),
        ("EN-gb", None, "en"),  # tags are case-insensitive
        # Spanish when the browser asks for neither (Flask-Babel's own fallback is English)
        ("fr", None, "es"),
        ("", None, "es"),
        ("*", None, "es"),
        # the quality decides, not the order (the first listed would be Spanish)
        ("es;q=0.5, en;q=0.9", None, "en"),
        ("fr-CA, en-GB;q=0.8, es;q=0.7", None, "en"),
        # a tie keeps the header's order
        ("pt-BR, es;q=0.5, en;q=0.5", None, "es"),
        ("pt-BR, en;q=0.5, es;q=0.5", None, "en"),
        # q=0 means "not this one"
        ("en;q=0, fr", None, "es"),
        # UI_LANGUAGE wins over any browser
        ("en-US", "es", "es"),
        ("es-CO", "en", "en"),
        ("", "en", "en"),
    ],
)
def test_the_language_of_a_page(header: str, forced: str | None, language: str) -> None:
    assert choose_language(forced, parse_accept_header(header, LanguageAccept)) == language


@pytest.mark.parametrize(
    ("tz", "zone"),
    [
        (None, None),
        ("America/Bogota", "America/Bogota"),
        (":America/Mexico_City", "America/Mexico_City"),  # glibc's leading colon
        ("UTC", "UTC"),
        ("COT5", None),  # a POSIX rule: the C library takes it, the pages show UTC
        ("America/Atlantis", None),
        ("../../etc/passwd", None),
    ],
)
def test_the_zone_of_the_pages_is_tz_when_it_names_one(tz: str | None, zone: str | None) -> None:
    assert page_zone(tz) == zone


@pytest.mark.parametrize(("value", "language"), [(None, None), ("es", "es"), ("en", "en")])
def test_ui_language_forces_one_or_leaves_it_to_the_browser(
    value: str | None, language: str | None
) -> None:
    env = REDIS if value is None else {**REDIS, "UI_LANGUAGE": value}
    assert ServiceSettings.from_env(env).ui_language == language


@pytest.mark.parametrize("value", ["fr", "es-CO", "spanish"])
def test_ui_language_refuses_a_language_the_pages_do_not_have(value: str) -> None:
    with pytest.raises(ConfigError, match="UI_LANGUAGE must be one of es, en"):
        ServiceSettings.from_env({**REDIS, "UI_LANGUAGE": value})
