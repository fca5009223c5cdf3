"""Several BQNs from one WispHub: each target sees WispHub through its selector, and work for
every target runs at once, each target's failure kept to itself.

A client a target does not take is, for that target, a client WispHub does not have: whatever
the sync left there for it is removed, so a client that moves from one site to another leaves
the old BQN and appears on the new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from worker.clients.bqn import BqnClient
from worker.clients.connection import Connection
from worker.clients.parallel import run_all
from worker.clients.wisphub import WispHubClient
from worker.core.desired import Row
from worker.core.errors import SyncError, TransientError
from worker.core.plans import Plan
from worker.core.progress import Progress, silent
from worker.core.rules import MappingRules
from worker.core.targets import Selector
from worker.sync.engine import MappedPass, map_pass
from worker.sync.policy_cache import PolicyCache
from worker.targets import Target

T = TypeVar("T")


@dataclass(frozen=True)
class Shaper:
    """One target as the sync uses it: its name, a client for its BQN, its selector, and the
    policies seen or written there lately."""

    name: str
    bqn: BqnClient
    selector: Selector = field(default_factory=Selector)
    policies: PolicyCache | None = field(default=None, compare=False)


class SelectedClients:
    """WispHub as one target sees it: only the clients the target takes. Rows already read (a
    job's own reads) are served from memory, so that several targets cost one WispHub read."""

    def __init__(
        self,
        wisphub: WispHubClient,
        selector: Selector,
        *,
        rows: Mapping[int, Row | None] | None = None,
    ) -> None:
        self.wisphub = wisphub
        self.selector = selector
        self.rows = dict(rows or {})
        # The rows this view read from WispHub, as WispHub answered (whether taken or not).
        self.fetched: dict[int, Row | None] = {}

    @property
    def settings(self) -> Connection:
        return self.wisphub.settings

    def list_clients(self, progress: Progress = silent) -> list[Row]:
        """The target's clients of a complete pass."""
        return self.selector.select(self.wisphub.list_clients(progress))

    def get_client(self, id_servicio: int) -> Row | None:
        """The client's row, or `None` when WispHub has no such client or the target does not
        take it."""
        if id_servicio in self.rows:
            row = self.rows[id_servicio]
        else:
            row = self.fetched[id_servicio] = self.wisphub.get_client(id_servicio)
        return self.select(row)

    def select(self, row: Row | None) -> Row | None:
        """`row` if the target takes its client, else `None`."""
        return row if row is not None and self.selector.matches(row) else None


def mapped_per_selector(
    rows: list[Row], selectors: Iterable[Selector], rules: MappingRules, plans: Sequence[Plan]
) -> dict[Selector, MappedPass]:
    """Each target's share of a complete pass, mapped once per selector: the BQNs of an HA
    pair take the same clients, and mapping 10,000 rows holds the GIL for a fifth of a
    second."""
    found: dict[Selector, MappedPass] = {}
    for selector in dict.fromkeys(selectors):
        found[selector] = map_pass(selector.select(rows), rules, plans)
    return found


def each_target(
    shapers: Sequence[Shaper], work: Callable[[Shaper], T]
) -> tuple[dict[str, T], dict[str, SyncError]]:
    """Run `work` for every target at once: what it returned for each target, and the error
    of each target it raised a `SyncError` for (the others go on)."""

    def attempt(shaper: Shaper) -> T | SyncError:
        try:
            return work(shaper)
        except SyncError as exc:
            return exc

    results = run_all(attempt, list(shapers), max(len(shapers), 1))
    done: dict[str, T] = {}
    errors: dict[str, SyncError] = {}
    for shaper, result in zip(shapers, results, strict=True):
        if isinstance(result, SyncError):
            errors[shaper.name] = result
        else:
            done[shaper.name] = result
    return done, errors


def reasons(errors: Mapping[str, SyncError]) -> dict[str, str]:
    """Why each target failed, for an answer or a job's result (`unreached`)."""
    return {name: str(error) for name, error in errors.items()}


def unless_all_failed(
    done: dict[str, T], errors: dict[str, SyncError]
) -> tuple[dict[str, T], dict[str, SyncError]]:
    """`done` and `errors` as they are, when some target went through; else an error is
    raised, as a single BQN's would be: a transient one if any (a later try may get through
    there, whatever the others said), else the first."""
    if errors and not done:
        transient = [error for error in errors.values() if isinstance(error, TransientError)]
        raise (transient or list(errors.values()))[0]
    return done, errors


@contextmanager
def connected(targets: Sequence[Target]) -> Iterator[list[Shaper]]:
    """A `Shaper` with a fresh BQN client for each target, closed afterwards (a one-shot run,
    a web request)."""
    shapers = [Shaper(target.name, BqnClient(target.bqn), target.selector) for target in targets]
    try:
        yield shapers
    finally:
        for shaper in shapers:
            shaper.bqn.close()
