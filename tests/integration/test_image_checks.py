"""The container health checks, run as written in the Dockerfile and docker-compose.yml against
the Procfile's processes (the `python` of the image is this one)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from redis import Redis

from sandbox.redis_server import free_port
from tests.image import compose, healthcheck
from tests.integration.processes import Processes, start

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def check(command: list[str], env: dict[str, str]) -> int:
    """The exit status of a health check: 0 is healthy."""
    assert command[0] == "python"
    return subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
    ).returncode


@pytest.fixture
def running(service_env: dict[str, str], redis: Redis) -> Iterator[Processes]:
    processes = start({**service_env, "POLL_INTERVAL": "0", "RECONCILE_ON_START": "0"})
    yield processes
    processes.stop()


WEB = healthcheck("production")
[_, *WORKER] = compose()["services"]["worker"]["healthcheck"]["test"]


def test_the_checks_fail_while_nothing_runs(service_env: dict[str, str], redis: Redis) -> None:
    assert check(WEB, {"PORT": str(free_port())}) != 0
    assert check(WORKER, {"REDIS_URL": service_env["REDIS_URL"]}) != 0


def test_the_checks_pass_once_the_web_process_and_a_worker_run(running: Processes) -> None:
    assert check(WEB, {"PORT": str(running.port)}) == 0
    assert check(WORKER, {"REDIS_URL": running.env["REDIS_URL"]}) == 0
