"""Jobs and their errors as an operator reads them: words, not Python's names (pure).

RQ keeps a job's function as a dotted path and its failure as a traceback whose last line names
the exception's class with its module (`worker.core.errors.ConfigError: BQN answered 401: …`).
The failures list shows neither: what the job was for, and what went wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from worker.core.targets import DEFAULT_TARGET, split_address_key

# The last line of a traceback: the exception's class, with its module unless it is built in,
# then its message after ": " (nothing when it had none).
_RAISED = re.compile(r"(?P<module>(?:[A-Za-z_]\w*\.)*)(?P<name>[A-Za-z_]\w*)(?::\s(?P<text>.*))?")
# The exceptions the service raises on purpose carry a message written for a person; any other
# (a bug, Redis, RQ's timeout) keeps its class name beside its message.
OWN_MODULES = "worker."


def error_in_words(text: str) -> str:
    """What went wrong, from a failure's text (a traceback, or a message): the exception's
    message on one line, without the module path of its class; without the class name too when
    it is one of the service's own errors."""
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    frames = [at for at, line in enumerate(lines) if line[:1].isspace()]
    raised = lines[frames[-1] + 1 :] if frames else lines  # after a traceback's last frame
    if not raised:
        return lines[-1].strip() if lines else ""
    first, rest = raised[0], " ".join(line.strip() for line in raised[1:])
    found = _RAISED.fullmatch(first)
    if found is None or not (found["module"] or found["text"] is not None):
        return " ".join(line.strip() for line in raised)  # a message, not an exception's line
    message = " ".join(part for part in (found["text"], rest) if part)
    if not message:
        return found["name"]
    return message if found["module"].startswith(OWN_MODULES) else f"{found['name']}: {message}"


def job_facts(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any], clients: int | None = None
) -> dict[str, Any]:
    """What a job (`name`, the last part of its function's path, with its arguments) does, as
    data a page words in its own language: `kind` (a key of `JOB_PHRASES`) and its values; a
    batch counts `clients`, those it has left (all of them when not given)."""
    if name == "sync_client" and args:
        return {"kind": "client", "id": args[0]}
    if name == "sync_clients" and args:
        return {"kind": "batch", "count": clients if clients is not None else len(args[0])}
    if name == "sync_address" and args:
        ip, target = split_address_key(str(args[0]))
        return {"kind": "address", "ip": ip, "target": None if target == DEFAULT_TARGET else target}
    if name == "reconcile":
        return {
            "kind": "reconcile",
            "target": kwargs.get("target"),
            "dry_run": bool(kwargs.get("dry_run")),
            "forced": bool(kwargs.get("force")),
        }
    if name in ("sync_plans", "poll_changes"):
        return {"kind": name}
    return {"kind": "other", "name": name.replace("_", " ")}


# The English words of each kind of job, and of a reconcile's details (`job_facts`); the status
# page has the same keys in each of its languages (`service/console.py`).
JOB_PHRASES: dict[str, str | Callable[[int], str]] = {
    "client": "sync of client {id}",
    "batch": lambda count: "batch of {count} client" + ("" if count == 1 else "s"),
    "address": "sync of address {ip}",
    "address_on": "sync of address {ip} on {target}",
    "reconcile": "full reconcile",
    "reconcile_of": "full reconcile of {target}",
    "dry_run": " (dry run)",
    "forced": " (forced)",
    "sync_plans": "plan sync",
    "poll_changes": "change poll",
    "other": "{name}",
}


def say_job(facts: Mapping[str, Any], phrases: Mapping[str, Any] = JOB_PHRASES) -> str:
    """`job_facts` in words, from `phrases`: a template per key, a batch's chosen by its
    count (languages differ in their plurals)."""
    kind = facts["kind"]
    if kind == "batch":
        return str(phrases["batch"](facts["count"])).format_map(facts)
    if kind in ("address", "reconcile") and facts.get("target"):
        kind += "_on" if kind == "address" else "_of"
    text = phrases[kind].format_map(facts)
    if facts["kind"] == "reconcile":
        text += "".join(phrases[flag] for flag in ("dry_run", "forced") if facts[flag])
    return text
