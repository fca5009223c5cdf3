"""The Procfile's processes log JSON lines with `LOG_FORMAT=json`: gunicorn's and the app's,
RQ's and the jobs' (each naming its job and client), the scheduler's; and neither a secret in
a URL nor a job's result (client names) reaches them, even at debug level."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from redis import Redis

from tests.integration.conftest import API, WEBHOOK_SECRET, managed_state
from tests.integration.processes import Processes, eventually, start
from tests.rows import row

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMES = ("Zoraida Quintero", "Evaristo Mondragón", "Filomena Arciniegas")


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
