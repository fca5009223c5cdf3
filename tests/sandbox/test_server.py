"""The server plumbing: keep-alive, what the app sees of a request, TLS with the throw-away
CA, held answers, shutdown and restart, command line."""

from __future__ import annotations

import contextlib
import http.client
import logging
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask, request

from sandbox import bqn, wisphub
from sandbox.server import WORKER_THREADS, serve
from sandbox.tls import make_tls
from tests.sandbox.conftest import BQN_PASSWORD, BQN_USER

pytestmark = pytest.mark.integration


def echo_app() -> Flask:
    app = Flask("echo")

    @app.post("/echo")
    def echo() -> bytes:
        return request.get_data()

    @app.post("/ignore")
    def ignore() -> str:
        return "ignored"

    @app.post("/content-type")
    def content_type() -> str:
        return request.environ.get("CONTENT_TYPE", "")

    @app.get("/path/<path:rest>")
    def path(rest: str) -> str:
        return rest

    return app


def chunks(size: int, count: int) -> Iterator[bytes]:
    """A body requests sends with `Transfer-Encoding: chunked` (it has no length)."""
    for _ in range(count):
        yield b"x" * size


def test_keep_alive_reuses_one_connection_and_drains_unread_bodies() -> None:
    with serve(echo_app()) as server, requests.Session() as session:
        assert server.url == f"http://127.0.0.1:{server.port}"
        big = b"x" * 200_000
        for _ in range(3):
            assert session.post(server.url + "/ignore", data=big, timeout=5).text == "ignored"
            assert session.post(server.url + "/echo", data=b"hello", timeout=5).content == b"hello"
            unsized = session.post(server.url + "/ignore", data=chunks(10_000, 20), timeout=5)
            assert unsized.text == "ignored"
        assert session.get(server.url + "/missing", timeout=5).status_code == 404
        assert server.connections_accepted == 1


def test_every_idle_keep_alive_connection_stays_open() -> None:
    """Cheroot closes keep-alive connections beyond 10 idle ones unless told otherwise."""
    sessions = [requests.Session() for _ in range(15)]
    with serve(echo_app()) as server:
        for _ in range(2):
            for session in sessions:
                assert session.post(server.url + "/echo", data=b"x", timeout=5).ok
        assert server.connections_accepted == len(sessions)
    for session in sessions:
        session.close()


def test_a_burst_of_connections_is_accepted_at_once() -> None:
    """100 clients connecting together (a pool opening) are all in well before a dropped SYN
    would be retried (1 s): the listen backlog holds them."""
    barrier = threading.Barrier(100)

    def connect(port: int) -> bool:
        barrier.wait()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.9).close()
        except OSError:
            return False
        return True

    with serve(echo_app()) as server, ThreadPoolExecutor(100) as pool:
        assert all(pool.map(connect, [server.port] * 100))


def test_expect_100_continue_is_answered_before_the_body() -> None:
    with (
        serve(echo_app()) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
        sock.makefile("rb") as replies,
    ):
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert replies.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert replies.readline() == b"\r\n"
        sock.sendall(b"hello")
        assert replies.readline() == b"HTTP/1.1 200 OK\r\n"
        http.client.parse_headers(replies)
        assert replies.read(5) == b"hello"


def test_small_answers_are_not_held_back_by_nagle() -> None:
    """Headers and body go out in two writes: with Nagle on, each answer would wait for the
    client's delayed ACK (40 ms on Linux), 20 of them close to a second."""
    with serve(echo_app()) as server, requests.Session() as session:
        session.post(server.url + "/echo", data=b"warm-up", timeout=5)
        started = time.monotonic()
        for _ in range(20):
            assert session.post(server.url + "/echo", data=b"hi", timeout=5).content == b"hi"
        assert time.monotonic() - started < 0.5


def test_the_app_sees_repeated_content_types_and_decoded_slashes() -> None:
    with serve(echo_app()) as server:
        status, text = raw_post(
            server.port,
            "/content-type",
            [("Content-Type", "application/json"), ("Content-Type", "text/plain")],
        )
        assert (status, text) == (200, "application/json, text/plain")
        # %2F is a slash like any escape (a BQN name may hold one); an escaped % stays a %
        escaped = requests.get(server.url + "/path/10M%2F5M%252F%20x", timeout=5)
        assert escaped.text == "10M/5M%2F x"


def raw_post(port: int, path: str, headers: list[tuple[str, str]]) -> tuple[int, str]:
    """POST with exactly these headers (requests would merge duplicates)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.putrequest("POST", path)
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", "0")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_close_drops_idle_keep_alive_connections() -> None:
    server = serve(echo_app())
    with requests.Session() as session:
        session.post(server.url + "/echo", data=b"1", timeout=5)
        started = time.monotonic()
        server.close()
        assert time.monotonic() - started < 0.4  # the suites close two servers a test
        with pytest.raises(requests.exceptions.ConnectionError):
            session.post(server.url + "/echo", data=b"2", timeout=5)


@pytest.mark.slow
@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
def test_close_drops_every_connection_at_once_and_quietly(
    secure: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client waiting on a held answer sees the server go away at once, not the answer
    after its wait; idle and silent (mid-handshake) connections go too, with no warning."""
    app, holding = Flask("held"), threading.Event()

    @app.get("/held")
    def held() -> str:
        holding.set()
        time.sleep(1.5)
        return "late"

    tls = make_tls(tmp_path / "tls") if secure else None
    verify = str(tls.ca) if tls is not None else True
    server = serve(app, tls=tls)
    with (
        caplog.at_level(logging.DEBUG, logger="sandbox.http"),
        requests.Session() as idle,
        socket.create_connection(("127.0.0.1", server.port)),  # says nothing
        ThreadPoolExecutor(1) as pool,
    ):
        assert idle.get(server.url + "/", verify=verify, timeout=5).status_code == 404
        answer = pool.submit(requests.get, server.url + "/held", verify=verify, timeout=10)
        assert holding.wait(5)
        server.close()
        with pytest.raises(requests.exceptions.ConnectionError):
            answer.result()
        with pytest.raises(requests.exceptions.ConnectionError):
            idle.get(server.url + "/", verify=verify, timeout=5)
    assert not [r.message for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.slow
def test_close_with_every_worker_busy_drops_waiting_connections_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A TLS connection still queued for a worker when the server closes is dropped at once,
    before its handshake; the worker that takes it later finds it closed."""
    app, held, release = Flask("busy"), threading.Semaphore(0), threading.Event()

    @app.get("/held")
    def hold() -> str:
        held.release()
        release.wait(10)
        return "late"

    def get_held(url: str) -> None:
        with contextlib.suppress(requests.exceptions.ConnectionError):  # dropped
            requests.get(url, verify=str(tls.ca), timeout=10)

    tls = make_tls(tmp_path / "tls")
    server = serve(app, tls=tls)
    closing = threading.Thread(target=server.close)
    with (
        caplog.at_level(logging.DEBUG, logger="sandbox.http"),
        ThreadPoolExecutor(WORKER_THREADS) as pool,
        socket.socket() as waiting,
    ):
        pool.map(get_held, [server.url + "/held"] * WORKER_THREADS)
        for _ in range(WORKER_THREADS):
            assert held.acquire(timeout=10)
        waiting.settimeout(5)
        waiting.connect(("127.0.0.1", server.port))
        time.sleep(0.2)  # accepted, queued: every worker is holding an answer
        closing.start()
        assert waiting.recv(1) == b""  # dropped while the workers are still busy
        release.set()
        closing.join()
    assert not [r.message for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_server_restarts_on_the_port_it_had() -> None:
    """As `Simulator.outage()` does: the dropped keep-alive connection lingers in TIME_WAIT
    and must not keep the new server from binding."""
    first = serve(echo_app())
    with requests.Session() as session:
        assert session.post(first.url + "/echo", data=b"1", timeout=5).ok
        first.close()
        with serve(echo_app(), port=first.port) as second:
            assert second.url == first.url
            assert session.post(second.url + "/echo", data=b"2", timeout=5).content == b"2"
            assert second.connections_accepted == 1


@pytest.mark.slow
@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
def test_lost_answers_hold_up_no_other_client(
    secure: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each lost answer keeps a thread for `stall_seconds`; 40 at once must not keep a read
    waiting, every write is carried out though its client gave up, and answering a client
    that left is no warning."""
    state = bqn.BqnState(user=BQN_USER, password=BQN_PASSWORD)
    state.faults.update(lose_every=1, writes_only=True, stall_seconds=1.5)
    tls = make_tls(tmp_path / "tls") if secure else None
    verify = str(tls.ca) if tls is not None else True
    auth = (BQN_USER, BQN_PASSWORD)
    ips = [f"10.77.0.{number}" for number in range(1, 41)]

    def write(url: str) -> str:
        try:
            requests.post(url, json={"subscriberId": "x"}, auth=auth, verify=verify, timeout=0.5)
        except requests.exceptions.ReadTimeout:
            return "lost"
        return "answered"

    with (
        caplog.at_level(logging.DEBUG, logger="sandbox.http"),
        serve(bqn.create_app(state), tls=tls) as server,
        ThreadPoolExecutor(len(ips)) as pool,
    ):
        api = server.url + bqn.API
        outcomes = pool.map(write, [f"{api}/subscribers/{ip}" for ip in ips])
        time.sleep(0.3)  # every write is in, each answer held for 1.5 s
        started = time.monotonic()
        assert requests.get(api + "/subscribers", auth=auth, verify=verify, timeout=5).ok
        assert time.monotonic() - started < 1
        assert list(outcomes) == ["lost"] * len(ips)
        time.sleep(1.5)  # the answers go out, to clients that left
    assert {item["subscriberIp"] for item in state.snapshot()["subscribers"]} >= set(ips)
    assert not [r.message for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.slow
def test_an_unclosed_server_does_not_keep_python_running() -> None:
    code = (
        "from flask import Flask\n"
        "from sandbox.server import serve\n"
        "print(serve(Flask('left-open')).url, flush=True)\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert finished.stdout.startswith("http://127.0.0.1:")


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


def test_https_keeps_connections_alive_and_speaks_tls_1_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tls = make_tls(tmp_path / "tls")
    ca = str(tls.ca)
    with serve(echo_app(), tls=tls) as server, requests.Session() as session:
        for number in range(3):
            body = str(number).encode()
            echoed = session.post(server.url + "/echo", data=body, verify=ca, timeout=5)
            assert echoed.content == body
        assert server.connections_accepted == 1
        # older clients (and the BQN's relaxed cipher list) stop at TLS 1.2
        context = ssl.create_default_context(cafile=ca)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            assert sock.version() == "TLSv1.2"
        # plain HTTP to the TLS port: the handshake fails, the connection closes, quietly
        with caplog.at_level(logging.DEBUG, logger="sandbox.http"):
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(f"http://127.0.0.1:{server.port}/echo", timeout=5)
            assert session.post(server.url + "/echo", data=b"ok", verify=ca, timeout=5).ok
        assert not [r.message for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("handshake failed" in r.message for r in caplog.records)


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


@pytest.mark.slow
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
            process.send_signal(signal.SIGINT)  # Ctrl-C
        outputs = [process.communicate(timeout=10)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert all(output.rstrip().endswith("stopped") for output in outputs)
    assert '"GET /api/clientes/?limit=1 HTTP/1.1" 200' in outputs[0]
    assert "60 clients" in outputs[0]
    assert "ca.pem" in outputs[1]
    assert "cli-key" not in outputs[0]
    assert "cli-secret" not in outputs[1]
