"""The one-shot CLI where the service runs (issue 20, item 7): with the service's Redis in its
environment it hands its run to the service and waits for it, instead of writing a stale pass
of its own beside the service's jobs; where the service cannot take the run it says why and
queues nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests
from redis import Redis

from sandbox.processes import Processes
from tests.integration.conftest import (
    API_TOKEN,
    BQN_PASSWORD,
    BQN_USER,
    HOOK,
    expected_subscribers,
    managed_state,
)
from tests.integration.processes import eventually, start
from worker.settings import ServiceSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def stack(service_env: dict[str, str], redis: Redis) -> Iterator[Processes]:
    """The web and worker processes; nothing polls or reconciles on its own, so that only
    what the test asks for changes the BQN."""
    processes = start({**service_env, "POLL_INTERVAL": "0"}, ("web", "worker"))
    yield processes
    processes.stop()


def cli(env: dict[str, str], *argv: str) -> subprocess.Popen[str]:
    """The CLI as cron runs it: its own process, with the service's environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *argv],
        env={"PATH": os.environ["PATH"], **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ended(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def reconciled(stack: Processes, wisphub_sim, bqn_sim) -> None:
    """A reconcile asked of the service, applied."""
    answer = requests.post(f"{stack.url}/api/v1/reconcile", headers=API, timeout=10)
    assert answer.status_code == 202, answer.text
    wanted = expected_subscribers(wisphub_sim.rows())
    eventually(lambda: managed_state(bqn_sim) == wanted, "the reconcile")


def records(stack: Processes) -> list[dict]:
    answer = requests.get(f"{stack.url}/api/v1/reconciles", headers=API, timeout=10)
    return answer.json()["reconciles"]


def test_the_cli_hands_its_pass_to_the_service_and_undoes_none_of_its_changes(
    stack, service_env, wisphub_sim, bqn_sim
):
    wisphub_sim.load(300)
    reconciled(stack, wisphub_sim, bqn_sim)
    active = sorted(row["id_servicio"] for row in wisphub_sim.rows() if row["estado"] == "Activo")[
        :200
    ]
    for key in active:  # the cut-off day, announced to nobody: the pass has 200 writes
        wisphub_sim.state.update_client(key, estado="Suspendido")
    bqn_sim.state.faults.update(latency_ms=40)
    writes = bqn_sim.state.stats.writes()
    process = cli(service_env)
    eventually(lambda: bqn_sim.state.stats.writes() >= writes + 20, "the pass writing")
    paid = active[-10:]  # these pay while the pass writes: the service applies it at once
    for key in paid:
        wisphub_sim.state.update_client(key, estado="Activo")
        hook = {"id_servicio": key}
        assert requests.post(f"{stack.url}/webhooks/wisphub", json=hook, headers=HOOK).ok
    code, out, err = ended(process)
    bqn_sim.state.faults.update(latency_ms=0)
    assert code == 0, err
    [job] = re.findall(r"queued in the service as job (\S+);", err)
    assert f"job {job} started" in err, "the wait says how the job goes"
    assert records(stack)[0]["job_id"] == job, "the service ran the pass"
    assert "clients read;" in out.splitlines()[-1]
    # a pass of the CLI's own would leave the paying clients blocked: its read is older than
    # their jobs' writes, and nothing here polls or reconciles again
    wanted = expected_subscribers(wisphub_sim.rows())
    eventually(lambda: managed_state(bqn_sim) == wanted, "the BQN to match WispHub", 20)

    # one client, through the service too: its history says who asked
    code, out, err = ended(cli(service_env, "--client", str(paid[0]), "--json"))
    assert code == 0, err
    assert json.loads(out)["clients"] == 1
    history = requests.get(
        f"{stack.url}/api/v1/clients/{paid[0]}/history", headers=API, timeout=10
    ).json()["events"]
    assert any(event.get("via") == "cli" for event in history), history


def test_a_reconcile_running_in_the_service_does_the_cli_s_work(
    stack, service_env, wisphub_sim, bqn_sim
):
    wisphub_sim.load(200)
    reconciled(stack, wisphub_sim, bqn_sim)
    for row in wisphub_sim.rows()[:150]:
        wisphub_sim.state.update_client(row["id_servicio"], estado="Suspendido")
    bqn_sim.state.faults.update(latency_ms=100)  # the reconcile outlasts the CLI's start
    writes = bqn_sim.state.stats.writes()
    running = requests.post(f"{stack.url}/api/v1/reconcile", headers=API, timeout=10).json()
    eventually(lambda: bqn_sim.state.stats.writes() > writes, "the service's reconcile")
    code, _, err = ended(cli(service_env))
    bqn_sim.state.faults.update(latency_ms=0)
    assert code == 0, err
    assert f"job {running['job_id']}, running already, does this work" in err
    # the start's reconcile and the running one: the CLI's pass did not run beside it
    runs = [run["job_id"] for run in records(stack)]
    assert len(runs) == 2, runs
    assert runs[0] == running["job_id"]
    assert managed_state(bqn_sim) == expected_subscribers(wisphub_sim.rows())


def test_where_the_service_cannot_take_the_run_the_cli_says_why_and_queues_nothing(
    service_env, redis, run_cli, wisphub_sim, bqn_sim
):
    wisphub_sim.load(20)
    queue = f"rq:queue:{ServiceSettings.queue_name}"
    no_worker = run_cli(environ=service_env)
    assert no_worker.code == 2
    assert "has no worker on queue" in no_worker.err
    other_bqn = run_cli("-b", "192.0.2.7", BQN_USER, BQN_PASSWORD, "key", environ=service_env)
    assert other_bqn.code == 2
    assert "names a WispHub or BQN other than this environment's" in other_bqn.err
    assert redis.llen(queue) == 0
    down = run_cli(environ={**service_env, "REDIS_URL": "redis://127.0.0.1:9/0"})
    assert down.code == 2
    assert "did not answer" in down.err
    assert bqn_sim.state.stats.writes() == 0, "nothing was written without the service"
