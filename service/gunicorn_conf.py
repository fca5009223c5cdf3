"""gunicorn settings for the web process (the Procfile's `web`):

    gunicorn -c python:service.gunicorn_conf 'service.app:create_app()'

Binds to `$WEB_HOST:$PORT` (127.0.0.1:8000: expose it through a proxy, docs/install.md) with
`$WEB_CONCURRENCY` (2) gevent workers. gevent reads each request asynchronously, so a sender
that trickles its body holds one of a worker's 1,000 connections, never a thread the others
need. The access log names the path without its query string, which may carry the notification
secret (`?token=`). gunicorn's error and access lines and the app's own go through
`worker.logs`: one handler on standard error, `LOG_LEVEL` and `LOG_FORMAT` (text or JSON) as in
the other processes.

A configuration error stops gunicorn before it forks its workers: one line on standard error
and exit status 2, as the CLI and the scheduler do (the systemd unit does not restart on it).

Metrics: every gunicorn worker keeps its own counters, so Prometheus' multiprocess mode is on.
The workers write them to `PROMETHEUS_MULTIPROC_DIR` (a fresh temporary directory unless set),
whose counter files are removed when gunicorn starts; a worker that exits is marked dead.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from worker import defaults, logs
from worker.core.errors import ConfigError
from worker.settings import WebServer

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONFIG_ERROR = 2
CONFIG_ERROR_LINE = "configuration error: %s"

log = logging.getLogger(__name__)


def refuse(problem: ConfigError) -> NoReturn:
    """Stop with one line naming the bad setting, and exit status 2."""
    log.error(CONFIG_ERROR_LINE, problem)
    sys.exit(CONFIG_ERROR)


# Read when gunicorn imports this file, before it configures logging: Python's last-resort
# handler writes the line (a bad LOG_LEVEL may be the problem).
try:
    logconfig_dict = logs.dict_config()
    web = WebServer.from_env(os.environ)
except ConfigError as problem:
    refuse(problem)

bind = web.bind
workers = web.processes
worker_class = "gevent"
worker_connections = defaults.WEB_CONNECTIONS
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'

# Set before the workers import prometheus_client, which reads it at import time; a folder made
# here is removed when gunicorn exits.
made_folder = None
if not os.environ.get(MULTIPROC_ENV):
    made_folder = os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="wisphub-bqn-sync-metrics-")


def on_starting(server: Any) -> None:
    """Refuse to start misconfigured; start with no counters left by an earlier run."""
    status = app_status()
    if status:
        on_exit(server)
        sys.exit(status)
    folder = Path(os.environ[MULTIPROC_ENV])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def app_status() -> int:
    """Build the app once, as every worker will: 0 if it can be, else the status to exit with
    (2, after one line, for a configuration error), before any worker fails to boot with a
    traceback.

    It is built in a short-lived child process because the master must not import the app:
    the gevent workers monkey-patch the standard library when they start, and a module imported
    before that (urllib3's TLS) would block a whole worker on every upstream call."""
    pid = os.fork()
    if pid == 0:  # the child: never return into gunicorn's code
        code = 1
        try:
            code = _build_app()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _build_app() -> int:
    """The exit status of building the app in this (child) process; only failures are logged,
    the workers log the rest."""
    logging.disable(logging.WARNING)
    try:
        # imported in the child only (see app_status)
        from service.app import create_app  # noqa: PLC0415

        create_app()
    except ConfigError as problem:
        logging.disable(logging.NOTSET)
        log.error(CONFIG_ERROR_LINE, problem)
        return CONFIG_ERROR
    except Exception:
        logging.disable(logging.NOTSET)
        log.exception("the app cannot be built")
        return 1
    return 0


def child_exit(server: Any, worker: Any) -> None:
    """Drop the live gauges of a gunicorn worker that exited."""
    # imported here, after PROMETHEUS_MULTIPROC_DIR is set above
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics folder made for this run."""
    if made_folder is not None:
        shutil.rmtree(made_folder, ignore_errors=True)
