"""Finding a client by what an operator knows (pure): an index of one complete WispHub pass,
and matching a typed text against it.

The person on the phone knows a name, an IP, a cédula or a PPPoE user, seldom the service id.
The index keeps, for each client, what a hit shows (name, addresses, estado, plan, usuario)
and what a search matches: names folded (accents and case dropped), addresses and usuarios
sorted for exact and prefix look-ups, and the cédula only as a keyed digest: it is personal
data, so neither Redis nor the web processes hold it in clear (`cedula_key`).

`encode` turns a pass's rows into one document, once per pass, in the worker; `Index.decode`
reads it back in each web process, which answers every search from memory: the sorted lists
and the folded names are computed by the writer, so reading a new pass costs little more than
parsing it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from worker.core.addresses import SEPARATORS
from worker.core.desired import Row, client_id, slim

# The field a list pass fills with the cédula's keyed digest (`searchable`), in place of the
# cédula itself (which `slim` leaves out).
CEDULA_DIGEST = "cedula_digest"
# The size of a cédula's digest: 64 bits, so a false match among 100,000 clients has a chance
# of about 1 in 10**14; guessing is held off by the key, not by the length.
DIGEST_BYTES = 8
# The document's layout; a reader refuses another (`IndexFormatError`).
FORMAT = 1
# Above every character: `prefix + LAST` bounds the keys that start with `prefix`.
LAST = chr(0x10FFFF)
# A word found in fewer than one name in this many is looked for occurrence by occurrence.
SPARSE = 20


class IndexFormatError(ValueError):
    """An index document this release cannot read (written by another one)."""


# Folding ---------------------------------------------------------------------------------


def fold(text: str) -> str:
    """`text` as names are compared: compatibility forms decomposed (NFKD), accents and other
    combining marks dropped, case folded; "José PÉREZ" and "jose perez" fold alike."""
    if text.isascii():
        return text.lower()
    folded = _unmarked(unicodedata.normalize("NFKD", text)).casefold()
    if folded.isascii():
        return folded
    # case folding can bring marks back ("İ" folds to "i" and a dot above)
    return _unmarked(unicodedata.normalize("NFKD", folded))


# The combining diacritical marks (U+0300 to U+036F): the accents of Latin names, dropped at
# C speed; what else is left is looked at character by character.
_DIACRITICS = {point: None for point in range(0x300, 0x370) if unicodedata.combining(chr(point))}


def _unmarked(text: str) -> str:
    plain = text.translate(_DIACRITICS)
    if plain.isascii():
        return plain
    return "".join(char for char in plain if not unicodedata.combining(char))


def words(text: str) -> tuple[str, ...]:
    """The distinct folded words of a typed text, in order."""
    return tuple(dict.fromkeys(fold(text).split()))


# Cédulas ---------------------------------------------------------------------------------


def cedula_key(secret: str) -> bytes:
    """The key of the cédula digests, derived (HMAC-SHA256) from `WISPHUB_API_KEY` (`secret`):
    every process that reads WispHub or searches has it, Redis never does, and whoever holds it
    can read the cédulas from WispHub itself, so the digests tell such a person nothing new.
    Without the key, the digest of a cédula (a short number) cannot be found by trying every
    number."""
    return hmac.new(secret.encode(), b"wisphub-bqn-sync cedula index", hashlib.sha256).digest()


def normal_cedula(raw: object) -> str:
    """A cédula as it is compared: letters and digits only (dots, dashes and spaces dropped),
    compatibility forms unified and case folded; "1.234.567-8" and "12345678" are one."""
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        return ""
    text = str(raw) if isinstance(raw, int) or raw.isascii() else unicodedata.normalize("NFKC", raw)
    return _NOT_ALNUM.sub("", text).casefold()


_NOT_ALNUM = re.compile(r"[\W_]+")


def cedula_digest(key: bytes, raw: object) -> str | None:
    """The keyed digest of a cédula (`None` for an empty one): keyed BLAKE2b, a MAC in one
    pass (half the time of an HMAC, at 100,000 clients a pass)."""
    normal = normal_cedula(raw)
    if not normal:
        return None
    return hashlib.blake2b(normal.encode(), key=key, digest_size=DIGEST_BYTES).hexdigest()


def searchable(row: Row, key: bytes) -> Row:
    """A list pass's row: the fields the sync reads (`slim`), and the cédula's digest."""
    kept = slim(row)
    digest = cedula_digest(key, row.get("cedula"))
    return kept if digest is None else {**kept, CEDULA_DIGEST: digest}


# Entries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One client as the index keeps it (`cedula`: the digest, never the cédula)."""

    id_servicio: int
    name: str
    ips: tuple[str, ...]
    estado: str | None
    plan: str | None
    usuario: str | None
    cedula: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """What a search hit shows of the client (never the cédula, not even its digest)."""
        return {
            "id_servicio": self.id_servicio,
            "name": self.name,
            "usuario": self.usuario,
            "ips": list(self.ips),
            "estado": self.estado,
            "plan": self.plan,
        }


def entry(row: Row) -> Entry | None:
    """A row's entry; `None` for a row without an `id_servicio`. The addresses are the `ip`
    field's words as written (a placeholder or malformed one too: the operator may be reading
    it off WispHub's panel)."""
    key = client_id(row)
    if key is None:
        return None
    plan = row.get("plan_internet")
    digest = row.get(CEDULA_DIGEST)
    return Entry(
        id_servicio=key,
        name=_text(row.get("nombre")),
        ips=tuple(token for token in SEPARATORS.split(_text(row.get("ip"))) if token),
        estado=_text(row.get("estado")) or None,
        plan=(_text(plan.get("nombre")) or None) if isinstance(plan, Mapping) else None,
        usuario=_text(row.get("usuario")) or None,
        cedula=digest if isinstance(digest, str) else None,
    )


def entries(rows: Iterable[Row]) -> list[Entry]:
    """The entries of a pass's rows (rows without an id are left out)."""
    return [found for row in rows if (found := entry(row)) is not None]


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


# The document ----------------------------------------------------------------------------


def encode(items: Sequence[Entry]) -> bytes:
    """The index document of a pass: the clients by folded name (nameless ones last), and for
    each exact or prefix look-up its keys sorted beside the clients' places. The same clients
    always give the same bytes, so a writer can tell a pass that changed nothing."""
    by_id = sorted(items, key=lambda item: item.id_servicio)
    folded = [fold(item.name) for item in by_id]
    order = sorted(range(len(by_id)), key=lambda at: folded[at] or LAST)
    ordered = [by_id[at] for at in order]
    estados = _vocabulary(item.estado for item in ordered)
    plans = _vocabulary(item.plan for item in ordered)
    addresses = [(ip.lower(), at) for at, item in enumerate(ordered) for ip in item.ips]
    document = {
        "format": FORMAT,
        "ids": [item.id_servicio for item in ordered],
        "names": [item.name for item in ordered],
        "folded": [folded[at] for at in order],
        "ips": [" ".join(item.ips) for item in ordered],
        "usuarios": [item.usuario for item in ordered],
        "estados": estados,
        "estado_of": [estados.index(item.estado) for item in ordered],
        "plans": plans,
        "plan_of": [plans.index(item.plan) for item in ordered],
        "by_ip": _sorted([ip for ip, _ in addresses], [at for _, at in addresses]),
        "by_usuario": _sorted([item.usuario and item.usuario.casefold() for item in ordered]),
        "by_cedula": _sorted([item.cedula for item in ordered]),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _vocabulary(values: Iterable[str | None]) -> list[str | None]:
    """The distinct values, sorted, then `None`: a client keeps the place of its own (a few
    estados and plans stand for 100,000 clients)."""
    return [*sorted({value for value in values if value is not None}), None]


def _sorted(keys: Sequence[str | None], places: Sequence[int] | None = None) -> dict[str, Any]:
    """`keys` (those not empty) sorted, and beside each its client's place (`places`, or the
    key's own)."""
    kept = sorted((at for at, key in enumerate(keys) if key), key=keys.__getitem__)
    return {
        "keys": [keys[at] for at in kept],
        "at": kept if places is None else [places[at] for at in kept],
    }


# Searching -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """A typed text, read every way it could be meant."""

    words: tuple[str, ...]
    id_servicio: int | None
    # the text lower-cased, when it could be (the start of) an address
    ip: str | None
    # the text case-folded, when it could be (the start of) a PPPoE user
    usuario: str | None
    cedula: str | None


def parse_query(text: str, key: bytes) -> Query:
    """What `text` (not blank) may stand for: a service id when it is a whole number, an
    address or its start when it has a dot or a colon and no space, a usuario when it has no
    space, a cédula when it has a digit, and always words of a name."""
    stripped = text.strip()
    bare = bool(stripped) and not any(char.isspace() for char in stripped)
    digits = stripped.isascii() and stripped.isdecimal() and len(stripped) <= 19
    return Query(
        words=words(stripped),
        id_servicio=int(stripped) if digits and int(stripped) > 0 else None,
        ip=stripped.lower() if bare and ("." in stripped or ":" in stripped) else None,
        usuario=stripped.casefold() if bare else None,
        cedula=cedula_digest(key, stripped) if any(c.isdigit() for c in stripped) else None,
    )


@dataclass(frozen=True)
class Hit:
    """A client found, and the best way it matched: `id`, `ip`, `cedula`, `usuario` or
    `name`."""

    entry: Entry
    matched: str


@dataclass(frozen=True)
class Found:
    """How many clients match, and the first hits: exact matches (id, address, cédula,
    usuario), then prefixes (addresses, then usuarios, each in key order), then names (in name
    order)."""

    total: int
    hits: tuple[Hit, ...]


@dataclass(frozen=True)
class _Keys:
    """Sorted keys and, beside each, the place of its client."""

    keys: list[str]
    at: list[int]

    def exact(self, key: str) -> list[int]:
        start = bisect_left(self.keys, key)
        return self.at[start : bisect_right(self.keys, key, start)]

    def prefixed(self, prefix: str) -> list[int]:
        start = bisect_left(self.keys, prefix)
        return self.at[start : bisect_left(self.keys, prefix + LAST, start)]


class Index:
    """The clients of one pass, searchable; read with `decode`."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        if not isinstance(document, Mapping) or document.get("format") != FORMAT:
            raise IndexFormatError("the search index was written in another format")
        self._ids: list[int] = document["ids"]
        self._names: list[str] = document["names"]
        self._folded: list[str] = document["folded"]
        self._ips: list[str] = document["ips"]
        self._usuarios: list[str | None] = document["usuarios"]
        self._estados: list[str | None] = document["estados"]
        self._estado_of: list[int] = document["estado_of"]
        self._plans: list[str | None] = document["plans"]
        self._plan_of: list[int] = document["plan_of"]
        self._by_id = dict(zip(self._ids, range(len(self._ids)), strict=True))
        # the folded names end to end, a line each, and where each line starts
        self._text = "\n".join(self._folded)
        self._starts = list(accumulate((len(name) + 1 for name in self._folded), initial=0))
        self._by_ip, self._by_usuario, self._by_cedula = (
            _Keys(document[name]["keys"], document[name]["at"])
            for name in ("by_ip", "by_usuario", "by_cedula")
        )

    @classmethod
    def decode(cls, blob: bytes) -> Index:
        """The index an `encode`d document holds."""
        try:
            document = json.loads(blob)
        except ValueError:
            raise IndexFormatError("the search index is not a JSON document") from None
        return cls(document)

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, id_servicio: int) -> Entry | None:
        """The client `id_servicio` as the pass had it; `None`: not in the pass."""
        at = self._by_id.get(id_servicio)
        return None if at is None else self._entry(at)

    def search(self, query: Query, limit: int) -> Found:
        """The clients `query` matches: how many, and the first `limit` (`Found`)."""
        groups: list[tuple[str, Sequence[int]]] = []
        if query.id_servicio is not None and query.id_servicio in self._by_id:
            groups.append(("id", [self._by_id[query.id_servicio]]))
        if query.ip is not None:
            groups.append(("ip", self._by_ip.exact(query.ip)))
        if query.cedula is not None:
            groups.append(("cedula", self._by_cedula.exact(query.cedula)))
        if query.usuario is not None:
            groups.append(("usuario", self._by_usuario.exact(query.usuario)))
        if query.ip is not None:
            groups.append(("ip", self._by_ip.prefixed(query.ip)))
        if query.usuario is not None:
            groups.append(("usuario", self._by_usuario.prefixed(query.usuario)))
        if query.words:
            groups.append(("name", self._named(query.words)))
        found = [(field, places) for field, places in groups if places]
        chosen: dict[int, str] = {}
        for field, places in found:
            for at in places:
                if len(chosen) == limit:
                    break
                chosen.setdefault(at, field)
        total = len(set().union(*(places for _, places in found)))
        return Found(total, tuple(Hit(self._entry(at), field) for at, field in chosen.items()))

    def _named(self, words: tuple[str, ...]) -> list[int]:
        """The places of the names holding every word, the longest (the most selective) looked
        for first over every name, the others over what it left.

        The first word is counted over all the names at once (C speed); when it is rare (an
        address, a cédula or a usuario is in no name), the search jumps from one occurrence to
        the next, else it tries each name."""
        first, *rest = sorted(words, key=len, reverse=True)
        folded = self._folded
        if self._text.count(first) * SPARSE < len(folded):
            places = self._holding(first)
        else:
            places = [at for at, name in enumerate(folded) if first in name]
        for word in rest:
            places = [at for at in places if word in folded[at]]
        return places

    def _holding(self, word: str) -> list[int]:
        """The places of the names holding `word`, found occurrence by occurrence."""
        places, text, starts = [], self._text, self._starts
        found = text.find(word)
        while found != -1:
            at = bisect_right(starts, found) - 1
            places.append(at)
            found = text.find(word, starts[at + 1])  # the next name on
        return places

    def _entry(self, at: int) -> Entry:
        return Entry(
            id_servicio=self._ids[at],
            name=self._names[at],
            ips=tuple(self._ips[at].split()),
            estado=self._estados[self._estado_of[at]],
            plan=self._plans[self._plan_of[at]],
            usuario=self._usuarios[at],
        )
