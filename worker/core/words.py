"""Jobs and their errors as an operator reads them: words, not Python's names (pure).

RQ keeps a job's function as a dotted path and its failure as a traceback whose last line names
the exception's class with its module (`worker.core.errors.ConfigError: BQN answered 401: …`).
The failures list shows neither: what the job was for, and what went wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

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


def job_in_words(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any], clients: int | None = None
) -> str:
    """What a job (`name`, the last part of its function's path, with its arguments) does, in
    a few words; a batch counts `clients`, those it has left (all of them when not given)."""
    if name == "sync_client" and args:
        return f"sync of client {args[0]}"
    if name == "sync_clients" and args:
        count = clients if clients is not None else len(args[0])
        return f"batch of {count} client{'' if count == 1 else 's'}"
    if name == "sync_address" and args:
        ip, _, target = str(args[0]).partition("@")
        return f"sync of address {ip}" + (f" on {target}" if target else "")
    if name == "reconcile":
        target = kwargs.get("target")
        return (
            "full reconcile"
            + (f" of {target}" if target else "")
            + (" (dry run)" if kwargs.get("dry_run") else "")
            + (" (forced)" if kwargs.get("force") else "")
        )
    if name == "sync_plans":
        return "plan sync"
    if name == "poll_changes":
        return "change poll"
    return name.replace("_", " ")
