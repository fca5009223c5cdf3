"""The server plumbing: keep-alive, TLS with the throw-away CA, shutdown, command line."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask

from sandbox import bqn, wisphub
from sandbox.server import serve
from sandbox.tls import make_tls

pytestmark = pytest.mark.integration


def echo_app() -> Flask:
    app = Flask("echo")

    @app.post("/echo")
    def echo() -> bytes:
        from flask import request

        return request.get_data()

    @app.post("/ignore")
    def ignore() -> str:
        return "ignored"

    return app


def test_keep_alive_reuses_one_connection_and_drains_unread_bodies() -> None:
    with serve(echo_app()) as server, requests.Session() as session:
        assert server.url == f"http://127.0.0.1:{server.port}"
        big = b"x" * 200_000
        for _ in range(3):
            assert session.post(server.url + "/ignore", data=big, timeout=5).text == "ignored"
            assert session.post(server.url + "/echo", data=b"hello", timeout=5).content == b"hello"
        assert session.get(server.url + "/missing", timeout=5).status_code == 404
        assert server.connections_accepted == 1


def test_close_drops_idle_keep_alive_connections() -> None:
    server = serve(echo_app())
    with requests.Session() as session:
        session.post(server.url + "/echo", data=b"1", timeout=5)
        server.close()
        with pytest.raises(requests.exceptions.ConnectionError):
            session.post(server.url + "/echo", data=b"2", timeout=5)


def test_https_verifies_with_the_generated_ca(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    assert tls.key.stat().st_mode & 0o077 == 0
    state = wisphub.WispHubState(api_key="k")
    for number in range(3):
        state.upsert_client({"id_servicio": number + 1, "ip": f"10.0.0.{number + 1}"})
    with serve(wisphub.create_app(state), tls=tls) as server:
        assert server.url.startswith("https://127.0.0.1:")
        headers = {"Authorization": "Api-Key k"}
        page = requests.get(
            server.url + "/api/clientes/?limit=1", headers=headers, verify=str(tls.ca), timeout=5
        ).json()
        assert page["next"].startswith(f"http://127.0.0.1:{server.port}/")  # the real quirk
        localhost = f"https://localhost:{server.port}/api/clientes/"
        assert requests.get(localhost, headers=headers, verify=str(tls.ca), timeout=5).ok
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(server.url + "/api/clientes/", timeout=5)  # system CAs don't know it
        # a silent client must not block the accept loop (handshake runs per connection)
        with socket.create_connection(("127.0.0.1", server.port)):
            assert requests.get(server.url + "/_sim/stats", verify=str(tls.ca), timeout=5).ok


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, **kwargs: object) -> requests.Response:
    """GET `url` once its server listens (a TLS server writes its CA before it listens)."""
    port = urlsplit(url).port
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        else:
            return requests.get(url, timeout=5, **kwargs)


def test_command_line_serves_both_simulators(tmp_path: Path) -> None:
    wh_port, bqn_port = free_port(), free_port()
    commands = [
        [
            sys.executable,
            "-m",
            "sandbox",
            "wisphub",
            "--port",
            str(wh_port),
            "--clients",
            "60",
            "--api-key",
            "cli-key",
        ],
        [
            sys.executable,
            "-m",
            "sandbox",
            "bqn",
            "--port",
            str(bqn_port),
            "--user",
            "u",
            "--password",
            "cli-secret",
            "--tls-dir",
            str(tmp_path),
        ],
    ]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for command in commands
    ]
    try:
        page = wait_for(
            f"http://127.0.0.1:{wh_port}/api/clientes/?limit=1",
            headers={"Authorization": "Api-Key cli-key"},
        )
        assert page.json()["count"] == 60
        subscribers = wait_for(
            f"https://127.0.0.1:{bqn_port}{bqn.API}/subscribers",
            auth=("u", "cli-secret"),
            verify=str(tmp_path / "ca.pem"),
        )
        assert subscribers.json()["items"]
    finally:
        for process in processes:
            process.terminate()
        outputs = [process.communicate(timeout=10)[0] for process in processes]
    assert "60 clients" in outputs[0]
    assert "ca.pem" in outputs[1]
    assert "cli-key" not in outputs[0]
    assert "cli-secret" not in outputs[1]
