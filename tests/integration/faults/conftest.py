"""What the fault-injection tests share: quick retries, an account of every accepted
notification, client churn, and the closing check that the BQN matches WispHub."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from rq.job import Job

from tests.integration.conftest import (
    API,
    HOOK,
    BqnSim,
    WispHubSim,
    expected_subscribers,
    managed_state,
)
from worker.queue import failures

# Ten retries a second apart: a fault outlasts a few of them, never all.
QUICK_RETRIES = ",".join(["1"] * 10)


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    """The service with one-second job retries and short API timeouts."""
    return {
        **service_env,
        "RETRY_INTERVALS": QUICK_RETRIES,
        "WISPHUB_TIMEOUT": "1",
        "WISPHUB_RETRIES": "2",
        "BQN_TIMEOUT": "1",
        "BQN_RETRIES": "1",
    }


@dataclass
class Ledger:
    """Every job the service acknowledged, to check that none was lost."""

    web: FlaskClient
    redis: Redis
    job_ids: set[str] = field(default_factory=set)

    def notify(self, ids: Iterable[int]) -> list[str]:
        """Send one notification for `ids`; it must be accepted."""
        body = {"id_servicio": list(ids)}
        response = self.web.post("/webhooks/wisphub", json=body, headers=HOOK)
        assert response.status_code == 202, response.json
        accepted = [job["job_id"] for job in response.json["jobs"]]
        self.job_ids.update(accepted)
        return accepted

    def reconcile(self, *, force: bool = False) -> str:
        """Ask for a full reconcile through the API."""
        body = {"dry_run": False, "force": force}
        response = self.web.post("/api/v1/reconcile", json=body, headers=API)
        assert response.status_code == 202, response.json
        self.job_ids.add(response.json["job_id"])
        return response.json["job_id"]

    def view(self, job_id: str) -> dict:
        return self.web.get(f"/api/v1/jobs/{job_id}", headers=API).json

    def statuses(self) -> dict[str, str]:
        """Each acknowledged job's status."""
        return {
            job_id: Job.fetch(job_id, connection=self.redis).get_status() for job_id in self.job_ids
        }

    def assert_all_applied(self) -> None:
        """Every acknowledged job finished: no notification was lost or left failing."""
        unfinished = {j: s for j, s in self.statuses().items() if s != "finished"}
        assert not unfinished, f"jobs not finished: {unfinished}"


@pytest.fixture
def ledger(web: FlaskClient, redis: Redis) -> Ledger:
    return Ledger(web, redis)


@pytest.fixture
def baseline(
    wisphub_sim: WispHubSim, ledger: Ledger, settle: Callable[..., None]
) -> Callable[[int], list[int]]:
    """Load `count` clients into WispHub and reconcile them onto the BQN, with no fault on;
    return their ids."""

    def load(count: int) -> list[int]:
        rows = wisphub_sim.load(count)
        ledger.reconcile()
        settle()
        return [r["id_servicio"] for r in rows]

    return load


def churn(wisphub_sim: WispHubSim, ids: Iterable[int], seed: int = 7) -> list[int]:
    """Suspend, reactivate or move to another plan each of `ids` in WispHub; return them."""
    rng = random.Random(seed)
    plan_ids = sorted(wisphub_sim.state.plans)
    changed = []
    for id_servicio in ids:
        current = wisphub_sim.state.get_client(id_servicio)
        if current is None or current["estado"] == "Cancelado":
            continue
        if current["estado"] == "Suspendido":
            wisphub_sim.state.update_client(id_servicio, estado="Activo")
        elif rng.random() < 0.5:
            wisphub_sim.state.update_client(id_servicio, estado="Suspendido")
        else:
            plan = (current.get("plan_internet") or {}).get("id")
            others = [p for p in plan_ids if p != plan]
            wisphub_sim.state.update_client(id_servicio, plan_internet=rng.choice(others))
        changed.append(id_servicio)
    return changed


def assert_converged(wisphub_sim: WispHubSim, bqn_sim: BqnSim) -> None:
    """The BQN holds exactly what WispHub says (outside the subscribers its rules manage)."""
    assert managed_state(bqn_sim) == expected_subscribers(wisphub_sim.rows())


def failed_jobs(queue: Queue) -> list[dict]:
    """The failed jobs as `GET /api/v1/failures` lists them."""
    return failures.failures(queue)[1]
