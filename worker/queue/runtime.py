"""What the jobs of one worker process share: the settings, and API clients whose kept-alive
connections every job reuses. Built from the environment on first use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

from worker.clients.bqn import BqnClient
from worker.clients.wisphub import WispHubClient
from worker.queue.metrics import observe_request
from worker.settings import ServiceSettings, Settings
from worker.sync.policy_cache import PolicyCache


@dataclass(frozen=True)
class Runtime:
    """One worker process's settings and clients."""

    settings: Settings
    service: ServiceSettings
    wisphub: WispHubClient
    bqn: BqnClient
    policies: PolicyCache


@cache
def runtime() -> Runtime:
    """This process's runtime; every request the clients make is counted for `/metrics`."""
    settings = Settings.from_env(os.environ)
    return Runtime(
        settings=settings,
        service=ServiceSettings.from_env(os.environ),
        wisphub=WispHubClient(settings.wisphub, observe_request),
        bqn=BqnClient(settings.bqn, observe_request),
        policies=PolicyCache(),
    )
