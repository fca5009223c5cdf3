"""The sentences the worker (and the API) write where an operator's page shows them (errors,
reasons, notes), one `str.format` template each, so the page can say them in its language (pure).

The worker writes English: its logs, the JSON API and the CLI speak it, and what it writes is
kept as text (RQ keeps a failed job's traceback; histories, the circuit breaker and reconcile
reports keep their error strings in Redis). A sentence made from one of these templates
(`UNREACHABLE.format(service="BQN", reason=...)`) is read back by `recognise`, into its
template and values; `say` puts it in other words (the status page's Spanish, from the
catalog `make translations` extracts `phrase(...)` from). A sentence no template makes is
shown as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import cache
from string import Formatter


def phrase(template: str) -> str:
    """Mark a template for the translations' extraction (babel.cfg); it is returned as is."""
    return template


# Talking to the APIs (worker.clients) --------------------------------------------------------

TLS_FAILED = phrase("{service}: TLS failed: {reason}")
INVALID_URL = phrase("{service}: invalid URL: {reason}")
UNREACHABLE = phrase("{service} unreachable: {reason}")
ANSWERED = phrase("{service} answered {code}: {detail}")
ANSWERED_TO = phrase("{service} answered {code} to {method}: {body}")
NOT_JSON = phrase("{service} answered {code} with {content_type} instead of JSON: {body}")
NO_CONTENT_TYPE = phrase("no content type")
INVALID_JSON = phrase("{service} answered invalid JSON: {body}")
NOT_THE_API = phrase(
    "{service} answered {code} with {body} instead of {path}: is WISPHUB_URL the API host "
    "shown in Mi Empresa > Empresa > URL de consulta de API?"
)
NO_COUNT = phrase("{service} answered a page without count/results")
FILTER_IGNORED = phrase(
    "WispHub ignored the id_servicio filter (asked for {id_servicio}, got count {count})"
)
PASS_INCOMPLETE = phrase(
    "WispHub {what} list did not add up after {attempts} passes ({rows} unique {what}, "
    "count {count}); nothing was changed"
)
NO_PATH = phrase("{service} has no {path} (404): check BQN_URL")
NO_ITEMS = phrase("{service} answered {path} without an items list")
NOT_AN_OBJECT = phrase("{service} answered {path} with something other than an object")
POST_NOT_FOUND = phrase("{service} answered 404 to POST {path}")
WISPHUB_REFUSED = phrase(
    "wrong API key or wrong WispHub host (check WISPHUB_URL: the key only works there)"
)
BQN_REFUSED = phrase(
    "the BQN refused the REST user or password, or this host is not in the BQN's REST "
    "allow-list (Configuration > RADIUS/REST/Billing > REST API)"
)

# Plans and their speeds (worker.core.plans, worker.core.speeds) ------------------------------

PCQ_PLAN = phrase("PCQ plans have no speeds in WispHub")
NO_DETAIL = phrase("no detail")
NOT_LISTED_YET = phrase("not in WispHub's plan list yet")
NO_SPEEDS = phrase("no speeds")
NO_SPEED_GIVEN = phrase("no speed given ({text!r})")
UNREADABLE_SPEED = phrase("unreadable speed {text!r}")
SPEED_TOO_LOW = phrase("speed {text!r} is under 1 kbps")

# Rows the sync leaves aside (worker.core.desired, worker.core.addresses) ---------------------

NO_VALID_ID = phrase("row without a valid id_servicio")
NO_PLAN = phrase("no internet plan")
UNKNOWN_ESTADO = phrase("unknown estado {estado!r}")
SEVERAL_ADDRESSES = phrase("several addresses or a block (MULTI_IP_MODE=skip)")
ONE_PER_ADDRESS = phrase("{reason} (MULTI_IP_MODE=subscribers)")
CLAIMED_LATER = phrase("IP also claimed by client {winner}, changed later")
EMPTY_IP = phrase("empty IP")
TOO_MANY_ADDRESSES = phrase("{block} has too many addresses for one subscriber each")
MALFORMED_IP = phrase("malformed IP {token!r}")
BLOCK_TOO_LARGE = phrase("block {network} is too large for one client")
PLACEHOLDER_IP = phrase("placeholder or loopback IP {address}")
NOT_A_SUBSCRIBER = phrase("not a subscriber address: {address}")

# The deletion guard (worker.core.guard) ------------------------------------------------------

HELD_BACK = phrase("{count} deletions held back: {reason}")
NO_CLIENTS = phrase("WispHub returned no clients")
TOO_MANY_DELETIONS = phrase(
    "more than {fraction:.0%} of the {managed} entries the sync manages "
    '(at most {allowed} at once; --force or "force": true to go ahead)'
)
FAR_FEWER = phrase(
    "WispHub returned {clients} clients, far fewer than the {last_pass} of the last "
    'complete pass (--force or "force": true to go ahead)'
)
VANISHED = phrase(
    "WispHub returned {count} clients where the last pass had {before}: the {missing} missing "
    "clients are left as they were until a reconcile confirms it"
)
ALL_VANISHED = phrase(
    "WispHub returned no clients where the last pass had {before}: the {missing} missing "
    "clients are left as they were until a reconcile confirms it"
)
CANCELLED_HELD = phrase(
    "{count} clients were cancelled at once, more than may be removed at once (at most "
    "{allowed}): their entries are left as they were until a reconcile confirms it "
    '(--force or "force": true to go ahead)'
)
ENTRIES_LEFT = phrase("{count} BQN entries no client of the pass claims were left as they are")

# Applying, jobs and passes (worker.sync, worker.queue) ---------------------------------------

CREATE_SUBSCRIBER = phrase("create subscriber {key}")
UPDATE_SUBSCRIBER = phrase("update subscriber {key}")
DELETE_SUBSCRIBER = phrase("delete subscriber {key}")
CREATE_POLICY = phrase("create policy {key}")
UPDATE_POLICY = phrase("update policy {key}")
CREATE_GROUP = phrase("create group {key}")
UPDATE_GROUP = phrase("update group {key}")
DELETE_GROUP = phrase("delete group {key}")
OPERATION_FAILED = phrase("{operation} failed: {error}")
POLICY_NOT_PLACED = phrase("not sent: policy {policy} could not be put in place")
NOT_ATTEMPTED = phrase("not attempted: the BQN kept failing")
KEPT_CLAIMED = phrase("kept {kind} {key}: a client claims it now")
STATIC_POLICY = phrase(
    "policy {key}: the BQN kept its own settings (a static policy configured on the BQN?); "
    "WispHub's speeds were not applied to it"
)
LOCATIONS_LEFT_OUT = phrase(
    "{count} clients were left out of their {field} location group: an address may be in "
    "{most} groups at most (BQN_GROUPS_PER_IP)"
)
NOT_OUR_GROUP = phrase("location group {name} exists and the sync did not create it: left alone")
NO_TARGET = phrase("{count} clients belong to no target: {shown}")
AND_MORE = phrase("{shown} and {more} more")
LEFT_TO_JOBS = phrase(
    "{count} writes left to the client jobs that applied their clients while the reconcile "
    "ran (their state is newer; they are synced again when it ends)"
)
STILL_CLAIMS = phrase("client {key} still claims an entry the pass gave nobody")
ON_TARGET = phrase("target {name}: {error}")
TARGET_GONE = phrase("target {target!r} is not configured any more")
TARGET_DOWN = phrase("target {name} kept failing ({error}); tried again after {at}")
RECONCILE_RUNNING = phrase("another reconcile is running")
POLL_RUNNING = phrase("another poll is running")
PASS_RECENT = phrase("a pass completed {age:.0f} s ago")
STAYED_LOCKED = phrase("client {client} stayed locked by another job")
RETRIES_SPENT = phrase("still failing after {count} retries: {error}")
GUARD_TRIPPED = phrase("deletion guard: {reason}")
OPERATIONS_FAILED = phrase("{failed} of {planned} operations failed, first: {first}: {error}")

# How the service reaches the APIs (worker.settings) ------------------------------------------

NOT_VERIFIED = phrase(
    "{subject} is not verified (BQN_CA_BUNDLE is not set): a machine on the path to the BQN "
    "could pose as it and read its REST password; pin the BQN's own certificate with "
    "BQN_CA_BUNDLE or the target's ca_bundle (docs/security.md)"
)
BQN_CERTIFICATE = phrase("the BQN's TLS certificate")
TARGET_CERTIFICATE = phrase("the TLS certificate of target {name!r}")
PLAIN_HTTP = phrase("{name} uses plain http:// (ALLOW_INSECURE_HTTP=1)")

# What a person typed in the search box (service.payloads) ----------------------------------

SEARCH_BLANK = phrase(
    "q is required: an id_servicio, an IP or its start, a name, a cédula or a PPPoE user"
)
SEARCH_TOO_LONG = phrase("q is {length} characters long; at most {most}")

# Sentences a page finds joined into one ("; "): each is said on its own.
JOINED = "; "


def templates() -> tuple[str, ...]:
    """Every template above, the most specific first (the most literal text): when two
    read a sentence, the one that says more of it wins (`ANSWERED_TO` before `ANSWERED`)."""
    found = [value for name, value in globals().items() if name.isupper() and name != "JOINED"]
    return tuple(sorted(found, key=lambda template: -len(_literal(template))))


def recognise(text: str) -> tuple[str, dict[str, str]] | None:
    """The template that made `text` and the values put in it (as text, a `!r` value with its
    quotes); None when no template made it."""
    for template, pattern in _patterns():
        found = pattern.fullmatch(text)
        if found is not None:
            return template, {name: found[group] for group, name in _groups(template)}
    return None


def say(text: str, translate: Callable[[str], str]) -> str:
    """`text` in other words: its template as `translate` gives it, with its values, each said
    the same way (a value may be a sentence: `target {name}: {error}`). Sentences joined with
    "; " are said one by one; what no template made stays as written, as does a sentence whose
    translation names values the template does not have."""
    found = recognise(text)
    if found is None:
        parts = text.split(JOINED)
        if len(parts) > 1 and any(recognise(part) for part in parts):
            return JOINED.join(say(part, translate) for part in parts)
        return text
    template, values = found
    said = {name: say(value, translate) for name, value in values.items()}
    try:
        return _fill(translate(template), said)
    except (KeyError, ValueError):
        return text


def _literal(template: str) -> str:
    return "".join(literal for literal, *_ in Formatter().parse(template))


def _fill(template: str, values: dict[str, str]) -> str:
    """`template` with `values` in its fields as text: their format specs and conversions
    were applied when the sentence was made."""
    out = []
    for literal, field, _spec, _conversion in Formatter().parse(template):
        out.append(literal)
        if field is not None:
            out.append(values[field])
    return "".join(out)


def _groups(template: str) -> Iterable[tuple[str, str]]:
    """(regex group, field) of each field's first place in `template`."""
    seen: list[str] = []
    for _literal_text, field, _spec, _conversion in Formatter().parse(template):
        if field is not None and field not in seen:
            seen.append(field)
    return [(f"v{at}", field) for at, field in enumerate(seen)]


@cache
def _patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    compiled = []
    for template in templates():
        groups = {field: group for group, field in _groups(template)}
        parts, named = [], set()
        for literal, field, _spec, _conversion in Formatter().parse(template):
            parts.append(re.escape(literal))
            if field is None:
                continue
            group = groups[field]
            parts.append(f"(?P={group})" if group in named else f"(?P<{group}>.+?)")
            named.add(group)
        compiled.append((template, re.compile("".join(parts), re.DOTALL)))
    return tuple(compiled)
