"""Starting the Procfile's processes for a test, and waiting for what they do."""

from __future__ import annotations

import time
from collections.abc import Callable

from sandbox.processes import Processes

WAIT_SECONDS = 60
ONE_OF_EACH = ("web", "worker", "scheduler")


def eventually(check: Callable[[], bool], what: str, seconds: float = WAIT_SECONDS) -> float:
    """Wait until `check()` holds, up to `seconds`; return the seconds it took (no speed is
    asserted here)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def start(env: dict[str, str], names: tuple[str, ...] = ONE_OF_EACH) -> Processes:
    """The Procfile's processes `names`, once the web one is ready."""
    processes = Processes(env, list(names))
    try:
        eventually(processes.ready, "the web process to be ready")
    except BaseException:
        processes.stop()
        raise
    return processes
