"""The Dockerfile and docker-compose.yml read as data: no Docker on the machines that run the
tests, so the image is checked by what its files say, and its commands are run here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Stage:
    """One `FROM … AS name` stage: its base (an image or an earlier stage) and instructions,
    each as (KEYWORD, arguments)."""

    name: str
    base: str
    instructions: tuple[tuple[str, str], ...]


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined and comments left out."""
    found, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        found.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return found


def stages(path: Path = ROOT / "Dockerfile") -> list[Stage]:
    """The Dockerfile's stages in order: the last is the default target."""
    found: list[Stage] = []
    for keyword, arguments in instructions(path.read_text()):
        if keyword == "FROM":
            base, _, name = arguments.partition(" AS ")
            found.append(Stage(name, base, ()))
        else:
            last = found[-1]
            found[-1] = Stage(last.name, last.base, (*last.instructions, (keyword, arguments)))
    return found


def target(name: str) -> list[tuple[str, str]]:
    """Every instruction that builds target `name`, its base stages' first."""
    by_name = {stage.name: stage for stage in stages()}
    stage = by_name[name]
    earlier = target(stage.base) if stage.base in by_name else []
    return [*earlier, *stage.instructions]


def last(keyword: str, name: str) -> str:
    """The arguments of the last `keyword` instruction in force for target `name`."""
    return [arguments for word, arguments in target(name) if word == keyword][-1]


def healthcheck(name: str) -> list[str]:
    """The command of target `name`'s HEALTHCHECK (its exec form)."""
    _, _, command = last("HEALTHCHECK", name).partition("CMD ")
    return json.loads(command)


def compose(path: str = "docker-compose.yml") -> dict[str, Any]:
    """A compose file of the repository (the one-host stack by default)."""
    return yaml.safe_load((ROOT / path).read_text())
