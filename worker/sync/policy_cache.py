"""Rate policies a worker process saw on the BQN or wrote there lately, so that a client job
need not read its policy back each time. Entries expire; the plan refresh and the nightly
reconcile read every policy anyway and correct what changed behind the cache's back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from worker import defaults
from worker.core.model import Policy


class PolicyCache:
    """Policies by name, each kept for `ttl` seconds (thread-safe)."""

    def __init__(
        self,
        ttl: float = defaults.POLICY_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[float, Policy]] = {}

    def get(self, name: str) -> Policy | None:
        """The policy when it was seen or written less than `ttl` seconds ago."""
        with self._lock:
            kept = self._kept.get(name)
            if kept is None or self.clock() - kept[0] >= self.ttl:
                return None
            return kept[1]

    def put(self, policy: Policy) -> None:
        """Remember `policy` as the BQN holds it now."""
        with self._lock:
            self._kept[policy.name] = (self.clock(), policy)
