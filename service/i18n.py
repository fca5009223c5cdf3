"""The pages for people in Spanish or English (Flask-Babel): Spanish first.

A page's language is `UI_LANGUAGE` when set, else the browser's best of the two (`es-CO` and
`es-419` are Spanish), else Spanish: an ISP's operators read Spanish, and a browser asking for
neither still gets it. The messages are written in English (the msgids); Spanish comes from
`service/translations/es/LC_MESSAGES/messages.po`, compiled to its `.mo` when the service is
built (`pybabel compile`: the Makefile, the Dockerfile, docs/development.md, "Translations").
The JSON API stays English: scripts read it.

Times on the pages are in the process's zone, the one its logs use (`service/console.py` formats
them with the C library's, set by `TZ`); Flask-Babel's date filters are given the same zone
when `TZ` names one of the tz database (`America/Bogota`), as the documentation says to set it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, Response, request
from flask_babel import Babel, get_locale

from worker import defaults
from worker.settings import ServiceSettings

log = logging.getLogger(__name__)

TRANSLATIONS = Path(__file__).parent / "translations"
# The language the messages are written in: it needs no catalog.
SOURCE_LANGUAGE = "en"


def choose_language(forced: str | None, accepted: Iterable[tuple[str, float]]) -> str:
    """The page's language: `forced` (UI_LANGUAGE), else the first of the browser's
    Accept-Language entries, by quality, whose primary tag is one of ours, else Spanish.

    `accepted` holds (tag, quality) pairs, in the header's order (werkzeug's LanguageAccept).
    """
    if forced is not None:
        return forced
    for tag, quality in sorted(accepted, key=lambda entry: -entry[1]):  # stable: ties keep order
        language = tag.replace("_", "-").split("-")[0].lower()
        if quality > 0 and language in defaults.UI_LANGUAGES:
            return language
    return defaults.UI_LANGUAGES[0]


def page_zone(tz: str | None) -> str | None:
    """The zone name of `TZ` (`America/Bogota`, `:America/Bogota`) when it is one of the tz
    database's, for Flask-Babel (pytz takes names only); None otherwise (unset, or a POSIX rule
    such as `COT5`)."""
    if tz is None:
        return None
    name = tz.removeprefix(":")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def install(app: Flask, service: ServiceSettings) -> None:
    """Pick each request's language, and the pages' zone; templates get `lang` (for
    `<html lang=...>`), and every HTML answer says its language (`Content-Language`) and, when
    the browser chose it, that it did (`Vary: Accept-Language`)."""
    missing = [
        language
        for language in defaults.UI_LANGUAGES
        if language != SOURCE_LANGUAGE
        and not (TRANSLATIONS / language / "LC_MESSAGES" / "messages.mo").is_file()
    ]
    if missing:
        log.warning(
            "no compiled catalog for %s: pages show English; run `pybabel compile -d %s` "
            'before installing (docs/development.md, "Translations")',
            ", ".join(missing),
            TRANSLATIONS,
        )
    Babel(
        app,
        default_locale=defaults.UI_LANGUAGES[0],
        default_translation_directories=str(TRANSLATIONS),
        default_timezone=page_zone(service.time_zone) or "UTC",
        locale_selector=lambda: choose_language(service.ui_language, request.accept_languages),
    )

    @app.context_processor
    def _language() -> dict[str, str]:
        return {"lang": str(get_locale())}

    @app.after_request
    def _say_language(response: Response) -> Response:
        if response.mimetype == "text/html":
            response.headers["Content-Language"] = str(get_locale())
            if service.ui_language is None:
                response.vary.add("Accept-Language")
        return response
