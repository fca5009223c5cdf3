"""Every message of the pages is translated, and what the service reads is what was translated.

The messages are extracted here as `make translations` extracts them (babel.cfg, with
`lazy_gettext` among the keywords): a message added to a template or to the service's Python
without its Spanish fails, so a page never shows English in the middle of Spanish.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Formatter

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from service.i18n import SOURCE_LANGUAGE, TRANSLATIONS
from worker import defaults
from worker.core import phrases

ROOT = Path(__file__).resolve().parents[2]

# The keywords of `make translations` (its `--keywords`): `phrase` marks the worker's
# sentences a page shows (worker/core/phrases.py).
KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None, "phrase": None}
TRANSLATED = [language for language in defaults.UI_LANGUAGES if language != SOURCE_LANGUAGE]


def msgid(message: str | tuple[str, ...]) -> str:
    """A message's id: the singular of a plural one."""
    return message if isinstance(message, str) else message[0]


@cache
def extracted() -> frozenset[str]:
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    found = extract_from_dir(ROOT, method_map, options_map, keywords=KEYWORDS)
    return frozenset(msgid(message) for _, _, message, _, _ in found)


def read(language: str) -> Catalog:
    with (TRANSLATIONS / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po, locale=language)


def test_messages_are_found_in_the_templates_and_the_python() -> None:
    """The extraction itself: an empty set would make every test below pass."""
    assert {"Sign in", "Redis is unreachable", phrases.UNREACHABLE} <= extracted()
    assert set(phrases.templates()) <= extracted()


def test_the_template_holds_every_message() -> None:
    with (TRANSLATIONS / "messages.pot").open("rb") as pot:
        template = {message.id for message in read_po(pot) if message.id}
    assert set(extracted()) == {msgid(id_) for id_ in template}, "run make translations"


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_has_its_translation(language: str) -> None:
    catalog = read(language)
    translated = {
        msgid(message.id): message for message in catalog if message.id and not message.fuzzy
    }
    missing = sorted(
        id_
        for id_ in extracted()
        if id_ not in translated or not all(_strings(translated[id_].string))
    )
    assert missing == [], f"translate these in {language}'s .po (make translations adds them)"
    assert sorted(set(translated) - extracted()) == [], "run make translations"


@pytest.mark.parametrize("language", TRANSLATED)
def test_no_translation_is_fuzzy_or_breaks_its_placeholders(language: str) -> None:
    """`pybabel update` marks its guesses fuzzy, and `pybabel compile` leaves them out: each
    must be checked by a person and its flag removed. A `%(name)s` lost or renamed would fail
    on the page."""
    catalog = read(language)
    assert [message.id for message in catalog if message.id and message.fuzzy] == []
    assert [(message.id, errors) for message, errors in catalog.check()] == []


@pytest.mark.parametrize("language", TRANSLATED)
def test_a_translation_keeps_the_values_its_message_names(language: str) -> None:
    """A `{name}` (str.format: the worker's sentences, the history's lines) lost or renamed
    would show the English instead (`phrases.say`) or fail; Babel checks only `%(name)s`."""
    wrong = [
        (message.id, message.string)
        for message in read(language)
        if message.id and _fields(msgid(message.id)) != _fields(msgid(message.string))
    ]
    assert wrong == []


def _fields(text: str) -> set[str]:
    return {field for _, field, _, _ in Formatter().parse(text) if field is not None}


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalog_is_the_po(language: str) -> None:
    """The service reads the .mo: compiled from an older .po, it would show old or no Spanish."""
    compiled = TRANSLATIONS / language / "LC_MESSAGES" / "messages.mo"
    assert compiled.is_file(), "compile it: make test, or `pybabel compile -d service/translations`"
    with compiled.open("rb") as mo:
        served = {
            _strings(message.id): _strings(message.string) for message in read_mo(mo) if message.id
        }
    written = {
        _strings(message.id): _strings(message.string)
        for message in read(language)
        if message.id and message.string and not message.fuzzy  # as pybabel compile leaves them
    }
    assert served == written, "compile it again: make test, or pybabel compile"


def _strings(string: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A message's id or translation as a tuple: a plural's is a tuple in a .po, a list in a
    .mo."""
    return (string,) if isinstance(string, str) else tuple(string)
