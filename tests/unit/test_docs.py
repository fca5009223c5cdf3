"""The documentation keeps up with the code: every setting is documented, every link lands.

- Every environment variable the code reads is found by scanning the source of `worker/` and
  `service/` (not from a hand-kept list), and must be in a table of docs/configuration.md and
  docs/es/configuracion.md and named in each environment file.
- Every relative link of the Markdown pages reaches a file, and its `#anchor` a heading.
- Every `docs/...md` path the Python code cites exists, and so does a section cited with it.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("worker", "service")
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
# Mappings the environment is read from: `os.environ`, and the `env`/`environ` a function
# takes as its environment (`Settings.from_env(env)`, `logs.level_from(env)`).
ENV_MAPPINGS = frozenset({"environ", "env", "environment"})
ENV_METHODS = frozenset({"get", "pop", "setdefault"})
# Variables the code reads that are not settings of this program. Empty on purpose:
# PROMETHEUS_MULTIPROC_DIR is read by the web process (service/gunicorn_conf.py) and an
# operator may choose the folder (the systemd unit does), so it is documented like the rest;
# TZ is read by the scheduler and decides when the reconcile runs. A name put here must say why.
NOT_SETTINGS: frozenset[str] = frozenset()

CONFIG_PAGES = ("docs/configuration.md", "docs/es/configuracion.md")
ENV_FILES = (".env.example", "deploy/wisphub-bqn-sync.env", "deploy/sandbox.env")


# Environment variables read by the code --------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """A function that reads the environment variable `prefix + <its argument> + suffix`."""

    function: str
    parameter: str
    position: int  # of the argument in a call (after `self`/`cls` for a method)
    prefix: str = ""
    suffix: str = ""


@dataclass(frozen=True)
class Site:
    """An expression that names an environment variable, and where it is."""

    where: str
    node: ast.expr
    function: ast.FunctionDef | ast.AsyncFunctionDef | None  # the one it is in
    method: bool  # that function takes `self` or `cls` first
    reader: Reader | None  # the reader it is passed to; None: the environment itself


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


@cache
def parsed() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in python_files(*SCANNED)}


def parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def enclosing_function(
    node: ast.AST, up: dict[ast.AST, ast.AST]
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    while node in up:
        node = up[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return node
    return None


def is_method(function: ast.FunctionDef | ast.AsyncFunctionDef, up: dict[ast.AST, ast.AST]) -> bool:
    args = function.args.posonlyargs + function.args.args
    in_class = isinstance(up.get(function), ast.ClassDef)
    return in_class and bool(args) and args[0].arg in ("self", "cls")


@cache
def constants() -> dict[str, set[str]]:
    """Every UPPER_CASE name bound to a string literal in the scanned code (`LEVEL_ENV, FORMAT_ENV
    = "LOG_LEVEL", "LOG_FORMAT"` included), so a name read through a constant is found."""
    found: dict[str, set[str]] = {}
    for tree in parsed().values():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                pairs: list[tuple[ast.expr, ast.expr]] = [(target, node.value)]
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts, strict=False))
                for name, value in pairs:
                    if (
                        isinstance(name, ast.Name)
                        and name.id.isupper()
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, str)
                    ):
                        found.setdefault(name.id, set()).add(value.value)
    return found


def literal(node: ast.expr) -> set[str] | None:
    """The strings an expression stands for, if it is a literal or a known constant."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Name) and node.id in constants():
        return constants()[node.id]
    if isinstance(node, ast.Attribute) and node.attr in constants():
        return constants()[node.attr]
    return None


def template(node: ast.expr, parameters: set[str]) -> tuple[str, str, str] | None:
    """(prefix, parameter, suffix) for `parameter`, `f"{parameter}_X"` or `parameter + "_X"`."""
    if isinstance(node, ast.Name) and node.id in parameters:
        return "", node.id, ""
    if isinstance(node, ast.JoinedStr):
        parts: list[ast.expr] = []
        for value in node.values:
            parts.append(value.value if isinstance(value, ast.FormattedValue) else value)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        parts = list(_added(node))
    else:
        return None
    names = [part for part in parts if not isinstance(part, ast.Constant)]
    if len(names) != 1 or not isinstance(names[0], ast.Name) or names[0].id not in parameters:
        return None
    at = parts.index(names[0])
    texts = [literal(part) for part in parts]
    if any(text is None or len(text) != 1 for i, text in enumerate(texts) if i != at):
        return None
    prefix = "".join(next(iter(texts[i] or {""})) for i in range(at))
    suffix = "".join(next(iter(texts[i] or {""})) for i in range(at + 1, len(parts)))
    return prefix, names[0].id, suffix


def _added(node: ast.expr) -> Iterator[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        yield from _added(node.left)
        yield from _added(node.right)
    else:
        yield node


def is_environment(node: ast.expr) -> bool:
    """`os.environ`, `environ`, `env`, `self.env`; not a WSGI `request.environ`."""
    if isinstance(node, ast.Name):
        return node.id in ENV_MAPPINGS
    if isinstance(node, ast.Attribute) and node.attr in ENV_MAPPINGS:
        return not (isinstance(node.value, ast.Name) and node.value.id == "request")
    return False


def reads_environment(call: ast.Call) -> bool:
    """`os.getenv(name)`, `os.environ.get(name)`, `env.get(name)` and the like."""
    if not call.args:
        return False
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in ENV_METHODS:
        return is_environment(func.value)
    return called_name(call) == "getenv"


def called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def argument(call: ast.Call, reader: Reader) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == reader.parameter:
            return keyword.value
    if len(call.args) > reader.position and not any(
        isinstance(arg, ast.Starred) for arg in call.args[: reader.position + 1]
    ):
        return call.args[reader.position]
    return None


def sites(readers: Iterable[Reader]) -> Iterator[Site]:
    """Every expression that names an environment variable: the key of a read of the
    environment itself, or the argument of a call to a known reader function."""
    by_name: dict[str, list[Reader]] = {}
    for reader in readers:
        by_name.setdefault(reader.function, []).append(reader)
    for path, tree in parsed().items():
        up = parents(tree)
        for node in ast.walk(tree):
            found: list[tuple[ast.expr, Reader | None]] = []
            if isinstance(node, ast.Subscript) and is_environment(node.value):
                found.append((node.slice, None))
            elif isinstance(node, ast.Compare) and any(
                isinstance(op, ast.In | ast.NotIn) for op in node.ops
            ):
                if any(is_environment(side) for side in node.comparators):
                    found.append((node.left, None))
            elif isinstance(node, ast.Call) and reads_environment(node):
                found.append((node.args[0], None))
            elif isinstance(node, ast.Call):
                for reader in by_name.get(called_name(node) or "", ()):
                    if (arg := argument(node, reader)) is not None:
                        found.append((arg, reader))
            for expr, reader in found:
                where = f"{path.relative_to(ROOT)}:{expr.lineno}"
                function = enclosing_function(node, up)
                method = function is not None and is_method(function, up)
                yield Site(where, expr, function, method, reader)


def parameters_of(
    function: ast.FunctionDef | ast.AsyncFunctionDef | None,
) -> list[str]:
    if function is None:
        return []
    args = function.args
    return [arg.arg for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs)]


def reader_for(site: Site) -> Reader | None:
    """The reader the site's enclosing function becomes when the name is one of its
    parameters (`def optional(self, name): return self.env.get(name)`), if it is."""
    function = site.function
    parameters = parameters_of(function)
    shape = template(site.node, set(parameters))
    if shape is None or function is None:
        return None
    prefix, parameter, suffix = shape
    outer = site.reader or Reader("", "", 0)
    positional = [arg.arg for arg in (*function.args.posonlyargs, *function.args.args)]
    skip = 1 if site.method else 0
    position = positional.index(parameter) - skip if parameter in positional else 10**6
    return Reader(
        function.name,
        parameter,
        position,
        prefix=outer.prefix + prefix,
        suffix=suffix + outer.suffix,
    )


@cache
def environment_reads() -> tuple[dict[str, set[str]], list[str]]:
    """Every variable the code reads (name -> where), and the reads whose name could not be
    worked out. Readers are found until none is new: a function that passes its parameter to
    a reader is a reader too (`read.text("X")` -> `optional(name)` -> `env.get(name)`), and
    one that builds the name from it, such as `f"{prefix}_TIMEOUT"`, reads each prefix given."""
    readers: set[Reader] = set()
    while True:
        names: dict[str, set[str]] = {}
        unresolved: list[str] = []
        new: set[Reader] = set()
        for site in sites(readers):
            values = literal(site.node)
            if values is not None:
                outer = site.reader or Reader("", "", 0)
                for value in values:
                    names.setdefault(outer.prefix + value + outer.suffix, set()).add(site.where)
                continue
            reader = reader_for(site)
            if reader is None:
                unresolved.append(f"{site.where}: {ast.unparse(site.node)}")
            elif reader not in readers:
                new.add(reader)
        if not new:
            return names, unresolved
        readers |= new


def settings_read() -> list[str]:
    names, _ = environment_reads()
    return sorted(name for name in names if ENV_NAME.match(name) and name not in NOT_SETTINGS)


def test_the_scanner_finds_the_settings_read_every_way():
    """Literals, constants, reader methods and names built from a prefix are all found."""
    found = set(settings_read())
    assert {"WISPHUB_URL", "REDIS_URL", "RECONCILE_CRON"} <= found  # read.text("...")
    assert {"LOG_LEVEL", "LOG_FORMAT"} <= found  # env.get(LEVEL_ENV)
    assert {"PORT", "WEB_CONCURRENCY", "TZ", "PROMETHEUS_MULTIPROC_DIR"} <= found  # os.environ
    assert {"WISPHUB_TIMEOUT", "BQN_TIMEOUT", "BQN_CONCURRENCY"} <= found  # f"{prefix}_..."


def test_every_environment_read_names_its_variable():
    """A variable read under a name the scanner cannot work out would escape the checks below:
    read it through a literal, a constant or a reader function instead."""
    _, unresolved = environment_reads()
    assert [site for site in unresolved if not operator_named(site)] == []


def operator_named(site: str) -> bool:
    """The one read whose variable the operator names: a target's `password_env` in the
    targets file (`worker/targets.py`)."""
    path, _, expression = site.split(":")
    return path == "worker/targets.py" and expression.strip() == "variable"


@pytest.mark.parametrize("page", CONFIG_PAGES)
def test_every_setting_is_in_a_table_of_the_configuration_page(page):
    rows = [line for line in (ROOT / page).read_text().splitlines() if line.startswith("|")]
    missing = [name for name in settings_read() if not any(f"`{name}`" in row for row in rows)]
    assert missing == [], f"{page} has no table row for these settings"


@pytest.mark.parametrize("file", ENV_FILES)
def test_every_setting_is_in_each_environment_file(file):
    text = (ROOT / file).read_text()
    missing = [
        name
        for name in settings_read()
        if not re.search(rf"(?<![A-Z0-9_]){name}(?![A-Z0-9_])", text)
    ]
    assert missing == [], f"{file} does not name these settings"


# Markdown links ---------------------------------------------------------------------------

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"(?<!\!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`[^`]*`")


def markdown_pages() -> list[Path]:
    pages = [ROOT / "README.md", ROOT / "LEAME.md", ROOT / "deploy/README.md"]
    pages += [ROOT / "bench/README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [page for page in pages if page.exists()]


def prose_lines(text: str) -> Iterator[str]:
    """The lines outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed (letters
    with accents kept), spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def headings(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    return [match.group(2) for line in prose_lines(text) if (match := HEADING.match(line))]


def links(page: Path) -> Iterator[str]:
    for line in prose_lines(page.read_text(encoding="utf-8")):
        yield from LINK.findall(INLINE_CODE.sub("", line))


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no such heading in {linked.relative_to(ROOT)}")
    return broken


def test_the_slug_follows_github():
    assert slug("Durability: nothing accepted is lost") == "durability-nothing-accepted-is-lost"
    assert slug("Qué hace la sincronización") == "qué-hace-la-sincronización"
    assert slug("A client's history") == "a-clients-history"
    assert slug("`POST /api/v1/reconcile`") == "post-apiv1reconcile"


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_lands(page):
    assert broken_links(page) == []


@pytest.mark.parametrize(
    ("entry", "folder"), [("README.md", "docs"), ("LEAME.md", "docs/es")], ids=["en", "es"]
)
def test_the_entry_page_links_every_doc(entry, folder):
    page = ROOT / entry
    linked = {(page.parent / target.partition("#")[0]).resolve() for target in links(page)}
    pages = sorted((ROOT / folder).rglob("*.md"))
    assert [str(doc.relative_to(ROOT)) for doc in pages if doc not in linked] == []


# Docs cited by the code -------------------------------------------------------------------

CITED = re.compile(r"(docs/[\w./-]+\.md)(?:,?\s*(?:section\s*)?\"([^\"\n]+)\")?")


def citations() -> list[tuple[str, str, str | None]]:
    found = []
    for path in python_files("worker", "service", "sandbox"):
        text = path.read_text(encoding="utf-8")
        for match in CITED.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1), match.group(2)))
    return found


def test_the_code_cites_some_docs():
    assert any(section for _, _, section in citations())


def test_every_doc_the_code_cites_exists():
    missing = [f"{where}: {doc}" for where, doc, _ in citations() if not (ROOT / doc).is_file()]
    assert missing == []


def test_every_section_the_code_cites_is_a_heading():
    missing = []
    for where, doc, section in citations():
        page = ROOT / doc
        if section and page.is_file():
            titles = {title.strip("`*").lower() for title in headings(page)}
            if section.lower() not in titles:
                missing.append(f'{where}: {doc} has no heading "{section}"')
    assert missing == []
