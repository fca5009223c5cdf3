"""The Procfile's processes log JSON lines with `LOG_FORMAT=json`: gunicorn's and the app's,
RQ's and the jobs' (each naming its job and client), the scheduler's; and neither a secret in
a URL nor a job's result (client names) reaches them, even at debug level. In text, a request
path's control characters reach the access log escaped. The worker and the scheduler say which
Redis they use as they start, and a deletion-guard trip is one warning, not a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from redis import Redis
from rq import Queue
from rq.job import Job

from tests.integration.conftest import API, WEBHOOK_SECRET, managed_state
from tests.integration.processes import Processes, eventually, start
from tests.rows import row
from worker.queue import failures, queueing

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMES = ("Zoraida Quintero", "Evaristo Mondragón", "Filomena Arciniegas")
# Control characters but the line break that ends each line.
CONTROL = {*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029} - {ord("\n")}


@pytest.fixture
def running(service_env: dict[str, str], redis: Redis) -> Iterator[Processes]:
    """The three processes logging JSON at debug level, with no scheduled work."""
    processes = start(
        {
            **service_env,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
            "POLL_INTERVAL": "0",
            "PLAN_REFRESH_INTERVAL": "0",
            "RECONCILE_ON_START": "0",
        }
    )
    yield processes
    processes.stop()


def log_lines(processes: Processes, name: str) -> list[dict[str, Any]]:
    """Every line the named process wrote to standard error, each parsed as JSON."""
    [child] = [child for child in processes.children if child.name == name]
    lines = child.log.read_text().splitlines()
    assert lines, f"{name} logged nothing"
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"{name} logged a line that is not JSON: {line!r}")
    return records


def finished(session: requests.Session, url: str, job_id: str) -> bool:
    view = session.get(f"{url}/api/v1/jobs/{job_id}", headers=API, timeout=5).json()
    assert view["status"] not in ("failed", "canceled"), view
    return view["status"] == "finished"


def test_every_process_logs_json_lines_without_secrets_or_results(running, wisphub_sim, bqn_sim):
    for number, name in enumerate(NAMES, start=1):
        wisphub_sim.state.upsert_client(
            row(number, f"10.7.0.{number}", "Activo", "Online_basico", name)
        )
    session = requests.Session()
    # a sender that can only call a URL puts the secret in the query string
    hook = session.post(
        f"{running.url}/webhooks/wisphub?id_servicio=1&token={WEBHOOK_SECRET}", timeout=5
    )
    assert hook.status_code == 202
    sync_job = hook.json()["jobs"][0]["job_id"]
    eventually(lambda: "10.7.0.1" in managed_state(bqn_sim), "the notified client")
    eventually(lambda: finished(session, running.url, sync_job), "the client job")
    # a dry run's result lists every planned subscriber by name
    dry_run = session.post(
        f"{running.url}/api/v1/reconcile", json={"dry_run": True}, headers=API, timeout=5
    ).json()["job_id"]
    eventually(lambda: finished(session, running.url, dry_run), "the dry run")
    eventually(  # RQ's debug line with the result would come before this one
        lambda: any(
            r.get("job_id") == dry_run and "result is kept" in r["message"]
            for r in log_lines(running, "worker")
        ),
        "RQ's last line about the dry run",
    )

    web, worker = log_lines(running, "web"), log_lines(running, "worker")
    everything = web + worker + log_lines(running, "scheduler")
    assert {"time", "level", "logger", "message"} <= set(web[0])
    assert any(
        r["logger"] == "gunicorn.access" and '"POST /webhooks/wisphub"' in r["message"] for r in web
    )
    assert any(r["logger"] == "gunicorn.error" for r in web)
    # RQ's lines and the job's own name the job, and the client of a client job
    job_lines = [r for r in worker if r.get("job_id") == sync_job]
    assert all(r["id_servicio"] == 1 for r in job_lines)
    assert any(r["logger"] == "rq.worker" and "Job OK" in r["message"] for r in job_lines)
    assert any(r["logger"] == "worker.sync.apply" and r["level"] == "INFO" for r in job_lines)
    assert any(r.get("job_id") == dry_run and "id_servicio" not in r for r in worker)
    text = "\n".join(json.dumps(record, ensure_ascii=False) for record in everything)
    assert WEBHOOK_SECRET not in text
    assert [name for name in NAMES if name in text] == []


@pytest.fixture
def quiet_env(service_env: dict[str, str], redis: Redis) -> dict[str, str]:
    """The service's environment with no scheduled work, logging text."""
    return {
        **service_env,
        "POLL_INTERVAL": "0",
        "PLAN_REFRESH_INTERVAL": "0",
        "RECONCILE_ON_START": "0",
    }


@pytest.fixture
def started(quiet_env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Processes]:
    """The processes the test names with `@pytest.mark.parametrize("started", [...],
    indirect=True)`, stopped afterwards."""
    processes = Processes(quiet_env, request.param)
    yield processes
    processes.stop()


def text_of(processes: Processes, name: str) -> str:
    [child] = [child for child in processes.children if child.name == name]
    return child.log.read_text()


@pytest.mark.parametrize("started", [["web"]], indirect=True)
def test_control_characters_of_a_request_path_reach_the_access_log_escaped(started):
    eventually(lambda: started.ready("/healthz"), "the web process")
    requests.get(f"{started.url}/probe%0d%0aFORGED%1b[2J%c2%9b%e2%80%a8end", timeout=5)
    # gunicorn decodes the path's bytes as latin-1 (WSGI): %c2%9b is "Â" and C1 0x9b
    expected = "/probe\\r\\nFORGED\\x1b[2J\u00c2\\x9b\u00e2\\x80\u00a8end"
    eventually(lambda: expected in text_of(started, "web"), "the escaped access line")
    log = text_of(started, "web")
    assert not any(ord(c) in CONTROL for c in log)
    [line] = [line for line in log.split("\n") if "/probe" in line]
    assert line.split(" ", 4)[2:4] == ["INFO", "gunicorn.access"]
    assert "FORGED" in line


def test_the_worker_and_the_scheduler_say_which_redis_and_what_tls_leaves_unchecked(
    quiet_env, redis_url
):
    unpinned = {name: value for name, value in quiet_env.items() if name != "BQN_CA_BUNDLE"}
    started = Processes(unpinned, ["worker", "scheduler"])
    try:
        for name in ("worker", "scheduler"):
            announced = f"INFO worker.queue.startup {name} uses Redis at {redis_url}"
            eventually(lambda name=name, line=announced: line in text_of(started, name), name)
            log = text_of(started, name)
            assert log.count("WARNING worker.queue.startup the BQN's TLS certificate is not") == 1
    finally:
        started.stop()


@pytest.mark.parametrize("started", [["worker"]], indirect=True)
def test_a_deletion_guard_trip_is_one_warning_and_a_failed_job(started, queue, wisphub_sim):
    rows = wisphub_sim.load(30)
    first = queueing.enqueue_reconcile(queue, dry_run=False)
    eventually(lambda: status(queue, first) == "finished", "the first reconcile")
    for client in rows[:20]:
        wisphub_sim.state.remove_client(client["id_servicio"])
    guarded = queueing.enqueue_reconcile(queue, dry_run=False)
    eventually(lambda: status(queue, guarded) == "failed", "the guarded reconcile")
    count, listed = failures.failures(queue)
    assert (count, listed[0]["job_id"]) == (1, guarded)
    assert "deletion guard" in listed[0]["error"]
    eventually(lambda: "deletion guard" in text_of(started, "worker"), "the guard's line")
    log = text_of(started, "worker")
    lines = log.splitlines()
    [line] = [line for line in lines if " WARNING " in line]
    assert f"WARNING worker.sync.engine [job={guarded}] deletion guard: " in line
    assert "deletions held back" in line
    failed = f"job {guarded} failed: deletion guard: "  # RQ's word, at info level
    assert any(f"INFO rq.worker [job={guarded}]" in line and failed in line for line in lines)
    assert "Traceback" not in log
    assert " ERROR " not in log


def status(queue: Queue, job_id: str) -> str:
    return Job.fetch(job_id, connection=queue.connection).get_status()
