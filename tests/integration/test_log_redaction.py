"""No secret and no client personal field in any log line, at any verbosity, on the paths that
succeed and on those that fail; and the settings dump redacts the secrets."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from sandbox.seed import SENSITIVE_FIELDS
from tests.integration.conftest import (
    API,
    API_KEY,
    API_TOKEN,
    BQN_PASSWORD,
    BQN_USER,
    HOOK,
    WEBHOOK_SECRET,
)

pytestmark = pytest.mark.integration


def forbidden(rows: list[dict[str, Any]]) -> set[str]:
    """Every secret, and every personal value of the clients (each phone number alone too)."""
    basic = base64.b64encode(f"{BQN_USER}:{BQN_PASSWORD}".encode()).decode()
    values = {API_KEY, API_KEY.split(".")[1], BQN_PASSWORD, basic, WEBHOOK_SECRET, API_TOKEN}
    for row in rows:
        for name in SENSITIVE_FIELDS:
            value = str(row.get(name) or "")
            values.update(part.strip() for part in value.split(","))
    return {value for value in values if len(value) >= 5}


def leaks(text: str, rows: list[dict[str, Any]]) -> list[str]:
    return sorted(value for value in forbidden(rows) if value in text)


@pytest.mark.slow
def test_the_cli_logs_nothing_secret_even_at_full_verbosity(wisphub_sim, bqn_sim, run_cli):
    rows = wisphub_sim.load(150)
    outputs = [run_cli("-vv"), run_cli("-vv", "--dry-run"), run_cli("-vv", "--client", "7")]
    bqn_sim.state.faults.update(fail_every=3, fail_status=500)
    wisphub_sim.state.faults.update(fail_every=4, fail_status=502)
    outputs.append(run_cli("-vv"))
    wisphub_sim.state.api_key = "rotated"
    outputs.append(run_cli("-vv"))
    assert outputs[-1].code == 2
    assert "DEBUG" in outputs[0].err, "requests are logged at -vv"
    assert leaks("\n".join(result.err for result in outputs), rows) == []


@pytest.mark.slow
def test_the_service_logs_nothing_secret_even_at_debug(caplog, web, work, wisphub_sim, bqn_sim):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    rows = wisphub_sim.load(150)
    a_row = rows[3]
    web.post("/api/v1/reconcile", json={"dry_run": True}, headers=API)
    web.post("/api/v1/reconcile", json={"dry_run": False}, headers=API)
    # a sender posting a whole client row, a malformed one, a token in the URL
    web.post("/webhooks/wisphub", json=a_row, headers=HOOK)
    web.post("/webhooks/wisphub", json={**a_row, "id_servicio": "x"}, headers=HOOK)
    web.post(f"/webhooks/wisphub?id_servicio=5&token={WEBHOOK_SECRET}")
    web.post("/webhooks/wisphub", json={"id_servicio": 5}, headers={"X-Webhook-Token": "wrong"})
    work()
    bqn_sim.state.faults.update(fail_every=2, fail_status=500)
    wisphub_sim.state.faults.update(fail_every=3, fail_status=502)
    web.post(
        "/webhooks/wisphub",
        json={"id_servicio": [r["id_servicio"] for r in rows[:20]]},
        headers=HOOK,
    )
    work()
    wisphub_sim.state.api_key = "rotated"
    web.post("/webhooks/wisphub", json={"id_servicio": [1, 2]}, headers=HOOK)
    work()
    web.get("/api/v1/failures", headers=API)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    assert leaks(caplog.text, rows) == []


def test_the_settings_dump_redacts_every_secret(env, run_cli, redis_url):
    environ = {
        **env,
        "REDIS_URL": "redis://:redis-pass-0123@127.0.0.1:6379/0",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "API_TOKEN": API_TOKEN,
    }
    result = run_cli("--show-config", environ=environ)
    assert result.code == 0
    config = json.loads(result.out)
    assert config["sync"]["wisphub"]["secret"] == "***"
    assert config["sync"]["targets"][0]["bqn"]["secret"] == "***"
    assert config["service"]["redis_url"] == "redis://:***@127.0.0.1:6379/0"
    assert config["sync"]["targets"][0]["bqn"]["user"] == BQN_USER
    for secret in (API_KEY, BQN_PASSWORD, WEBHOOK_SECRET, API_TOKEN, "redis-pass-0123"):
        assert secret not in result.out + result.err
