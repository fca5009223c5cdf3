"""The worker's sentences read back into their template and values, and said in other words."""

from __future__ import annotations

from string import Formatter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.core import phrases
from worker.core.model import Action, Kind, Operation

TEMPLATES = phrases.templates()


def sample(template: str) -> tuple[str, dict[str, str]]:
    """A sentence made from `template`, and the values `recognise` should read in it."""
    values: dict[str, object] = {}
    for _literal, field, spec, _conversion in Formatter().parse(template):
        if field is None or field in values:
            continue
        values[field] = 0.25 if spec.endswith("%") else 12.0 if spec else f"<{field}>"
    made = template.format(**values)
    expected = {}
    for _literal, field, spec, conversion in Formatter().parse(template):
        if field is not None:
            value = format(values[field], spec)
            expected[field] = repr(value) if conversion == "r" else value
    return made, expected


@pytest.mark.parametrize("template", TEMPLATES)
def test_each_sentence_is_read_back_into_its_own_template_and_values(template: str) -> None:
    made, values = sample(template)
    assert phrases.recognise(made) == (template, values)


@pytest.mark.parametrize("template", TEMPLATES)
def test_each_template_says_something_besides_its_values(template: str) -> None:
    """A template made of fields alone would read any text as its own."""
    literal = "".join(text for text, *_ in Formatter().parse(template))
    assert len(literal.strip(" :;()'")) >= 4


def test_the_more_specific_of_two_matching_templates_wins() -> None:
    text = phrases.ANSWERED_TO.format(service="BQN", code=400, method="POST", body="bad: x")
    assert phrases.recognise(text) == (
        phrases.ANSWERED_TO,
        {"service": "BQN", "code": "400", "method": "POST", "body": "bad: x"},
    )


SPANISH = {
    phrases.ON_TARGET: "destino {name}: {error}",
    phrases.UNREACHABLE: "{service} no responde: {reason}",
    phrases.ANSWERED: "{service} respondió {code}: {detail}",
    phrases.BQN_REFUSED: "el BQN rechazó el usuario",
    phrases.MALFORMED_IP: "IP mal formada {token}",
    phrases.TOO_MANY_DELETIONS: "más del {fraction} de {managed} (como mucho {allowed})",
    phrases.OPERATIONS_FAILED: "fallaron {failed} de {planned}; la primera: {first}: {error}",
    phrases.UPDATE_SUBSCRIBER: "actualizar suscriptor {key}",
    phrases.ANSWERED_TO: "{service} respondió {code} a {method}: {body}",
}


def spanish(template: str) -> str:
    return SPANISH.get(template, template)


@pytest.mark.parametrize(
    ("written", "said"),
    [
        # a sentence inside a sentence is said too
        (
            "target bqn-2: BQN unreachable: timed out",
            "destino bqn-2: BQN no responde: timed out",
        ),
        # the value a template left as text (the BQN's own body) stays as the BQN wrote it
        ("BQN answered 503: Service Unavailable", "BQN respondió 503: Service Unavailable"),
        (
            phrases.ANSWERED.format(service="BQN", code=401, detail=phrases.BQN_REFUSED),
            "BQN respondió 401: el BQN rechazó el usuario",
        ),
        # a value quoted by !r keeps its quotes, once
        ("malformed IP '10.0.0.x'", "IP mal formada '10.0.0.x'"),
        # a format spec's output is kept as written
        (
            phrases.TOO_MANY_DELETIONS.format(fraction=0.5, managed=40, allowed=20),
            "más del 50% de 40 (como mucho 20)",
        ),
        # sentences joined with "; " are said one by one, an unknown one as written
        (
            "target a: BQN unreachable: refused; something else",
            "destino a: BQN no responde: refused; something else",
        ),
        # what a job's failure says of its first failed write, every part of it
        (
            phrases.OPERATIONS_FAILED.format(
                failed=1,
                planned=3,
                first=Operation(Action.UPDATE, Kind.SUBSCRIBER, "10.3.0.4").named(),
                error="BQN answered 400 to PUT: 400 Bad Request",
            ),
            "fallaron 1 de 3; la primera: actualizar suscriptor 10.3.0.4: "
            "BQN respondió 400 a PUT: 400 Bad Request",
        ),
        ("ValueError: bad thing", "ValueError: bad thing"),
        ("", ""),
    ],
)
def test_a_sentence_is_said_in_the_translations_words(written: str, said: str) -> None:
    assert phrases.say(written, spanish) == said


def test_a_translation_naming_a_value_the_template_lacks_leaves_the_sentence_as_written() -> None:
    written = phrases.EMPTY_IP
    assert phrases.say(written, lambda _: "IP {vacia}") == written


@given(st.sampled_from(TEMPLATES), st.data())
def test_said_in_the_same_words_a_sentence_is_unchanged(template: str, data: st.DataObject) -> None:
    """Whatever the values hold (colons, "; ", a template's own words), the read-back values
    put in the template again give the sentence back."""
    values: dict[str, object] = {}
    for _literal, field, spec, _conversion in Formatter().parse(template):
        if field is not None and field not in values:
            values[field] = (
                data.draw(st.floats(0, 10, allow_nan=False)) if spec else data.draw(st.text())
            )
    made = template.format(**values)
    assert phrases.say(made, lambda same: same) == made


def test_every_operation_has_its_sentence():
    """Fails if an operation the sync writes has no sentence (`Operation.named` raises)."""
    for action in Action:
        for kind in Kind:
            if (action, kind) != (Action.DELETE, Kind.POLICY):  # never deleted
                named = Operation(action, kind, "k").named()
                assert phrases.recognise(named)[1] == {"key": "k"}
