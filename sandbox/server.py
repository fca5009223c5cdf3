"""Run a simulator app on cheroot, in a thread or in the foreground.

Cheroot keeps HTTP/1.1 connections alive (the product uses one keep-alive session per API),
reads what the app left of a sized request body before the next request, answers
`Expect: 100-continue` and sends with TCP_NODELAY. What it does differently from the werkzeug
server the simulators were written against is set back here:

- a repeated Content-Type reaches the app as "a, b" (cheroot keeps the last one), so the BQN
  simulator can refuse a duplicated one as the real BQN does;
- `%2F` in the path is decoded like any escape (cheroot keeps it), so a BQN policy or group name
  holding a `/` is found under its name;
- an unread chunked request body is read too before the next request;
- the TLS handshake runs in the worker thread, not the accept loop, so a silent client stalls
  nobody else, and a TLS client that gave up on a held answer is no warning;
- the listening socket reuses its address even on port 0, so a server can be restarted on the
  port it had while its dropped connections linger in TIME_WAIT;
- stopping drops every open connection at once, busy ones included;
- worker threads are many (a stalled or lost answer holds one) and are daemons for `serve`,
  and the listen backlog is werkzeug's 128, not 5;
- each request is logged to `sandbox.http` (INFO) and cheroot's notes about clients that went
  away, which the fault injection causes on purpose, only at DEBUG.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import queue
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from cheroot import errors, wsgi
from cheroot.makefile import MakeFile
from cheroot.server import HeaderReader, HTTPConnection, HTTPRequest
from cheroot.ssl import Adapter
from flask import Flask

from sandbox.tls import TlsFiles

log = logging.getLogger("sandbox.http")

IDLE_TIMEOUT_SECONDS = 60
POLL_INTERVAL_SECONDS = 0.02
# Requests handled at once (idle keep-alive connections hold none): above the product's most
# (BQN_CONCURRENCY up to 64), with room for stalled requests and lost answers that hold theirs.
WORKER_THREADS = 100
# Connections waiting to be accepted (cheroot's default is 5): a burst of more, a client pool
# opening at once, would see some connects dropped and retried a second later.
LISTEN_BACKLOG = 128

StartResponse = Callable[..., Any]


class RunningServer:
    """A server running in a daemon thread; `close()` (or leaving `with`) stops it."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.url = server.url
        self.port: int = server.bind_addr[1]

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far (shows whether clients reuse keep-alive ones)."""
        return self._server.connections.accepted

    def close(self) -> None:
        """Stop listening, drop open connections and wait for the threads (a request the app
        is still holding, a stalled or lost answer, finishes its wait first)."""
        self._server.stop()
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
    server = _Server(app, host, port, tls)
    return RunningServer(server, _start_in_daemon_thread(server))


def serve_forever(
    app: Flask, host: str = "127.0.0.1", port: int = 0, tls: TlsFiles | None = None
) -> None:
    """Serve `app` in the calling thread until Ctrl-C, which stops it quietly."""
    server = _Server(app, host, port, tls)
    server.prepare()
    log.info("%s listening on %s", app.name, server.url)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.serve()
    finally:
        server.stop()
        log.info("%s stopped", app.name)


def _start_in_daemon_thread(server: _Server) -> threading.Thread:
    """Bind, then serve, in a daemon thread; return once bound (or raise why not).

    Threads inherit the daemon flag, so cheroot's workers started here are daemons too (as
    werkzeug's handler threads were): a server nobody closed cannot hold the interpreter open.
    """
    bound: queue.Queue[BaseException | None] = queue.Queue()

    def run() -> None:
        try:
            server.prepare()
        except BaseException as exc:
            bound.put(exc)
            return
        bound.put(None)
        server.serve()

    thread = threading.Thread(target=run, name=f"sandbox-server-{server.app_name}", daemon=True)
    thread.start()
    failure = bound.get()
    if failure is not None:
        raise failure
    return thread


class _Server(wsgi.Server):
    """Cheroot's WSGI server set up as the module docstring says."""

    keep_alive_conn_limit = None  # any number of idle keep-alive connections stays open
    expiration_interval = POLL_INTERVAL_SECONDS  # also how long `stop()` waits for the loop

    def __init__(self, app: Flask, host: str, port: int, tls: TlsFiles | None) -> None:
        super().__init__(
            (host, port),
            _App(app),
            numthreads=WORKER_THREADS,
            request_queue_size=LISTEN_BACKLOG,
            timeout=IDLE_TIMEOUT_SECONDS,
        )
        self.ConnectionClass = _Connection
        self.ssl_adapter = _TlsAdapter(tls) if tls is not None else None
        self.connections = _Connections()
        self.app_name = app.name
        self._host = host

    @property
    def url(self) -> str:
        """The base URL, with the port actually bound."""
        scheme = "https" if self.ssl_adapter is not None else "http"
        shown_host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{shown_host}:{self.bind_addr[1]}"

    def stop(self) -> None:
        """Drop every open connection first, so a client waiting on a held answer sees the
        server go away at once rather than get the answer late."""
        self.connections.close_all()
        super().stop()

    @staticmethod
    def bind_socket(socket_: socket.socket, bind_addr: Any) -> socket.socket:
        """Bind with SO_REUSEADDR even on port 0 (cheroot skips it there): the connections a
        closed server dropped inherit it, and without it their TIME_WAIT keeps a restart on
        the same port from binding."""
        socket_.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        socket_.bind(bind_addr)
        return socket_

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        """Cheroot's messages go to `sandbox.http`; those under WARNING are about clients
        that went away (timed out on a lost answer, dropped a handshake), so DEBUG."""
        log.log(level if level >= logging.WARNING else logging.DEBUG, "%s", msg, exc_info=traceback)


class _App:
    """The Flask app as the server calls it: path decoded, request logged, body drained."""

    def __init__(self, app: Flask) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if "%2F" in environ["PATH_INFO"]:
            environ["PATH_INFO"] = _decoded_path(environ["REQUEST_URI"])
        body = environ["wsgi.input"]
        result = self._app(environ, _logging(environ, start_response))
        _drain(body)  # the app is done with it; nothing has been sent yet
        return result


def _decoded_path(request_uri: str) -> str:
    """The request's path with every escape decoded, `%2F` too (as PEP 3333 strings)."""
    raw_path = urlsplit(request_uri.encode("latin-1")).path
    return unquote_to_bytes(raw_path).decode("latin-1")


def _logging(environ: dict[str, Any], start_response: StartResponse) -> StartResponse:
    """`start_response` that logs the request line and the status first."""

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        log.info(
            '%s "%s %s %s" %s',
            environ["REMOTE_ADDR"],
            environ["REQUEST_METHOD"],
            environ["REQUEST_URI"],
            environ["SERVER_PROTOCOL"],
            status.partition(" ")[0],
        )
        return start_response(status, headers, exc_info)

    return start


def _drain(body: Any) -> None:
    """Read what is left of a request body so the next request on the connection parses
    (cheroot does this for sized bodies only, not chunked ones)."""
    with contextlib.suppress(OSError, ValueError):  # the client left or sent a broken chunk
        while body.read(65536):
            pass


class _JoinedContentType(dict[bytes, bytes]):
    """Request headers where a repeated Content-Type keeps both values, joined with ", "."""

    def __setitem__(self, name: bytes, value: bytes) -> None:
        if name == b"Content-Type" and name in self:
            value = self[name] + b", " + value
        super().__setitem__(name, value)


class _HeaderReader(HeaderReader):
    """Cheroot's header parsing, with a repeated Content-Type kept whole."""

    def __call__(self, rfile: Any, hdict: dict[bytes, bytes] | None = None) -> dict[bytes, bytes]:
        headers = {} if hdict is None else hdict
        headers.update(super().__call__(rfile, _JoinedContentType()))
        return headers


class _Request(HTTPRequest):
    """A request read with `_HeaderReader`."""

    header_reader = _HeaderReader()


class _Connection(HTTPConnection):
    """A connection its server counts and can drop (see `_Connections`)."""

    RequestHandlerClass = _Request

    def __init__(self, server: _Server, sock: socket.socket, makefile: Any = MakeFile) -> None:
        super().__init__(server, sock, makefile)
        self._connections = server.connections
        self._connections.add(self)

    def close(self) -> None:
        self._connections.discard(self)
        super().close()


class _Connections:
    """The open connections of one server, so stopping it can drop busy ones too (cheroot
    closes idle ones, and busy ones only once their request is over)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[HTTPConnection] = set()
        self._closed = False
        self.accepted = 0

    def add(self, connection: HTTPConnection) -> None:
        """Count a new connection; drop it at once if the server is closing."""
        with self._lock:
            self.accepted += 1
            if not self._closed:
                self._open.add(connection)
                return
        _drop(connection.socket)

    def discard(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._open.discard(connection)

    def close_all(self) -> None:
        """Drop every open connection, and any accepted from now on."""
        with self._lock:
            self._closed = True
            open_now = list(self._open)
        for connection in open_now:
            _drop(connection.socket)


def _drop(sock: socket.socket) -> None:
    """Shut the connection down: the peer sees it close, the worker reads its end."""
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class _TlsAdapter(Adapter):
    """TLS with the sandbox's certificate and the handshake left to the worker thread.

    Cheroot's builtin adapter shakes hands in the accept loop, where a client that connects
    and says nothing would stall every other client until it times out (and it checks the
    certificate over a loopback handshake first, 50 ms each time a server starts).
    """

    def __init__(self, tls: TlsFiles) -> None:
        super().__init__(str(tls.cert), str(tls.key))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile=tls.cert, keyfile=tls.key)
        self.context.sslsocket_class = _ServerTlsSocket

    def bind(self, sock: socket.socket) -> socket.socket:
        return sock

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, str]]:
        """Wrap without shaking hands; no per-connection TLS variables for the app."""
        wrapped = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, self.get_environ()

    def get_environ(self) -> dict[str, str]:
        return {}

    def makefile(
        self, sock: socket.socket, mode: str = "r", bufsize: int = io.DEFAULT_BUFFER_SIZE
    ) -> Any:
        return MakeFile(sock, mode, bufsize)


class _ServerTlsSocket(ssl.SSLSocket):
    """A server-side TLS socket that shakes hands when the worker first reads from it, and
    reports a client that left mid-answer as a broken pipe, which cheroot ignores (over TLS
    it is an EOF error, which cheroot logs as a warning with a traceback: every lost answer)."""

    _shaken = False

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        if not self._shaken:
            self._shake_hands()
        return super().recv_into(buffer, nbytes, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        try:
            return super().send(data, flags)
        except ssl.SSLEOFError as exc:
            raise BrokenPipeError(errno.EPIPE, str(exc)) from exc

    def shutdown(self, how: int) -> None:
        """Shut down without TLS (as `SSLSocket` does): no handshake is left to do."""
        self._shaken = True
        super().shutdown(how)

    def _shake_hands(self) -> None:
        try:
            self.do_handshake()
        except OSError as exc:  # cheroot closes the connection quietly on this error
            log.debug("TLS handshake failed: %s", exc)
            raise errors.FatalSSLAlert(str(exc)) from exc
        self._shaken = True
