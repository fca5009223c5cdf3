"""Fixtures: both simulators served over HTTPS on 127.0.0.1, and the product pointed at them."""

from __future__ import annotations

import copy
import hashlib
import hmac
import ipaddress
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from rq.job import Job

from sandbox import bqn, seed, wisphub
from sandbox.redis_server import RedisServer
from sandbox.server import RunningServer, serve
from sandbox.tls import TlsFiles, make_tls
from service.app import create_app
from worker import cli
from worker.clients.bqn import BqnClient
from worker.clients.wisphub import WispHubClient
from worker.queue import runtime
from worker.rqworker import PromptStop
from worker.settings import ServiceSettings, Settings

API_KEY = "Xy12ab34.0123456789abcdef0123456789abcdef"
BQN_USER = "rest-sync"
BQN_PASSWORD = "Pa55-wörd"


@dataclass
class Simulator:
    """A simulator served on 127.0.0.1 that a test can take down and bring back."""

    app: Flask
    tls: TlsFiles
    server: RunningServer

    @contextmanager
    def outage(self) -> Iterator[None]:
        """Stop listening (connections are refused) until the block ends, then serve again on
        the same port."""
        port = self.server.port
        self.server.close()
        try:
            yield
        finally:
            self.server = serve(self.app, port=port, tls=self.tls)


@dataclass
class WispHubSim(Simulator):
    state: wisphub.WispHubState

    def load(self, count: int, seed_value: int = 1) -> list[dict[str, Any]]:
        seed.load_wisphub(self.state, count, seed=seed_value)
        return self.rows()

    def rows(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return copy.deepcopy(list(self.state.clients.values()))


@dataclass
class BqnSim(Simulator):
    state: bqn.BqnState

    def subscribers(self) -> dict[str, dict[str, Any]]:
        return {item["subscriberIp"]: item for item in self.state.snapshot()["subscribers"]}

    def policies(self) -> dict[str, dict[str, Any]]:
        return {item["policyName"]: item for item in self.state.snapshot()["policies"]}

    def writes(self) -> int:
        return self.state.stats.writes()

    def add_rest_subscriber(self, ip: str, subscriber_id: str, policy_rate: str) -> None:
        """A subscriber as a REST client (the original script, say) left it on the BQN."""
        with self.state.lock:
            self.state.subscribers[ip] = {
                "subscriberIp": ip,
                "subscriberId": subscriber_id,
                "policyRate": policy_rate,
                "policyAssignedBy": "rest",
                "subscriberGroups": [],
            }
            self.state.reference_policy(policy_rate)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def wisphub_sim(tls: TlsFiles) -> Iterator[WispHubSim]:
    state = wisphub.WispHubState(api_key=API_KEY)
    for plan in seed.wisphub_plans():
        state.set_plan(**plan)
    app = wisphub.create_app(state)
    sim = WispHubSim(app, tls, serve(app, tls=tls), state)
    yield sim
    sim.server.close()


@contextmanager
def serving_bqn(tls: TlsFiles, password: str) -> Iterator[BqnSim]:
    """A seeded BQN simulator taking `BQN_USER` with `password`, until the block ends."""
    state = bqn.BqnState(user=BQN_USER, password=password)
    seed.load_bqn(state, seed=1)
    app = bqn.create_app(state)
    sim = BqnSim(app, tls, serve(app, tls=tls), state)
    try:
        yield sim
    finally:
        sim.server.close()


@pytest.fixture
def bqn_sim(tls: TlsFiles) -> Iterator[BqnSim]:
    with serving_bqn(tls, BQN_PASSWORD) as sim:
        yield sim


SECOND_BQN_PASSWORD = "core-b-secret-0456"


@pytest.fixture
def second_bqn(tls: TlsFiles) -> Iterator[BqnSim]:
    """Another BQN, as the standby of an HA pair or a second site's; its REST password differs
    from the first's."""
    with serving_bqn(tls, SECOND_BQN_PASSWORD) as sim:
        yield sim


def write_targets(directory: Path, targets: list[dict[str, Any]]) -> Path:
    """A targets file (`BQN_TARGETS_FILE`) listing `targets`."""
    path = directory / "targets.yaml"
    path.write_text(yaml.safe_dump({"targets": targets}, sort_keys=False), encoding="utf-8")
    return path


def targets_env(service_env: dict[str, str], path: Path, **passwords: str) -> dict[str, str]:
    """`service_env` with its BQN given by the targets file at `path` instead of `BQN_URL`,
    and the password variables the file names."""
    single = ("BQN_URL", "BQN_USER", "BQN_PASSWORD")
    return {
        **{name: value for name, value in service_env.items() if name not in single},
        "BQN_TARGETS_FILE": str(path),
        **passwords,
    }


def make_pair_env(
    service_env: dict[str, str], first: BqnSim, second: BqnSim, directory: Path
) -> dict[str, str]:
    """The service keeping an HA pair: `core-a` (`first`, its password in the file) and
    `core-b` (`second`, its password in `BQN_CORE_B_PASSWORD`), both taking every client."""
    path = write_targets(
        directory,
        [
            {
                "name": "core-a",
                "url": first.server.url,
                "user": BQN_USER,
                "password": BQN_PASSWORD,
            },
            {
                "name": "core-b",
                "url": second.server.url,
                "user": BQN_USER,
                "password_env": "BQN_CORE_B_PASSWORD",
            },
        ],
    )
    return targets_env(service_env, path, BQN_CORE_B_PASSWORD=SECOND_BQN_PASSWORD)


@pytest.fixture
def pair_env(
    service_env: dict[str, str], bqn_sim: BqnSim, second_bqn: BqnSim, tmp_path: Path
) -> dict[str, str]:
    """`make_pair_env` with `bqn_sim` as core-a and `second_bqn` as core-b."""
    return make_pair_env(service_env, bqn_sim, second_bqn, tmp_path)


@pytest.fixture
def env(wisphub_sim: WispHubSim, bqn_sim: BqnSim, tls: TlsFiles) -> dict[str, str]:
    """The environment that points the product at the simulators, with quick retries."""
    return {
        "WISPHUB_URL": wisphub_sim.server.url,
        "WISPHUB_API_KEY": API_KEY,
        "WISPHUB_CA_BUNDLE": str(tls.ca),
        "WISPHUB_TIMEOUT": "2",
        "WISPHUB_BACKOFF": "0.01",
        "BQN_URL": bqn_sim.server.url,
        "BQN_USER": BQN_USER,
        "BQN_PASSWORD": BQN_PASSWORD,
        "BQN_CA_BUNDLE": str(tls.ca),  # verified, as docs/security.md asks of production
        "BQN_TIMEOUT": "2",
        "BQN_BACKOFF": "0.01",
    }


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


@pytest.fixture
def wisphub_client(settings: Settings) -> Iterator[WispHubClient]:
    client = WispHubClient(settings.wisphub)
    yield client
    client.close()


@pytest.fixture
def bqn_client(settings: Settings) -> Iterator[BqnClient]:
    client = BqnClient(settings.targets[0].bqn)
    yield client
    client.close()


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run the CLI in-process with `env` (or another environment) and capture its output."""

    def run(*argv: str, environ: dict[str, str] | None = None) -> CliResult:
        code = cli.main(list(argv), env=env if environ is None else environ)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def expected_policy_names(plans: dict[int, str]) -> dict[int, str]:
    """Policy names by plan id, written out independently of the engine: the name with spaces
    as `_` (a name of dots only made of `_`), the lowest plan id keeping a shared name and the
    others taking `-<id>`, the block policy's name never given to a plan."""
    taken, names = {"Wisphub_block"}, {}
    for plan_id in sorted(plans):
        name = plans[plan_id].strip().replace(" ", "_")
        name = "_" * len(name) if set(name) == {"."} and len(name) <= 2 else name
        while name in taken:
            name = f"{name}-{plan_id}"
        taken.add(name)
        names[plan_id] = name
    return names


def expected_subscribers(
    rows: list[dict[str, Any]], plans: dict[int, str] | None = None
) -> dict[str, tuple[str, str]]:
    """The BQN subscribers the rules define, written out independently of the engine:
    IP -> (subscriberId, policyRate) for non-cancelled clients with a usable IPv4, the latest
    `ultimo_cambio` (then the higher id) winning a shared IP. With `plans` (the catalogue's
    names by id), policies follow `expected_policy_names`."""
    names = None if plans is None else expected_policy_names(plans)
    best: dict[str, tuple[tuple[datetime, int], str, str]] = {}
    for row in rows:
        if row["estado"] == "Cancelado":
            continue
        ip = (row["ip"] or "").strip()
        try:
            address = ipaddress.IPv4Address(ip)
        except ValueError:
            continue
        if ip.startswith(("127.", "169.254.", "168.0.")) or address.is_unspecified:
            continue
        if row["estado"] == "Suspendido":
            policy = "Wisphub_block"
        elif names is not None:
            policy = names[row["plan_internet"]["id"]]
        else:
            policy = row["plan_internet"]["nombre"].replace(" ", "_")
        rank = (datetime.strptime(row["ultimo_cambio"], "%d/%m/%Y %H:%M:%S"), row["id_servicio"])
        if ip not in best or rank > best[ip][0]:
            best[ip] = (rank, row["nombre"].strip(), policy)
    return {ip: (name, policy) for ip, (_, name, policy) in best.items()}


UNITS = {"k": 1, "M": 1_000, "G": 1_000_000}


def kbps(speed: str) -> int:
    """A WispHub speed (`10M`, `512k`, `1G`) in kbps."""
    return round(float(speed[:-1]) * UNITS[speed[-1]])


def differences(
    wisphub: WispHubSim, bqn: BqnSim, takes: Callable[[dict[str, Any]], bool] | None = None
) -> list[str]:
    """What the BQN says that WispHub does not (empty: they agree): the subscribers, and the
    rates of the plan policies they use (never an "undefined" one). With `takes`, the BQN is
    one target's, which holds only the clients `takes` says it takes."""
    plans = {plan_id: plan["nombre"] for plan_id, plan in wisphub.state.plans.items()}
    rows = [row for row in wisphub.rows() if takes is None or takes(row)]
    expected = expected_subscribers(rows, plans)
    held = managed_state(bqn)
    found = [
        f"{ip}: BQN {held.get(ip)}, WispHub {expected.get(ip)}"
        for ip in sorted(held.keys() | expected.keys())
        if held.get(ip) != expected.get(ip)
    ]
    used = {policy for _, policy in expected.values()}
    policies = bqn.policies()
    for plan_id, name in expected_policy_names(plans).items():
        plan = wisphub.state.plans[plan_id]
        if name not in used or plan["tipo"].upper() == "PCQ":
            continue
        wanted = (kbps(plan["bajada"]), kbps(plan["subida"]))
        limits = policies.get(name, {})
        shown = tuple(limits.get(key, {}).get("rate") for key in RATE_LIMITS)
        if shown != wanted:
            found.append(f"policy {name}: BQN {shown}, WispHub {wanted}")
    return found


RATE_LIMITS = ("rateLimitDownlink", "rateLimitUplink")


def managed_state(bqn_sim: BqnSim) -> dict[str, tuple[str, str]]:
    """What the BQN simulator holds outside the `rules` subscribers."""
    return {
        ip: (item.get("subscriberId", ""), item.get("policyRate", ""))
        for ip, item in bqn_sim.subscribers().items()
        if item.get("policyAssignedBy") != "rules"
    }


# The service: a real Redis, the Flask app, real RQ workers ----------------------------------

WEBHOOK_SECRET = "hook-secret-0123456789"
API_TOKEN = "api-token-0123456789"


def own_database(url: str, worker: str) -> str:
    """`url` with its database moved on by the pytest process's number (`gw2`: two on); a
    socket's (`unix://path?db=n`) is in its query."""
    parts, step = urlsplit(url), int(worker.removeprefix("gw"))
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        query["db"] = str(int(query.get("db", 0)) + step)
        return urlunsplit(parts._replace(query=urlencode(query)))
    database = int(parts.path.strip("/") or 0) + step
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`REDIS_URL` when given (its database is flushed by the tests; with several pytest
    processes, `make test`'s, the N-th flushes and uses the N-th database after it), else a
    private server."""
    given = os.environ.get("REDIS_URL")
    if given:
        yield own_database(given, os.environ.get("PYTEST_XDIST_WORKER", "gw0"))
        return
    with RedisServer(Path(tmp_path_factory.mktemp("redis"))) as server:
        yield server.url


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    connection = Redis.from_url(redis_url)
    connection.flushdb()
    yield connection
    connection.close()


@pytest.fixture
def service_env(env: dict[str, str], redis_url: str) -> dict[str, str]:
    return {
        **env,
        "REDIS_URL": redis_url,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "API_TOKEN": API_TOKEN,
        "POLL_INTERVAL": "2",
        # several workers in each worker process, as in production; fewer than its default
        # eight, so that the suite's many Procfile processes share two cores
        "WORKER_PROCESSES": "3",
        # the tests retry jobs a second or so apart: a BQN brought back is tried within
        # two seconds (30 by default, for retries 5 s and more apart)
        "BREAKER_OPEN_SECONDS": "2",
    }


@pytest.fixture
def app(service_env: dict[str, str], redis: Redis) -> Flask:
    return create_app(service_env)


def english(client: FlaskClient) -> FlaskClient:
    """`client` asking for the pages in English (without a word, a browser gets Spanish:
    service/i18n.py); a request's own Accept-Language header still wins."""
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def web(app: Flask) -> FlaskClient:
    """A client of the app, asking for English: the tests read the pages' English words
    (tests/integration/test_page_language.py has a client that asks for nothing)."""
    return english(app.test_client())


@pytest.fixture
def queue(redis: Redis) -> Queue:
    return Queue(ServiceSettings.queue_name, connection=redis)


@pytest.fixture
def work(
    service_env: dict[str, str], queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], None]]:
    """Run a real RQ worker in this process until the queue is empty (burst mode)."""
    for name, value in service_env.items():
        monkeypatch.setenv(name, value)
    runtime.runtime.cache_clear()

    def run(*, scheduler: bool = False) -> None:
        worker = PromptStop([queue], connection=queue.connection)
        worker.work(burst=True, with_scheduler=scheduler)

    yield run
    runtime.runtime.cache_clear()


@pytest.fixture
def settle(work: Callable[..., None], queue: Queue) -> Callable[..., None]:
    """Run workers, and their scheduler for the retries, until no job is queued or waiting to
    be retried (or `timeout` seconds pass)."""

    def run(timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            work(scheduler=True)
            if not queue.count and not queue.scheduled_job_registry.count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs still waiting after {timeout} s")
            time.sleep(0.2)

    return run


API = {"Authorization": f"Bearer {API_TOKEN}"}
HOOK = {"X-Webhook-Token": WEBHOOK_SECRET}


def notify(web: FlaskClient, *ids: int) -> list[str]:
    """Send one change notification for `ids`; it must be accepted. Returns the job ids."""
    response = web.post("/webhooks/wisphub", json={"id_servicio": list(ids)}, headers=HOOK)
    assert response.status_code == 202, response.json
    return [job["job_id"] for job in response.json["jobs"]]


def stamped(body: bytes, stamp: int | None = None, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    """The headers of a notification signed at `stamp` (now by default), as senders sign."""
    stamp = int(time.time()) if stamp is None else stamp
    message = f"{stamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return {
        "X-Signature-256": f"sha256={digest}",
        "X-Webhook-Timestamp": str(stamp),
        "Content-Type": "application/json",
    }


def job_status(redis: Redis, job_id: str) -> str:
    """A job's RQ status."""
    return Job.fetch(job_id, connection=redis).get_status()
