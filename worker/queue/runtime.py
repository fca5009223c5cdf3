"""What the jobs of one worker process share: the settings, and API clients whose kept-alive
connections every job reuses (a BQN client per target). Built from the environment on first
use."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache, partial

from redis import Redis

from worker.clients.bqn import BqnClient
from worker.clients.wisphub import WispHubClient
from worker.core.rules import MappingRules
from worker.queue import client_overrides, store
from worker.queue.metrics import observe_request
from worker.settings import ServiceSettings, Settings
from worker.sync.policy_cache import PolicyCache
from worker.sync.targets import Shaper


@dataclass(frozen=True)
class Runtime:
    """One worker process's settings and clients."""

    settings: Settings
    service: ServiceSettings
    wisphub: WispHubClient
    shapers: tuple[Shaper, ...]

    @property
    def one_for_all(self) -> bool:
        """Whether the service keeps one BQN taking every client (as before targets): its jobs
        read WispHub under their address locks, as they always did."""
        return len(self.shapers) == 1 and self.shapers[0].selector.everyone

    def rules(self, redis: Redis) -> MappingRules:
        """The mapping rules with the temporary overrides in force now (read from Redis each
        time: one that expired is ignored at once)."""
        return replace(self.settings.rules, overrides=client_overrides.in_force(redis))

    def chosen(self, names: Sequence[str] | None) -> list[Shaper]:
        """The targets named (those that still exist), or every one for `None`."""
        return [shaper for shaper in self.shapers if names is None or shaper.name in names]


def keys_of(shaper: Shaper) -> store.TargetKeys:
    """Where a target's state lives in Redis."""
    return store.target_keys(shaper.name)


@cache
def runtime() -> Runtime:
    """This process's runtime; every request the clients make is counted for `/metrics`."""
    settings = Settings.from_env(os.environ)
    shapers = tuple(
        Shaper(
            target.name,
            BqnClient(target.bqn, partial(observe_request, target=target.name)),
            target.selector,
            PolicyCache(),
        )
        for target in settings.targets
    )
    return Runtime(
        settings=settings,
        service=ServiceSettings.from_env(os.environ),
        wisphub=WispHubClient(settings.wisphub, observe_request),
        shapers=shapers,
    )
