"""The web process as the Procfile runs it (gunicorn): slow senders do not hold up the others,
a configuration error is one line and exit status 2, and it listens on this machine only
unless told otherwise."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from redis import Redis

from sandbox.demo import ROOT, procfile
from sandbox.processes import BASH, Processes
from sandbox.redis_server import free_port
from tests.integration.conftest import API, HOOK, WEBHOOK_SECRET
from tests.integration.processes import eventually
from worker.core.errors import ConfigError
from worker.settings import WebServer

pytestmark = pytest.mark.integration

SLOW_SENDERS = 50
ANNOUNCED_BYTES = 60_000
# Far less than the tens of seconds a server with a thread per request needs once the slow
# senders hold every thread, and far more than an idle server needs.
ANSWER_SECONDS = 5


@pytest.fixture
def web(service_env: dict[str, str], redis: Redis) -> Iterator[Processes]:
    """The Procfile's web process alone, with its default number of gunicorn workers."""
    processes = Processes(service_env, ["web"], web_workers=2)
    try:
        eventually(lambda: processes.ready("/healthz"), "the web process to be ready")
        yield processes
    finally:
        processes.stop()


class SlowSenders:
    """Connections that each announce a notification of 60,000 bytes and send its body one
    byte a second, until closed."""

    def __init__(self, port: int, count: int) -> None:
        head = (
            f"POST /webhooks/wisphub HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {ANNOUNCED_BYTES}\r\n"
            f"X-Webhook-Token: {WEBHOOK_SECRET}\r\n\r\n{{"
        ).encode()
        self.connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        for connection in self.connections:
            connection.sendall(head)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.done.wait(1):
            for connection in self.connections:
                connection.sendall(b" ")

    def still_sending(self) -> bool:
        """Whether the server holds every connection open without having answered any."""
        for connection in self.connections:
            connection.setblocking(False)
            try:
                connection.recv(1)  # an answer, or b"" for a connection the server closed
            except BlockingIOError:
                continue
            finally:
                connection.setblocking(True)
            return False
        return True

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        for connection in self.connections:
            connection.close()


@pytest.mark.slow
def test_slow_senders_do_not_hold_up_other_requests(web, wisphub_sim, bqn_sim):
    senders = SlowSenders(web.port, SLOW_SENDERS)
    try:
        session = requests.Session()
        health = session.get(f"{web.url}/healthz", timeout=ANSWER_SECONDS)
        assert health.status_code == 200
        notified = session.post(
            f"{web.url}/webhooks/wisphub",
            json={"id_servicio": 7},
            headers=HOOK,
            timeout=ANSWER_SECONDS,
        )
        assert notified.status_code == 202, notified.text
        # WispHub and the BQN over TLS (the BQN with its own ciphers), from a gevent worker
        plans = session.get(f"{web.url}/api/v1/plans", headers=API, timeout=ANSWER_SECONDS)
        assert plans.status_code == 200, plans.text
        assert plans.json()["plans"]
        assert senders.still_sending()
    finally:
        senders.close()


@pytest.mark.slow
def test_a_configuration_error_is_one_line_and_status_2(service_env):
    env = {key: value for key, value in service_env.items() if key != "WEBHOOK_SECRET"}
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    started = subprocess.run(
        [BASH, "-c", f"exec {procfile()['web']}"],
        cwd=ROOT,
        env={**env, "PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 2, started.stderr
    assert "Traceback" not in started.stderr
    reasons = [line for line in started.stderr.splitlines() if "configuration error" in line]
    assert len(reasons) == 1, started.stderr
    assert "WEBHOOK_SECRET is not set" in reasons[0]


@pytest.mark.parametrize(
    ("env", "bind"),
    [
        ({}, "127.0.0.1:8000"),
        ({"WEB_HOST": "0.0.0.0", "PORT": "8080"}, "0.0.0.0:8080"),
        ({"WEB_HOST": "::1"}, "[::1]:8000"),
        ({"WEB_HOST": "sync.example.net"}, "sync.example.net:8000"),
    ],
)
def test_the_web_process_listens_on_this_machine_unless_told(env, bind):
    assert WebServer.from_env(env).bind == bind


@pytest.mark.parametrize(
    "env",
    [{"WEB_HOST": "0.0.0.0:80"}, {"WEB_HOST": "a b"}, {"WEB_HOST": "0"}, {"PORT": "70000"}],
)
def test_a_bad_address_is_a_configuration_error(env):
    with pytest.raises(ConfigError):
        WebServer.from_env(env)
