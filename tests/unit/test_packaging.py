"""Every package the code imports is declared in pyproject.toml, where it belongs: what the
service imports among the dependencies, what the simulators import among them or the
`sandbox` extra, and what the tests and benchmarks import anywhere."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
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


def test_the_lock_file_pins_every_runtime_dependency_within_its_range() -> None:
    pinned = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pinned[_normal(name)] = Version(version)
    for line in PROJECT["dependencies"]:
        requirement = Requirement(line)
        name = _normal(requirement.name)
        assert name in pinned, f"{name} is not in requirements.lock: run make lock"
        assert pinned[name] in requirement.specifier, f"{name} {pinned[name]}: run make lock"
