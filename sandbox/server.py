"""Run a simulator app on werkzeug's threaded server, in a thread or in the foreground.

Werkzeug's dev server answers every response with `Connection: close`. The request
handler here keeps HTTP/1.1 connections alive instead (the product uses one keep-alive
session per API): it buffers each response, sends a `Content-Length` and drains any
unread request body before reading the next request. It also keeps duplicated
`Content-Type` headers (joined with ", ") where werkzeug would keep only the last one,
and does the TLS handshake in the connection's thread rather than in the accept loop.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from flask import Flask
from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wsgi import LimitedStream

from sandbox.tls import TlsFiles

log = logging.getLogger("sandbox.http")

IDLE_TIMEOUT_SECONDS = 60
POLL_INTERVAL_SECONDS = 0.1
_NO_BODY_STATUSES = frozenset({204, 304})


class RunningServer:
    """A server running in a daemon thread; `close()` (or leaving `with`) stops it."""

    def __init__(
        self,
        server: BaseWSGIServer,
        connections: _Connections,
        url: str,
        thread: threading.Thread,
    ) -> None:
        self._server = server
        self._connections = connections
        self._thread = thread
        self.url = url
        self.port: int = server.server_port

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far (shows whether clients reuse keep-alive ones)."""
        return self._connections.accepted

    def close(self) -> None:
        """Stop accepting, drop open connections and wait for the serving thread."""
        self._server.shutdown()
        self._connections.close_all()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def serve(
    app: Flask, host: str = "127.0.0.1", port: int = 0, tls: TlsFiles | None = None
) -> RunningServer:
    """Start serving `app` in a daemon thread (port 0 picks a free port)."""
    server, connections, url = _build(app, host, port, tls)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": POLL_INTERVAL_SECONDS},
        name=f"sandbox-server-{server.server_port}",
        daemon=True,
    )
    thread.start()
    return RunningServer(server, connections, url, thread)


def serve_forever(
    app: Flask, host: str = "127.0.0.1", port: int = 0, tls: TlsFiles | None = None
) -> None:
    """Serve `app` in the calling thread until Ctrl-C (werkzeug stops quietly on it)."""
    server, connections, url = _build(app, host, port, tls)
    log.info("%s listening on %s", app.name, url)
    try:
        server.serve_forever(poll_interval=POLL_INTERVAL_SECONDS)
    finally:
        connections.close_all()
        log.info("%s stopped", app.name)


def _build(
    app: Flask, host: str, port: int, tls: TlsFiles | None
) -> tuple[BaseWSGIServer, _Connections, str]:
    connections = _Connections()
    handler = type("SandboxHandler", (_Handler,), {"connections": connections})
    context = _server_context(tls) if tls is not None else None
    server = make_server(
        host, port, app, threaded=True, request_handler=handler, ssl_context=context
    )
    scheme = "https" if tls is not None else "http"
    shown_host = f"[{host}]" if ":" in host else host
    return server, connections, f"{scheme}://{shown_host}:{server.server_port}"


class _LazyHandshakeContext(ssl.SSLContext):
    """Leaves the handshake to the connection's thread so one slow client can't block
    the accept loop."""

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, *args, **kwargs)


def _server_context(tls: TlsFiles) -> ssl.SSLContext:
    context = _LazyHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile=tls.cert, keyfile=tls.key)
    return context


class _Connections:
    """The open client sockets of one server, so `close()` can drop idle keep-alives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.accepted = 0

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)
            self.accepted += 1

    def discard(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def close_all(self) -> None:
        with self._lock:
            open_sockets = list(self._open)
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue  # already closed by the peer


class _Handler(WSGIRequestHandler):
    """WSGI request handler with HTTP/1.1 keep-alive (see the module docstring)."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_SECONDS
    connections: _Connections

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes; don't let Nagle hold the body back
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.connections.discard(self.connection)

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except OSError as exc:
                log.debug("TLS handshake with %s failed: %s", self.address_string(), exc)
                return
        super().handle()

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        content_types = self.headers.get_all("Content-Type") or []
        if len(content_types) > 1:
            environ["CONTENT_TYPE"] = ", ".join(content_types)
        if not environ.get("wsgi.input_terminated"):
            try:
                length = max(int(environ.get("CONTENT_LENGTH") or 0), 0)
            except ValueError:
                length = 0
                self.close_connection = True  # cannot find where the next request starts
            environ["wsgi.input"] = LimitedStream(self.rfile, length)
        return environ

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        status, headers, body = self._call_app(environ)
        self._drain(environ["wsgi.input"])
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        self.send_response(code, reason)
        names = set()
        for name, value in headers:
            self.send_header(name, value)
            names.add(name.lower())
        if "content-length" not in names and code not in _NO_BODY_STATUSES and code >= 200:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _call_app(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            started[:] = [status, headers]
            return chunks.append

        result: Iterable[bytes] = self.server.app(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        return status, headers, b"".join(chunks)

    def _drain(self, stream: Any) -> None:
        """Read what the app left of the request body so the next request parses."""
        try:
            while stream.read(65536):
                pass
        except (OSError, ValueError, ClientDisconnected):
            self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.log("info", '"%s" %s %s', self.requestline, code, size)

    def log_error(self, format: str, *args: Any) -> None:
        if format.startswith("Request timed out"):  # an idle keep-alive connection expired
            log.debug(format, *args)
        else:
            self.log("error", format, *args)

    def log(self, type: str, message: str, *args: Any) -> None:
        level = logging.ERROR if type == "error" else logging.INFO
        log.log(level, "%s " + message.rstrip("\n"), self.address_string(), *args)
