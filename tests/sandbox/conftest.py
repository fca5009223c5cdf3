"""Fixtures: the simulators served over real sockets, reset between tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from sandbox import bqn, seed, wisphub
from sandbox.server import RunningServer, serve

API_KEY = "test-key.0123456789abcdef0123456789abcdef"
BQN_USER = "rest-user"
BQN_PASSWORD = "rest-password"
CLIENT_COUNT = 120


@dataclass
class Api:
    """A running simulator, its state and a session that authenticates."""

    url: str
    server: RunningServer
    session: requests.Session

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return self.session.get(self.url + path, timeout=5, **kwargs)

    def request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        return self.session.request(method, self.url + path, timeout=5, **kwargs)


@pytest.fixture(scope="module")
def wisphub_state() -> wisphub.WispHubState:
    state = wisphub.WispHubState(api_key=API_KEY)
    seed.load_wisphub(state, CLIENT_COUNT, seed=3)
    return state


@pytest.fixture(scope="module")
def wisphub_server(wisphub_state: wisphub.WispHubState) -> Iterator[RunningServer]:
    with serve(wisphub.create_app(wisphub_state)) as server:
        yield server


@pytest.fixture
def wh(wisphub_server: RunningServer, wisphub_state: wisphub.WispHubState) -> Iterator[Api]:
    """The WispHub simulator with an `Api-Key` session; faults, stats and rows restored."""
    with wisphub_state.lock:
        saved = copy.deepcopy(wisphub_state.clients)
    session = requests.Session()
    session.headers["Authorization"] = f"Api-Key {API_KEY}"
    yield Api(wisphub_server.url, wisphub_server, session)
    session.close()
    wisphub_state.faults.clear()
    wisphub_state.stats.reset()
    with wisphub_state.lock:
        wisphub_state.clients = saved


@pytest.fixture(scope="module")
def bqn_state() -> bqn.BqnState:
    return bqn.BqnState(user=BQN_USER, password=BQN_PASSWORD)


@pytest.fixture(scope="module")
def bqn_server(bqn_state: bqn.BqnState) -> Iterator[RunningServer]:
    with serve(bqn.create_app(bqn_state)) as server:
        yield server


@pytest.fixture
def bq(bqn_server: RunningServer, bqn_state: bqn.BqnState) -> Iterator[Api]:
    """The BQN simulator, freshly seeded, with a Basic-auth JSON session."""
    fresh = bqn.BqnState()
    seed.load_bqn(fresh, seed=1)
    with bqn_state.lock:
        bqn_state.subscribers = fresh.subscribers
        bqn_state.policies = fresh.policies
        bqn_state.groups = fresh.groups
        bqn_state.static_policies = fresh.static_policies
    session = requests.Session()
    session.auth = (BQN_USER, BQN_PASSWORD)
    yield Api(bqn_server.url + bqn.API, bqn_server, session)
    session.close()
    bqn_state.faults.clear()
    bqn_state.stats.reset()
